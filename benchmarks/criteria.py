"""Pruning criteria compared at equal budget on the hard lesions (issue 14, done-when 4).

    PYTHONPATH=src python benchmarks/criteria.py [--budget macs=0.3] [--seed 0]
    PYTHONPATH=src python benchmarks/criteria.py --smoke    # tiny sizes: does every row run?

v0 is SmallResNet(width=32) trained as the demo trains it on the hard lesions; each criterion
(magnitude, taylor, attribution, random) then compresses v0 with `ll.compress` to the same
budget with the same recovery schedule (the accuracy guard is off, so every criterion
finishes and its cost shows). Prints a Markdown table: test accuracy, and similarity of
Grad-CAM++ and IG to v0 (Spearman, top-10 % overlap) on test images that hold a lesion,
explaining the lesion class. The smoke run's figures mean nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

import leanlens as ll
from leanlens.data import lesions
from leanlens.metrics.similarity import spearman, top_k_overlap
from leanlens.models import SmallResNet

CRITERIA = ("magnitude", "taylor", "attribution", "random")
LESION = 1


@dataclass(frozen=True)
class Scale:
    images: int
    width: int
    train_epochs: float
    epochs_per_step: float
    probes: int
    ig_steps: int


FULL = Scale(images=5000, width=32, train_epochs=2.0, epochs_per_step=1.0, probes=64, ig_steps=32)
SMOKE = Scale(images=240, width=16, train_epochs=0.2, epochs_per_step=0.1, probes=8, ig_steps=4)


def similarity(reference: ll.Explanation, candidate: ll.Explanation) -> tuple[float, float]:
    return float(np.mean(spearman(candidate.values, reference.values))), \
        float(np.mean(top_k_overlap(reference.values, candidate.values, 0.1)))


def row(name: str, model, test, probes, references, seconds: float, macs: float) -> str:
    accuracy = float((model.predict(test.x).argmax(1) == test.y).mean())
    cells = [name, f"{macs:.2f}", f"{100 * accuracy:.1f}"]
    for method, reference in references.items():
        options = {"steps": SCALE.ig_steps} if method == "ig" else {}
        ours = ll.explain(model, probes.x, method=method, target=probes.y, **options)
        cells += [f"{value:.3f}" for value in similarity(reference, ours)]
    return "| " + " | ".join(cells + [f"{seconds:.0f}"]) + " |"


def main() -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="macs=0.3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    SCALE = SMOKE if args.smoke else FULL
    torch.manual_seed(args.seed)
    data = lesions(SCALE.images, seed=args.seed, difficulty="hard")
    train, test = data.split(0.2, seed=args.seed)
    fit, validation = train.split(0.15, seed=args.seed)  # compress's guard data, apart from the test set
    probes = test.subset(np.flatnonzero(test.y == LESION)[: SCALE.probes])
    v0 = ll.finetune(SmallResNet(width=SCALE.width), fit, epochs=SCALE.train_epochs, lr=3e-3, seed=args.seed)
    references = {method: ll.explain(v0, probes.x, method=method, target=probes.y,
                                     **({"steps": SCALE.ig_steps} if method == "ig" else {}))
                  for method in ("gradcam++", "ig")}
    print(f"Budget {args.budget}, hard lesions ({len(fit)} train, {len(validation)} validation, {len(test)} test), "
          f"seed {args.seed}; similarity on {len(probes)} test lesion images.\n")
    print("| model | MACs share | accuracy % | Grad-CAM++ Spearman | Grad-CAM++ top-10 % | IG Spearman | IG top-10 % | s |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("v0", v0, test, probes, references, 0.0, 1.0), flush=True)
    for criterion in CRITERIA:
        start = time.perf_counter()
        result = ll.compress(v0, fit, budget=args.budget, max_drop=100.0, criterion=criterion, validation=validation,
                             epochs_per_step=SCALE.epochs_per_step, lr=1e-3, seed=args.seed)
        seconds = time.perf_counter() - start
        print(row(criterion, result.model, test, probes, references, seconds, result.share("macs")), flush=True)


SCALE = FULL

if __name__ == "__main__":
    main()
