"""Token attributions of the text task: IG's completeness on the fp32 model, and whether the int8
graphs' own token attributions rank the tokens as fp32's do (issue 16, done-when 5).

The model is the bundled all-MiniLM-L6-v2 with a head trained here on the VADER words (as in
text_quantization.py). The texts are short sentences written for this benchmark (no data set of
sentences ships offline). IG runs on the word embeddings with the pad-token baseline; its
completeness error is |sum of token values - (f(x) - f(baseline))| over |f(x) - f(baseline)|.
Occlusion and KernelSHAP run on each quantized ONNX graph itself (forward only, [MASK] for a
hidden token) and on fp32 torch; a sentence's Spearman correlation compares the two rankings of
its tokens.

    python benchmarks/text_tokens.py            # a few minutes on 2 idle CPU cores
    python benchmarks/text_tokens.py --smoke    # a tiny run that checks the script
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr

import leanlens as ll
from leanlens import text

SENTENCES = [
    "the food was wonderful and the staff were kind",
    "a dull film with a terrible ending",
    "i love this little cafe",
    "the service was slow and the room was dirty",
    "what a brilliant and funny book",
    "not good at all",
    "the hotel was clean but the bed was awful",
    "an honest , warm and moving story",
    "my order arrived broken and late",
    "great value , friendly people",
    "the plot is boring and the actors are weak",
    "a pleasant surprise from start to finish",
    "i hate waiting in this horrible queue",
    "the soup was cold , the bread was stale",
    "beautiful views and a lovely garden",
    "the worst meal i have had in years",
]
SCHEMES = ("int8-dynamic", "int8")
METHODS = {"occlusion": {}, "kernelshap": {"samples": 512}}


def completeness_row(model, sentences, steps: int) -> str:
    explanation = ll.explain(model, sentences, method="ig", steps=steps)
    relative = explanation.error.relative
    return (f"| IG, {steps} Gauss-Legendre points | {np.median(relative):.2%} | {relative.max():.2%} | "
            f"{(relative < 0.01).sum()} of {len(relative)} |")


def agreement_rows(model, quantized: dict, sentences) -> list[str]:
    tokenizer = text.load_tokenizer()
    rows = []
    for method, options in METHODS.items():
        reference = ll.explain(model, sentences, method=method, target=1, **options)
        for scheme, graph in quantized.items():
            candidate = ll.explain(graph, sentences, method=method, target=1, tokenizer=tokenizer, **options)
            with warnings.catch_warnings():  # constant values: counted below, not warned about
                warnings.simplefilter("ignore")
                rho = np.array([spearmanr(reference.token_values(i), candidate.token_values(i))[0]
                                for i in range(len(sentences))])
            top = np.mean([np.argmax(np.abs(reference.token_values(i))) == np.argmax(np.abs(candidate.token_values(i)))
                           for i in range(len(sentences))])
            # a text whose values are all equal on one side has no ranking: its rho is undefined (NaN)
            defined = np.isfinite(rho)
            rows.append(f"| {method} | {scheme} | {np.median(rho[defined]):.3f} | {rho[defined].min():.3f} | {top:.0%} | "
                        f"{defined.sum()} of {len(rho)} |")
    return rows


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_train, calibration, sentences, steps = (200, 16, SENTENCES[:3], 16) if args.smoke else (None, 256, SENTENCES, 64)
    train = ll.data.load("vader-sentiment-train", n=n_train)
    model = text.train_head(text.TextClassifier.pretrained(), train)
    with tempfile.TemporaryDirectory() as folder:  # ORT's quantization tools write beside the working directory
        before = os.getcwd()
        os.chdir(folder)
        try:
            quantized = {s: ll.quantize(model, train, scheme=s, calibration_samples=calibration) for s in SCHEMES}
        finally:
            os.chdir(before)
    print(f"# Token attributions — {text.ENCODER_NAME} + head on {len(train)} VADER words, {len(sentences)} sentences, "
          f"{args.threads} threads\n")
    print("| method | median abs(delta) / gap | max | under 1 % |\n|---|---|---|---|")
    print(completeness_row(model, sentences, steps))
    print("\n| method | int8 graph | median Spearman vs fp32 | min | same top token | rho defined |\n|---|---|---|---|---|---|")
    print("\n".join(agreement_rows(model, quantized, sentences)))
    print(f"\nRun took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
