"""The transformer text task quantized: accuracy, agreement with fp32, size and latency, in one run.

The model is the bundled all-MiniLM-L6-v2 encoder with a linear head trained here (frozen
encoder) on the VADER sentiment words (`ll.data.load("vader-sentiment-train")`); it is tested on
the held-out stems at sequence length 128 (each word padded to 128 tokens, as a deployed model
taking fixed-length input would see it). Rows: fp32 on eager torch and on ONNX Runtime, static
int8 (QDQ MatMuls, calibrated on training words), int8-dynamic (MatMulInteger) and int4-weight
(MatMulNBits). Agreement is the share of test predictions equal to eager fp32's, with the count
of changed predictions and its Wilson 95 % interval. Latency: every contender timed in turns in
one run, with equal threads, at batch 1 and 32.

    python benchmarks/text_quantization.py            # about 10 min on 2 idle CPU cores
    python benchmarks/text_quantization.py --smoke    # a tiny run that checks the script

On a machine busier than its cores, torch's OpenMP threads wait on each other: measured here under
a load of 11 on 2 cores, eager MiniLM at batch 1 took 2.5 s on 2 threads and 0.11 s on 1. Time on
an idle machine, or pass --threads 1.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import leanlens as ll
from leanlens import text
from leanlens.audit.profile import serialize
from leanlens.audit.timing import interleaved, torch_threads

sys.path.insert(0, str(Path(__file__).parent))
from stats import wilson  # the benchmarks share their interval helper
from timing import ort_call

THREADS = 2  # the default of --threads: torch and ONNX Runtime get the same count
LENGTH = 128  # tokens a text at test time: padded or cut to this
SCHEMES = ("int8", "int8-dynamic", "int4-weight")


def trained_model(train: ll.data.Dataset) -> ll.Model:
    started = time.perf_counter()
    model = text.train_head(text.TextClassifier.pretrained(), train)
    print(f"head trained on {len(train)} words in {time.perf_counter() - started:.0f} s\n", file=sys.stderr)
    return ll.wrap(model)


def at_length(data, length: int) -> np.ndarray:
    return text.tokenize(list(data.texts), max_length=length)


def accuracy_rows(model, quantized: dict, x: np.ndarray, y: np.ndarray) -> list[str]:
    reference = model.predict(x, batch_size=32).argmax(1)
    n = len(y)
    rows = [f"| fp32 (torch eager) | {(reference == y).mean():.2%} | — | — | {len(serialize(model)) / 2**20:.1f} MiB |"]
    contenders = {"fp32 (ORT)": next(iter(quantized.values())).fp32, **quantized}
    for label, candidate in contenders.items():
        pred = candidate.predict(x, batch_size=32).argmax(1)
        changed = int((pred != reference).sum())
        low, high = wilson(changed, n)
        rows.append(f"| {label} | {(pred == y).mean():.2%} | {changed} of {n} ({low:.2%}–{high:.2%}) | "
                    f"{1 - changed / n:.2%} | {len(candidate.model_bytes) / 2**20:.1f} MiB |")
    return rows


def latency_rows(model, quantized: dict, x: np.ndarray, repeats: int, threads: int) -> list[str]:
    lines = []
    graphs = {"ORT fp32": next(iter(quantized.values())).fp32.model_bytes}
    graphs.update({f"ORT {label}": q.model_bytes for label, q in quantized.items()})
    for batch in (1, 32):
        ids = np.ascontiguousarray(x[:batch])
        calls = {"torch eager": lambda ids=ids: model.predict(ids, batch_size=len(ids))}
        calls.update({name: ort_call(graph, ids, threads) for name, graph in graphs.items()})
        with torch_threads(threads):
            timings = interleaved(calls, repeats=repeats, warmup=2, burst=1)
        best = min(timings[name].median_ms for name in ("torch eager", "ORT fp32"))
        for name, timing in timings.items():
            lines.append(f"| {batch} | {name} | {timing.median_ms:.1f} | {timing.min_ms:.1f} | "
                         f"{best / timing.median_ms:.2f}× |")
    return lines


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--threads", type=int, default=THREADS, help="intra-op threads of every runtime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_train, n_test, calibration, repeats = (200, 64, 32, 2) if args.smoke else (None, None, 256, 10)
    train = ll.data.load("vader-sentiment-train", n=n_train)
    test = ll.data.load("vader-sentiment-test", n=n_test)
    model = trained_model(train)
    rng = np.random.default_rng(0)  # calibration: training words at the test length, never test words
    calibration_ids = at_length(train.subset(np.sort(rng.choice(len(train), calibration, replace=False))), LENGTH)
    quantized = {scheme: ll.quantize(model, calibration_ids, scheme=scheme, calibration_samples=calibration)
                 for scheme in SCHEMES}
    x = at_length(test, LENGTH)
    print(f"# Text quantization — {text.ENCODER_NAME} + linear head, VADER words, sequence length {LENGTH}; "
          f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}\n")
    print(f"{len(train)} training words; {len(test)} test words (held-out stems); "
          f"static int8 calibrated on {calibration} training words.\n")
    print("| model | accuracy | changed predictions vs fp32 (95 % CI) | agreement | size |\n|---|---|---|---|---|")
    print("\n".join(accuracy_rows(model, quantized, x, test.y)))
    print("\n| batch | runtime | median ms | min ms | vs best fp32 |\n|---|---|---|---|---|")
    print("\n".join(latency_rows(model, quantized, x, repeats, args.threads)))
    print(f"\nRun took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
