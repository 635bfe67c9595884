"""Quantization schemes compared, PTQ against QAT included: accuracy, agreement with fp32, size, latency.

Issue 15's Done-when-1 table, one run. Three tasks:
- hard lesions with a hot pixel (SmallResNet(8)): the setting where post-training int8 loses
  accuracy, so that quantization-aware training has something to win back (see `hot_pixel_task`);
- hard lesions, the demo's CNN (SmallResNet(32)): calibration methods, `max_drop`, int8-dynamic;
- scikit-learn's digits (MLP 64-256-256-10): every scheme, int4-weight included.
(The text task's rows come from `benchmarks/text_quantization.py`.)

Rows: the fp32 model; where QAT runs, a float control trained on for QAT's epochs at QAT's learning
rate (QAT's int8 against it is what rounding still costs after training); static int8 PTQ
(calibrated on training images); int8-qat (trained from the fp32 model on the same images, then
the same static QDQ graph on the same ORT kernels); int4-weight, or ORT's refusal where a model
has convolutions (no 4-bit conv kernel here). Agreement counts the test predictions that differ
from the fp32 model's, with their Wilson 95 % interval. Latency: every graph interleaved with the
fp32 paths of the same model (ORT fp32, eager torch) at batch 1 and 32, equal threads.

    python benchmarks/quantization.py                   # about 8 min on 2 idle CPU cores
    python benchmarks/quantization.py --smoke           # tiny sizes: checks every row runs; figures mean nothing
    python benchmarks/quantization.py --hot-pixel 16    # the harder hot-pixel setting
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import leanlens as ll
import leanlens.compression.qat as qat_module
from leanlens.audit.profile import serialize
from leanlens.compression.twin import float_layers
from leanlens.errors import LeanlensError
from leanlens.models import SmallResNet

sys.path.insert(0, str(Path(__file__).parent))
from stats import wilson  # the benchmarks share their interval helper
from timing import speed_rows

THREADS = 2
CONTROL = "fp32 + QAT's epochs in float (control)"
FIXED_RANGES = "fixed_ranges"  # a row option of this benchmark only: QAT with PTQ's ranges frozen (the ablation)


@dataclass(frozen=True)
class Task:
    name: str
    model: object  # the trained fp32 TorchModel
    train: ll.data.Dataset  # what QAT and the control train on; calibration takes its first images
    validation: ll.data.Dataset  # what max_drop measures on: never the test set
    test: ll.data.Dataset
    schemes: dict[str, dict]  # row label -> ll.quantize keyword arguments
    why: str
    qat: dict = field(default_factory=dict)  # QAT's epochs and lr, when the task has QAT rows

    @property
    def calibration(self) -> np.ndarray:
        return self.train.x[:256]


class MLP(nn.Module):
    def __init__(self, hidden: int = 256):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, 10))

    def forward(self, x):
        return self.layers(x)


def qat_rows(qat: dict, ablation: bool = False) -> dict[str, dict]:
    rows = {f"int8 QAT ({qat['epochs']:g} epochs)": {"scheme": "int8-qat", **qat}}
    if ablation:
        rows["int8 QAT, ranges frozen at PTQ's (ablation)"] = {"scheme": "int8-qat", **qat, FIXED_RANGES: True}
    return rows


def with_hot_pixel(data: ll.data.Dataset, value: float) -> ll.data.Dataset:
    """Every image with its corner pixel stuck at `value` (a defective sensor pixel)."""
    x = data.x.copy()
    x[:, :, 0, 0] = value
    return ll.data.Dataset(x, data.y, data.masks, data.name)


def hot_pixel_task(images: int, test_images: int, epochs: float, qat_epochs: float, hot: float,
                   training_seed: int = 0) -> Task:
    def load(n, seed):
        return with_hot_pixel(ll.data.load("lesions-hard", n=n, seed=seed), hot)

    train, test = load(images, 0), load(test_images, 1)
    torch.manual_seed(training_seed)
    model = ll.finetune(SmallResNet(width=8), train, epochs=epochs, lr=3e-3, seed=training_seed)
    qat = {"epochs": qat_epochs, "lr": 1e-3}
    schemes = {"int8 PTQ (min-max)": {"scheme": "int8"},
               "int8 PTQ (percentile)": {"scheme": "int8", "calibrate_method": "percentile"},
               "int8 PTQ (entropy)": {"scheme": "int8", "calibrate_method": "entropy"},
               **qat_rows(qat, ablation=True), "int4-weight": {"scheme": "int4-weight"}}
    why = (f"every image's corner pixel is stuck at {hot:g} (images lie in [0, 1]). The float model learns to "
           f"ignore it, but a calibrated range must hold it: min-max keeps about {255 / hot:.0f} levels for the "
           "image itself, and percentile and entropy calibration keep it too (1 pixel in 4096 is far above "
           "the 0.001 % tail, and it is what dominates the histogram's top). QAT learns where to clip "
           "(LSQ+ ranges started at PTQ's min-max). The ablation row freezes the ranges at PTQ's: what the "
           "weights alone win back")
    return Task(f"hard lesions with a hot pixel at {hot:g}, SmallResNet(width=8)", model, train,
                load(max(200, test_images // 5), 2), test, schemes, why, qat)


def demo_cnn_task(images: int, test_images: int, epochs: float) -> Task:
    train = ll.data.load("lesions-hard", n=images, seed=0)
    torch.manual_seed(0)
    model = ll.finetune(SmallResNet(width=32), train, epochs=epochs, lr=3e-3, seed=0)
    schemes = {
        "int8 PTQ (min-max)": {"scheme": "int8"},
        "int8 PTQ (percentile)": {"scheme": "int8", "calibrate_method": "percentile"},
        "int8 PTQ (entropy)": {"scheme": "int8", "calibrate_method": "entropy"},
        "int8, max_drop=0.5": {"scheme": "int8", "max_drop": 0.5},
        "int8-dynamic (head only)": {"scheme": "int8-dynamic"},
        "int4-weight": {"scheme": "int4-weight"},
    }
    return Task("hard lesions, SmallResNet(32) (the demo CNN)", model, train,
                ll.data.load("lesions-hard", n=max(200, test_images // 5), seed=2),
                ll.data.load("lesions-hard", n=test_images, seed=1), schemes,
                "the demo's CNN: PTQ already keeps its accuracy, so QAT has nothing to win (not run here)")


def digits_task(epochs: float, qat_epochs: float) -> Task:
    x, y = load_digits(return_X_y=True)
    train, test = ll.data.Dataset((x / 16).astype(np.float32), y).split(0.3, seed=0)
    train, validation = train.split(0.2, seed=0)
    torch.manual_seed(0)
    model = ll.finetune(MLP(), train, epochs=epochs, lr=3e-3, seed=0)
    qat = {"epochs": qat_epochs, "lr": 1e-3}
    schemes = {"int8 PTQ (min-max)": {"scheme": "int8"},
               "int8 PTQ (percentile)": {"scheme": "int8", "calibrate_method": "percentile"},
               "int8, max_drop=0.5": {"scheme": "int8", "max_drop": 0.5},
               **qat_rows(qat), "int8-dynamic": {"scheme": "int8-dynamic"}, "int4-weight": {"scheme": "int4-weight"}}
    return Task("digits, MLP 64-256-256-10", model, train, validation, test, schemes,
                "the easy case: PTQ already loses nothing measurable on 539 test digits", qat)


@contextmanager
def frozen_ranges(frozen: bool):
    """QAT whose activation ranges stay at PTQ's (Adam at rate 0 on them): the ablation row."""
    kept = qat_module.RANGE_LR
    qat_module.RANGE_LR = 0.0 if frozen else kept
    try:
        yield
    finally:
        qat_module.RANGE_LR = kept


def made_models(task: Task) -> dict[str, object]:
    """Every row's model, or the one-line reason `ll.quantize` refused it."""
    made: dict[str, object] = {}
    if task.qat:
        made[CONTROL] = ll.finetune(task.model, task.train, seed=1, **task.qat)
    for label, kwargs in task.schemes.items():
        kwargs = dict(kwargs)
        frozen = kwargs.pop(FIXED_RANGES, False)
        # QAT trains on the labelled images; max_drop measures on the validation set; PTQ needs inputs only
        data = task.train if kwargs["scheme"] == "int8-qat" else (
            task.validation if kwargs.get("max_drop") is not None else task.calibration)
        started = time.perf_counter()
        try:
            with frozen_ranges(frozen):
                made[label] = ll.quantize(task.model, data, **kwargs)
        except LeanlensError as error:
            made[label] = error.problem
        print(f"  {task.name}: {label} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return made


def accuracy_rows(task: Task, made: dict[str, object]) -> list[str]:
    test, n = task.test, len(task.test)
    reference = task.model.predict(test.x).argmax(1)
    base = (reference == test.y).mean()
    lines = [f"| fp32 (torch) | {base:.2%} | — | — | {len(serialize(task.model)) / 1024:.0f} KiB | — |"]
    for label, model in made.items():
        if isinstance(model, str):
            lines.append(f"| {label} | refused: {model} | | | | |")
            continue
        predicted = model.predict(test.x).argmax(1)
        accuracy, changed = (predicted == test.y).mean(), int((predicted != reference).sum())
        low, high = wilson(changed, n)
        lines.append(f"| {label} | {accuracy:.2%} | {100 * (accuracy - base):+.2f} | {changed} of {n} "
                     f"({low:.2%}–{high:.2%}) | {_size(model) / 1024:.0f} KiB | {_twin(model, test.x)} |")
    return lines


def _size(model) -> int:
    return len(model.model_bytes) if hasattr(model, "model_bytes") else len(serialize(model))


def _twin(model, x: np.ndarray) -> str:
    """The int8 twin's top-1 agreement and mean score error against its deployed graph, and any float layers."""
    if not hasattr(model, "model_bytes"):
        return "—"
    fidelity = ll.explain(model, x[:64], "saliency").stand_in_fidelity
    floats = float_layers(model)
    return f"{fidelity.agreement:.0%} / {fidelity.mean_error:.1e}" + (f"; float: {', '.join(floats)}" if floats else "")


def latency_rows(task: Task, made: dict[str, object], repeats: int) -> list[str]:
    graphs = {label: m.model_bytes for label, m in made.items() if hasattr(m, "model_bytes")}
    # the fp32 graph the PTQ rows were quantized from (QAT's own fp32 graph holds its trained weights)
    fp32 = {"ORT fp32": made["int8 PTQ (min-max)"].fp32.model_bytes}
    return speed_rows(task.model.predict, {**fp32, **graphs}, task.test.x, THREADS, repeats, warmup=3)


def over_seeds(make_task, seeds: int) -> None:
    """PTQ (min-max) against QAT for float models trained from `seeds` different seeds: one run's
    difference of a few tenths of a point is within what retraining alone moves."""
    print(f"## PTQ against QAT over {seeds} training seeds\n")
    print("| training seed | fp32 | PTQ min-max: points (changed) | QAT: points (changed) |\n|---|---|---|---|")
    ptq_loss, qat_loss = [], []
    for seed in range(seeds):
        task = make_task(seed)
        ptq_label, qat_label = "int8 PTQ (min-max)", next(label for label in task.schemes if "QAT (" in label)
        task = replace(task, schemes={label: task.schemes[label] for label in (ptq_label, qat_label)}, qat={})
        made = made_models(task)
        reference = task.model.predict(task.test.x).argmax(1)
        base = (reference == task.test.y).mean()
        cells = []
        for label, losses in ((ptq_label, ptq_loss), (qat_label, qat_loss)):
            predicted = made[label].predict(task.test.x).argmax(1)
            losses.append(100 * ((predicted == task.test.y).mean() - base))
            cells.append(f"{losses[-1]:+.2f} ({int((predicted != reference).sum())})")
        print(f"| {seed} | {base:.2%} | {cells[0]} | {cells[1]} |", flush=True)
    print(f"| mean ± s.d. | | {np.mean(ptq_loss):+.2f} ± {np.std(ptq_loss, ddof=1):.2f} | "
          f"{np.mean(qat_loss):+.2f} ± {np.std(qat_loss, ddof=1):.2f} |\n")


def report(task: Task, repeats: int) -> None:
    made = made_models(task)
    print(f"## {task.name}: {len(task.train)} training / {len(task.test)} test samples\n")
    print(f"Why this setting: {task.why}.\n")
    print("| model | accuracy | vs fp32 (points) | changed predictions (95 % CI) | size | twin: top-1 / score error |")
    print("|---|---|---|---|---|---|")
    print("\n".join(accuracy_rows(task, made)))
    print("\n| batch | runtime | median ms | min ms | vs best fp32 |\n|---|---|---|---|---|")
    print("\n".join(latency_rows(task, made, repeats)))
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every row runs")
    parser.add_argument("--hot-pixel", type=float, default=12.0, help="the stuck pixel's value (images lie in [0, 1])")
    parser.add_argument("--seeds", type=int, default=0,
                        help="instead of the tables: PTQ against QAT on the hot-pixel task for this many training seeds")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    if args.seeds:
        sizes = (200, 200, 0.2, 0.1) if args.smoke else (4000, 5000, 6.0, 2.0)
        over_seeds(lambda seed: hot_pixel_task(*sizes, args.hot_pixel, training_seed=seed), max(2, args.seeds))
        print(f"Run took {time.perf_counter() - started:.0f} s.")
        return
    if args.smoke:
        tasks = [lambda: hot_pixel_task(200, 200, 0.2, 0.1, args.hot_pixel), lambda: demo_cnn_task(200, 200, 0.2),
                 lambda: digits_task(0.5, 0.2)]
        repeats = 3
    else:
        tasks = [lambda: hot_pixel_task(4000, 5000, 6.0, 2.0, args.hot_pixel), lambda: demo_cnn_task(4000, 5000, 2.0),
                 lambda: digits_task(5.0, 2.0)]
        repeats = 25
    print(f"# Quantization schemes, PTQ against QAT — {platform.processor() or platform.machine()}, {THREADS} threads, "
          f"torch {torch.__version__}" + (" — SMOKE RUN, figures mean nothing" if args.smoke else "") + "\n")
    for make_task in tasks:
        report(make_task(), repeats)
    print(f"Run took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
