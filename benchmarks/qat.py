"""PTQ against QAT on the same ORT int8 kernels: accuracy, agreement with fp32, size and latency.

Rows per task: the fp32 model; the same model trained on in float for QAT's extra epochs (the
control: QAT's int8 against it is what rounding still costs after training, as PTQ's against
fp32 is what it costs without); static int8 PTQ (min-max and percentile, calibrated on the
training images); int8-qat (trained from the fp32 model on the same images, then the same
static QDQ graph); int4-weight where ORT has a 4-bit kernel. Agreement counts the test predictions that differ from the fp32
model's, with their Wilson 95 % interval. Latency: each graph interleaved with the fp32 paths
(`benchmarks/quantization.py`'s timing), at batch 1 and 32.

    python benchmarks/qat.py            # the full run
    python benchmarks/qat.py --smoke    # tiny sizes: checks that every row runs; figures mean nothing
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

import leanlens as ll
from leanlens.audit.profile import serialize
from leanlens.errors import LeanlensError
from leanlens.models import SmallResNet

sys.path.insert(0, str(Path(__file__).parent))
from quantization import (  # one timing protocol for every quantization table
    MLP,
    THREADS,
    Task,
    latency_rows,
)
from stats import wilson


@dataclass(frozen=True)
class Setting:
    """One task: its data, its fp32 model, and how long QAT trains."""

    name: str
    model: ll.models.TorchModel
    train: ll.data.Dataset
    test: ll.data.Dataset
    qat_epochs: float
    qat_lr: float
    why: str  # why PTQ is expected to lose here, or that it is the easy case


def with_hot_pixel(data: ll.data.Dataset, value: float) -> ll.data.Dataset:
    """Every image with its corner pixel stuck at `value` (a defective sensor pixel)."""
    x = data.x.copy()
    x[:, :, 0, 0] = value
    return ll.data.Dataset(x, data.y, data.masks, data.name)


def lesions_setting(images: int, test_images: int, width: int, epochs: float, qat_epochs: float,
                    hot: float) -> Setting:
    train = with_hot_pixel(ll.data.load("lesions-hard", n=images, seed=0), hot)
    test = with_hot_pixel(ll.data.load("lesions-hard", n=test_images, seed=1), hot)
    torch.manual_seed(0)
    model = ll.finetune(SmallResNet(width=width), train, epochs=epochs, lr=3e-3, seed=0)
    return Setting(f"hard lesions with a hot pixel at {hot:g}, SmallResNet(width={width})", model, train, test,
                   qat_epochs, 1e-3,
                   f"every image's corner pixel is stuck at {hot:g} (images lie in [0, 1]). The float model learns "
                   f"to ignore it, but the input's min-max range must hold it, so uint8 keeps about {255 / hot:.0f} "
                   "levels for the image itself; percentile calibration keeps it too (it is 1 pixel in 4096, "
                   "far above the 0.001 % tail). PTQ and QAT see the same images and the same ranges")


def digits_setting(epochs: float, qat_epochs: float) -> Setting:
    x, y = load_digits(return_X_y=True)
    train, test = ll.data.Dataset((x / 16).astype(np.float32), y).split(0.3, seed=0)
    torch.manual_seed(0)
    model = ll.finetune(MLP(), train, epochs=epochs, lr=3e-3, seed=0)
    return Setting("digits, MLP 64-256-256-10", model, train, test, qat_epochs, 1e-3,
                   "the easy case: PTQ already loses nothing measurable")


def versions(setting: Setting) -> dict[str, object]:
    """Every row's model (or the reason it has none), made from the same fp32 model and images."""
    made: dict[str, object] = {"fp32": setting.model}
    made[f"fp32 + {setting.qat_epochs:g} epochs (control)"] = ll.finetune(
        setting.model, setting.train, epochs=setting.qat_epochs, lr=setting.qat_lr, seed=1)
    made["int8 PTQ (min-max)"] = ll.quantize(setting.model, setting.train.x, "int8")
    made["int8 PTQ (percentile)"] = ll.quantize(setting.model, setting.train.x, "int8", calibrate_method="percentile")
    made[f"int8 QAT ({setting.qat_epochs:g} epochs)"] = ll.quantize(
        setting.model, setting.train, "int8-qat", epochs=setting.qat_epochs, lr=setting.qat_lr)
    try:
        made["int4-weight"] = ll.quantize(setting.model, setting.train.x, "int4-weight")
    except LeanlensError as error:
        made["int4-weight"] = error.problem
    return made


def accuracy_rows(setting: Setting, made: dict[str, object]) -> list[str]:
    test, n = setting.test, len(setting.test)
    reference = setting.model.predict(test.x).argmax(1)
    base = (reference == test.y).mean()
    lines = []
    for label, model in made.items():
        if isinstance(model, str):
            lines.append(f"| {label} | refused: {model} | | | |")
            continue
        predicted = model.predict(test.x).argmax(1)
        accuracy, changed = (predicted == test.y).mean(), int((predicted != reference).sum())
        low, high = wilson(changed, n)
        size = len(model.model_bytes) if hasattr(model, "model_bytes") else len(serialize(model))
        lines.append(f"| {label} | {accuracy:.2%} | {100 * (accuracy - base):+.2f} | {changed} of {n} "
                     f"({low:.2%}–{high:.2%}) | {size / 1024:.0f} KiB |")
    return lines


def report(setting: Setting, repeats: int) -> None:
    made = versions(setting)
    print(f"## {setting.name}: {len(setting.train)} training / {len(setting.test)} test samples\n")
    print(f"Why this setting: {setting.why}.\n")
    print("| model | accuracy | vs fp32 (points) | changed predictions (95 % CI) | size |\n|---|---|---|---|---|")
    print("\n".join(accuracy_rows(setting, made)))
    graphs = {label: m for label, m in made.items() if hasattr(m, "model_bytes")}
    task = Task(setting.name, setting.model, setting.train.x, setting.train, setting.test, {})
    print("\n| batch | runtime | median ms | min ms | vs best fp32 |\n|---|---|---|---|---|")
    print("\n".join(latency_rows(task, graphs, repeats)))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--width", type=int, default=8, help="SmallResNet width of the lesions task")
    parser.add_argument("--hot-pixel", type=float, default=16.0, help="the stuck pixel's value (images lie in [0, 1])")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    if args.smoke:
        settings = [lesions_setting(200, 200, args.width, 0.2, 0.1, args.hot_pixel), digits_setting(0.5, 0.2)]
        repeats = 3
    else:
        settings = [lesions_setting(4000, 5000, args.width, 6.0, 2.0, args.hot_pixel), digits_setting(5.0, 2.0)]
        repeats = 25
    print(f"# PTQ vs QAT — {platform.processor() or platform.machine()}, {THREADS} threads, "
          f"torch {torch.__version__}" + (" — SMOKE RUN, figures mean nothing" if args.smoke else "") + "\n")
    for setting in settings:
        report(setting, repeats)
    print(f"Run took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
