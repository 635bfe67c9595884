"""The transformer text task quantized: accuracy, agreement with fp32, size and latency, in one run.

The model is the bundled all-MiniLM-L6-v2 encoder with a linear head trained here (frozen
encoder) on the VADER sentiment words (`ll.data.load("vader-sentiment-train")`); it is tested on
the held-out stems at sequence length 128 (each word padded to 128 tokens, as a deployed model
taking fixed-length input would see it). Rows: fp32 on eager torch and on ONNX Runtime; static
int8 (QDQ MatMul inputs, calibrated on training words) with each calibration method; the best of
them (chosen on other training words) with the per-node fallback to fp32 within MAX_DROP points;
int8-qat (the same graph after QAT); int8-dynamic (MatMulInteger) and int4-weight (MatMulNBits). Agreement is the share of test predictions equal to eager fp32's, with the count
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

sys.path.insert(0, str(Path(__file__).parent))
from stats import wilson  # the benchmarks share their interval helper
from timing import speed_rows

THREADS = 2  # the default of --threads: torch and ONNX Runtime get the same count
LENGTH = 128  # tokens a text at test time: padded or cut to this
CALIBRATIONS = ("minmax", "percentile", "entropy")
VALIDATION = 512  # training words, not calibrating, on which the calibration method and max_drop are chosen
MAX_DROP = 0.5  # accuracy points the fallback row may lose on those words
QAT_EPOCHS = 2.0  # about 300 steps of 32 words


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


def quantized_models(model, train, calibration: int, smoke: bool) -> dict:
    """Every contender, by row label; the calibration method is chosen by agreement with fp32 on
    training words that neither calibrate nor are tested on, never on test words."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))
    calibration_ids = at_length(train.subset(np.sort(order[:calibration])), LENGTH)
    held = train.subset(np.sort(order[calibration:calibration + VALIDATION]))
    validation = ll.data.Dataset(at_length(held, LENGTH), held.y)
    reference = model.predict(validation.x, batch_size=32).argmax(1)
    static = {method: ll.quantize(model, calibration_ids, scheme="int8", calibration_samples=calibration,
                                  calibrate_method=method) for method in CALIBRATIONS}
    agreement = {m: (q.predict(validation.x, batch_size=32).argmax(1) == reference).mean() for m, q in static.items()}
    best = max(CALIBRATIONS, key=agreement.get)
    print(f"calibration chosen on {len(validation)} training words: {best} "
          f"(agreement {', '.join(f'{m} {a:.2%}' for m, a in agreement.items())})\n", file=sys.stderr)
    labelled = ll.data.Dataset(np.concatenate([calibration_ids, validation.x]),
                               np.concatenate([train.y[np.sort(order[:calibration])], validation.y]))
    rows = {f"int8 ({m})": q for m, q in static.items()}
    rows[f"int8 ({best}) + fallback, max_drop={MAX_DROP}"] = ll.quantize(
        model, labelled, scheme="int8", calibration_samples=calibration, calibrate_method=best, max_drop=MAX_DROP)
    rows[f"int8-qat ({QAT_EPOCHS:g} epochs)"] = ll.quantize(
        model, train, scheme="int8-qat", calibration_samples=calibration, epochs=0.05 if smoke else QAT_EPOCHS,
        lr=1e-5, on_step=progress)
    for scheme in ("int8-dynamic", "int4-weight"):
        rows[scheme] = ll.quantize(model, calibration_ids, scheme=scheme, calibration_samples=calibration)
    return rows


def progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        print(f"QAT step {done}/{total}", file=sys.stderr)


def latency_rows(model, quantized: dict, x: np.ndarray, repeats: int, threads: int) -> list[str]:
    graphs = {"ORT fp32": next(iter(quantized.values())).fp32.model_bytes}
    graphs.update({f"ORT {label}": q.model_bytes for label, q in quantized.items()})
    return speed_rows(model.predict, graphs, x, threads, repeats, digits=1)


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--no-latency", action="store_true", help="accuracy table only (for a loaded machine)")
    parser.add_argument("--threads", type=int, default=THREADS, help="intra-op threads of every runtime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_train, n_test, calibration, repeats = (200, 64, 32, 2) if args.smoke else (None, None, 256, 10)
    train = ll.data.load("vader-sentiment-train", n=n_train)
    test = ll.data.load("vader-sentiment-test", n=n_test)
    model = trained_model(train)
    quantized = quantized_models(model, train, calibration, args.smoke)
    x = at_length(test, LENGTH)
    print(f"# Text quantization — {text.ENCODER_NAME} + linear head, VADER words, sequence length {LENGTH}; "
          f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}\n")
    print(f"{len(train)} training words; {len(test)} test words (held-out stems); "
          f"static int8 calibrated on {calibration} training words (QAT trains on all of them).\n")
    print("| model | accuracy | changed predictions vs fp32 (95 % CI) | agreement | size |\n|---|---|---|---|---|")
    print("\n".join(accuracy_rows(model, quantized, x, test.y)))
    if not args.no_latency:
        print("\n| batch | runtime | median ms | min ms | vs best fp32 |\n|---|---|---|---|---|")
        print("\n".join(latency_rows(model, quantized, x, repeats, args.threads)))
    print(f"\nRun took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
