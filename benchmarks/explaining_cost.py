"""The cost of explaining: serving each prediction with its explanation, against a plain forward.

    .venv/bin/python benchmarks/explaining_cost.py [--smoke] [--threads N] [--budget SECONDS]

The demo's CNN (SmallResNet, width 32) is trained as `leanlens demo` trains v0, on the hard
lesions set; then each method explains batches of 1 and 64 test images, timed in turns with
a plain forward of the same batch (`ll.explaining_cost`). The accuracy columns are those of
the predictions served with and without the explanation, on the same images. Prints a
Markdown table; `cost_table(model, data)` gives the same table to other benchmarks
(benchmarks/consistency.py). No test reads the figures: measure them on an idle machine.
"""

from __future__ import annotations

import argparse
import sys

import torch

import leanlens as ll
from leanlens.demo import FULL
from leanlens.models import SmallResNet

METHODS = ("saliency", "gradcam", "gradcam++", "ig", "occlusion", "kernelshap")
BATCH_SIZES = (1, 64)
# KernelSHAP's default players are the 4,096 pixels (10,240 coalitions a sample, over a minute an
# image here); 8×8 superpixels (64 players) and 512 coalitions are what shap's image recipe serves.
OPTIONS = {"kernelshap": {"superpixel": 8, "samples": 512}}
SMOKE = {"images": 300, "width": 8, "epochs": 1.0, "batch_sizes": (1, 8), "repeats": 3, "budget_s": 2.0,
         "options": {"kernelshap": {"superpixel": 8, "samples": 32}}}


def cost_table(model, data, *, methods=METHODS, batch_sizes=BATCH_SIZES, options=None, threads: int | None = None,
               repeats: int = 15, budget_s: float = 120.0, progress: bool = True) -> str:
    """The cost-of-explaining table of `model` on `data`'s first samples, as Markdown."""
    costs = ll.explaining_cost(model, data, methods, batch_sizes=batch_sizes,
                               options=OPTIONS if options is None else options, threads=threads, repeats=repeats,
                               budget_s=budget_s, on_step=_report if progress else None)
    return costs.to_markdown()


def _report(done: int, total: int) -> None:
    live = sys.stderr.isatty()  # one line rewritten in a terminal, a line a step in a log
    start = "\r" if live else ""
    print(f"{start}explaining cost: {done}/{total} (method, batch) pairs timed",
          end="\n" if done == total or not live else "", file=sys.stderr, flush=True)


def trained_v0(images: int, width: int, epochs: float, seed: int = 0):
    """The demo's v0 and its test set: SmallResNet trained on three quarters of the hard lesions."""
    torch.manual_seed(seed)
    train, test = ll.data.load("lesions-hard", n=images, seed=seed).split(0.25, seed=seed)
    model = ll.finetune(SmallResNet(width=width), train, epochs=epochs, lr=3e-3, seed=seed)
    return model, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds a method may take at one batch size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.smoke:
        model, test = trained_v0(SMOKE["images"], SMOKE["width"], SMOKE["epochs"], args.seed)
        table = cost_table(model, test, batch_sizes=SMOKE["batch_sizes"], options=SMOKE["options"],
                           threads=args.threads, repeats=SMOKE["repeats"], budget_s=SMOKE["budget_s"])
    else:
        model, test = trained_v0(FULL.images, FULL.width, FULL.train_epochs, args.seed)
        table = cost_table(model, test, threads=args.threads, budget_s=args.budget)
    accuracy = float((model.predict(test.x).argmax(1) == test.y).mean())
    print(f"v0: SmallResNet(width={SMOKE['width'] if args.smoke else FULL.width}) on lesions-hard, "
          f"test accuracy {100 * accuracy:.1f} % on {len(test)} images\n")
    print(table)


if __name__ == "__main__":
    main()
