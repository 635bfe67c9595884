"""Quantization schemes compared: accuracy, agreement with fp32, size and latency, in one run.

Two tasks: the demo's CNN (SmallResNet) on the hard lesions set, and an MLP on scikit-learn's
digits. Every scheme of `ll.quantize` that applies to the model is a row; the latency columns
time each model interleaved with the best fp32 paths of the same model (ORT fp32, eager torch)
at batch 1 and 32, with equal threads. Agreement is the share of test predictions that equal
the fp32 model's, with the count of changed predictions and its Wilson 95 % interval.

    python benchmarks/quantization.py            # about 4 min on 2 idle CPU cores
    python benchmarks/quantization.py --smoke    # a tiny run that checks the script
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
from torch import nn

import leanlens as ll
from leanlens.audit.profile import serialize
from leanlens.audit.timing import interleaved, ort_session, torch_threads
from leanlens.compression.twin import float_layers
from leanlens.errors import LeanlensError
from leanlens.models import SmallResNet

sys.path.insert(0, str(Path(__file__).parent))
from stats import wilson  # the benchmarks share their interval helper

THREADS = 2


@dataclass(frozen=True)
class Task:
    name: str
    model: object  # the trained fp32 TorchModel
    calibration: np.ndarray
    validation: ll.data.Dataset  # what max_drop measures on: never the test set
    test: ll.data.Dataset
    schemes: dict[str, dict]  # row label -> ll.quantize keyword arguments


class MLP(nn.Module):
    def __init__(self, hidden: int = 256):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, 10))

    def forward(self, x):
        return self.layers(x)


def lesions_task(images: int, test_images: int, epochs: float) -> Task:
    train = ll.data.load("lesions-hard", n=images, seed=0)
    test = ll.data.load("lesions-hard", n=test_images, seed=1)
    torch.manual_seed(0)
    model = ll.finetune(SmallResNet(width=32), train, epochs=epochs, lr=3e-3, seed=0)
    schemes = {
        "int8 (min-max)": {"scheme": "int8"},
        "int8 (percentile)": {"scheme": "int8", "calibrate_method": "percentile"},
        "int8 (entropy)": {"scheme": "int8", "calibrate_method": "entropy"},
        "int8, max_drop=0.5": {"scheme": "int8", "max_drop": 0.5},
        "int8-dynamic (head only)": {"scheme": "int8-dynamic"},
    }
    validation = ll.data.load("lesions-hard", n=max(200, test_images // 5), seed=2)
    return Task("hard lesions, SmallResNet(32)", model, train.x[:256], validation, test, schemes)


def digits_task(epochs: float) -> Task:
    x, y = load_digits(return_X_y=True)
    data = ll.data.Dataset((x / 16).astype(np.float32), y)
    train, test = data.split(0.3, seed=0)
    train, validation = train.split(0.2, seed=0)
    torch.manual_seed(0)
    model = ll.finetune(MLP(), train, epochs=epochs, lr=3e-3, seed=0)
    schemes = {
        "int8 (min-max)": {"scheme": "int8"},
        "int8, max_drop=0.5": {"scheme": "int8", "max_drop": 0.5},
        "int8-dynamic": {"scheme": "int8-dynamic"},
        "int4-weight": {"scheme": "int4-weight"},
    }
    return Task("digits, MLP 64-256-256-10", model, train.x[:256], validation, test, schemes)


def accuracy_rows(task: Task) -> tuple[list[str], dict[str, object]]:
    fp32_pred = task.model.predict(task.test.x).argmax(1)
    n = len(task.test)
    size = len(serialize(task.model)) / 1024
    lines = [f"| fp32 (torch) | {(fp32_pred == task.test.y).mean():.2%} | — | — | {size:.0f} KiB | — |"]
    quantized = {}
    for label, kwargs in task.schemes.items():
        guarded = kwargs.get("max_drop") is not None
        try:  # a guarded scheme calibrates on the validation set, whose labels it needs
            model = ll.quantize(task.model, task.validation if guarded else task.calibration, **kwargs)
        except LeanlensError as error:
            lines.append(f"| {label} | refused: {error.problem} | | | | |")
            continue
        quantized[label] = model
        pred = model.predict(task.test.x).argmax(1)
        changed = int((pred != fp32_pred).sum())
        low, high = wilson(changed, n)
        fidelity = ll.explain(model, task.test.x[:64], "saliency").stand_in_fidelity
        floats = float_layers(model) if guarded else []
        note = f"; float: {', '.join(floats)}" if floats else ""
        lines.append(f"| {label} | {(pred == task.test.y).mean():.2%} | {changed} of {n} "
                     f"({low:.2%}–{high:.2%}) | {1 - changed / n:.2%} | {len(model.model_bytes) / 1024:.0f} KiB | "
                     f"{fidelity.agreement:.0%} / {fidelity.mean_error:.1e}{note} |")
    return lines, quantized


def latency_rows(task: Task, quantized: dict[str, object], repeats: int) -> list[str]:
    lines = []
    fp32_graph = next(iter(quantized.values())).fp32.model_bytes if quantized else None
    for batch in (1, 32):
        x = np.ascontiguousarray(task.test.x[:batch])
        calls = {"torch eager": lambda x=x: task.model.predict(x, batch_size=len(x))}
        if fp32_graph is not None:
            calls["ORT fp32"] = _ort_call(fp32_graph, x)
        for label, model in quantized.items():
            calls[label] = _ort_call(model.model_bytes, x)
        with torch_threads(THREADS):
            timings = interleaved(calls, repeats=repeats, warmup=3, burst=1)
        best = min(timings[name].median_ms for name in ("torch eager", "ORT fp32") if name in timings)
        for name, timing in timings.items():
            lines.append(f"| {batch} | {name} | {timing.median_ms:.3f} | {timing.min_ms:.3f} | "
                         f"{best / timing.median_ms:.2f}× |")
    return lines


def _ort_call(model_bytes: bytes, x: np.ndarray):
    session = ort_session(model_bytes, THREADS)
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    if args.smoke:
        tasks = [lesions_task(200, 200, 0.2), digits_task(0.5)]
        repeats = 3
    else:
        tasks = [lesions_task(4000, 5000, 2.0), digits_task(5.0)]
        repeats = 25
    print(f"# Quantization schemes — {platform.processor() or platform.machine()}, {THREADS} threads, "
          f"torch {torch.__version__}\n")
    for task in tasks:
        lines, quantized = accuracy_rows(task)
        print(f"## {task.name}: {len(task.test)} test samples\n")
        print("| model | accuracy | changed predictions (95 % CI) | agreement | size | twin: top-1 / score error |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))
        print("\n| batch | runtime | median ms | min ms | vs best fp32 |\n|---|---|---|---|---|")
        print("\n".join(latency_rows(task, quantized, repeats)))
        print()
    print(f"PTQ against QAT (int8-qat): benchmarks/qat.py. Run took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
