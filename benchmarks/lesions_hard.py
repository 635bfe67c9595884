"""Calibrate the hard lesions setting: what compression costs in accuracy and in localization.

    PYTHONPATH=src python benchmarks/lesions_hard.py [--seeds 0 1] [--difficulty hard]
    PYTHONPATH=src python benchmarks/lesions_hard.py --smoke    # tiny sizes: does every row run?

Per seed: v0 is SmallResNet(width=32) trained as the demo trains it (2 epochs, lr 3e-3) on
3000 images, tested on 1000 others; then Taylor pruning at ratio 0.5 and 0.7 of v0, each
fine-tuned for 1 epoch, and int8 of the 0.5 model. Prints a Markdown table of test accuracy
and the Grad-CAM++ pointing game (peak within 4 px of the lesion, on test images that hold
one, explaining the lesion class). The smoke run's figures mean nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

import leanlens as ll
from leanlens.data import Dataset, lesions
from leanlens.metrics import pointing_game
from leanlens.models import SmallResNet

TOLERANCE = 4  # the pointing game's 15 px on 224 px images, scaled to 64 px (as the demo scores it)
LESION = 1


@dataclass(frozen=True)
class Scale:
    images: int
    width: int
    train_epochs: float
    finetune_epochs: float


FULL = Scale(images=4000, width=32, train_epochs=2.0, finetune_epochs=1.0)
SMOKE = Scale(images=200, width=16, train_epochs=0.2, finetune_epochs=0.1)


def versions(train: Dataset, scale: Scale, seed: int) -> dict[str, ll.models.Model]:
    """v0 and its compressed versions, each made as the demo makes its versions."""
    torch.manual_seed(seed)
    v0 = ll.finetune(SmallResNet(width=scale.width), train, epochs=scale.train_epochs, lr=3e-3, seed=seed)
    made = {"v0": v0}
    for ratio in (0.5, 0.7):
        pruned = ll.prune(v0, train, ratio=ratio, criterion="taylor", round_to=8)
        made[f"prune {ratio:.0%} + 1 epoch"] = ll.finetune(pruned, train, epochs=scale.finetune_epochs, lr=1e-3,
                                                           seed=seed + 1)
    made["int8 of prune 50%"] = ll.quantize(made["prune 50% + 1 epoch"], train, scheme="int8")
    return made


def measure(model, test: Dataset) -> tuple[float, float]:
    """(test accuracy, Grad-CAM++ pointing-game hit rate on the test images with a lesion)."""
    accuracy = float((model.predict(test.x).argmax(axis=1) == test.y).mean())
    sick = test.subset(test.y == LESION)
    maps = ll.explain(model, sick.x, method="gradcam++", target=np.full(len(sick), LESION)).values
    return accuracy, float(pointing_game(maps, sick.masks, tolerance=TOLERANCE).mean())


def table(results: dict[str, list[tuple[float, float]]], seeds: list[int]) -> str:
    """Markdown: per version, accuracy and pointing game per seed and their mean, in %."""
    per_seed = " | ".join(f"seed {s}" for s in seeds)
    lines = [f"| version | accuracy: {per_seed} | mean | pointing game: {per_seed} | mean |",
             "|---|" + "---:|" * (2 * len(seeds) + 2)]
    for name, rows in results.items():
        accuracy, pointing = (np.array(column) * 100 for column in zip(*rows))
        cells = [*(f"{a:.1f}" for a in accuracy), f"**{accuracy.mean():.1f}**",
                 *(f"{p:.1f}" for p in pointing), f"**{pointing.mean():.1f}**"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one full run per seed")
    parser.add_argument("--difficulty", default="hard", help="the lesions setting: hard or easy")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that every row runs")
    args = parser.parse_args()
    scale = SMOKE if args.smoke else FULL
    start = time.perf_counter()
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        # The demo's split: a quarter of the images held out for testing.
        train, test = lesions(scale.images, seed=seed, difficulty=args.difficulty).split(0.25, seed=seed)
        for name, model in versions(train, scale, seed).items():
            results.setdefault(name, []).append(measure(model, test))
    print(f"lesions ({args.difficulty}), {len(train)} train / {len(test)} test images, SmallResNet(width="
          f"{scale.width}), Grad-CAM++ pointing game at {TOLERANCE} px on the {int(test.y.sum())} test lesions"
          + (" - SMOKE RUN, figures mean nothing" if args.smoke else ""))
    print(table(results, args.seeds))
    print(f"\n{time.perf_counter() - start:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
