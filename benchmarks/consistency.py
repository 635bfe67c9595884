"""Consistency over five successive versions, with and without explanation replay (issue 13).

    PYTHONPATH=src python benchmarks/consistency.py [--seeds 0 1] [--weight 3] [--epochs 3] [--sweep 0,3]
    PYTHONPATH=src python benchmarks/consistency.py --smoke    # tiny sizes: does every row run?

Per seed, on the hard lesions set: v0 is SmallResNet(width=32) trained as the demo trains it.
Five versions follow, each made twice, once fine-tuned with replay of v0's explanations and
once without: prune 30 %, prune 50 %, prune 70 % of v0's channels (each pruned further from
the previous version of its own chain, then fine-tuned), int8 of the 70 % model (ONNX
Runtime, explained through its differentiable twin), and a retrain from scratch with a new
seed on freshly drawn images. Every version is compared with v0 on the held-out half of a
probe set drawn apart from the training and test images (the store's `held_out_split`:
replay trains on the other half only), lesion images and lesion-free images apart:
Grad-CAM++ and Integrated Gradients, Spearman and top-10 % overlap, the Grad-CAM++ pointing
game, and test accuracy. The script also scores v0's pointing game per method and sweeps λ
on one step (prune 50 % of v0). Prints Markdown tables; the smoke run's figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

# benchmarks/ is on sys.path when a benchmark runs as a script
from lesions_hard import Scale as Sizes

import leanlens as ll
from leanlens.data import Dataset, lesions
from leanlens.metrics import pointing_game, spearman, top_k_overlap
from leanlens.models import SmallResNet
from leanlens.store import held_out_split

COMPARED = ("gradcam++", "ig")  # the methods every version is compared with v0 on
POINTED = ("gradcam", "gradcam++", "ig", "occlusion")  # v0's localization, per method
TOLERANCE = 4  # the pointing game's 15 px on 224 px images, scaled to 64 px (as the demo scores it)
LESION = 1
PRUNED = (0.3, 0.5, 0.7)  # share of v0's channels removed, cumulative along the chain
FRESH = 7919  # offset of the seed that draws the retrain's images: none of them is in v0's set
PROBED = 104729  # offset of the seed that draws the probe images: neither training nor test images


@dataclass(frozen=True)
class Scale(Sizes):
    """The hard-lesions calibration's sizes, and what this benchmark explains."""

    probes: int  # half replayed, half held out
    ig_steps: int


# 500 replay probes and 3 epochs: what took the held-out lesion maps past 0.95 (RESULTS.md).
FULL = Scale(images=4000, width=32, train_epochs=2.0, finetune_epochs=3.0, probes=1000, ig_steps=32)
SMOKE = Scale(images=160, width=8, train_epochs=1.0, finetune_epochs=0.5, probes=16, ig_steps=4)


@dataclass(frozen=True)
class Setting:
    """One seed's data: training and test sets, the probe halves, and images for the retrain."""

    train: Dataset
    test: Dataset
    replayed: Dataset
    held: Dataset
    fresh: Dataset


@dataclass(frozen=True)
class Recipe:
    """How each version is trained; `weight` is λ (0: no replay)."""

    scale: Scale
    method: str
    metric: str  # of the replay distance: "spearman" or "pearson"
    weight: float
    seed: int


def log(message: str, started: float = time.perf_counter()) -> None:
    """Progress on stderr, so that stdout stays the Markdown tables."""
    print(f"[{time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr, flush=True)


def make_setting(scale: Scale, seed: int) -> Setting:
    train, test = lesions(scale.images, seed=seed, difficulty="hard").split(0.25, seed=seed)
    # Probes of their own, so that replaying half of them leaves the test accuracy untouched.
    probe = lesions(scale.probes, seed=seed + PROBED, difficulty="hard")
    held = held_out_split(probe.y, seed=seed)
    fresh = lesions(len(train), seed=seed + FRESH, difficulty="hard")
    return Setting(train, test, probe.subset(~held), probe.subset(held), fresh)


def options(method: str, scale: Scale) -> dict:
    return {"steps": scale.ig_steps} if method == "ig" else {}


def explain(model, data: Dataset, method: str, scale: Scale) -> np.ndarray:
    """`method`'s maps of each image for its true class, as the store's probes are explained."""
    return ll.explain(model, data.x, method, target=data.y, **options(method, scale)).values


# --- the versions ---------------------------------------------------------------------------------


def train_v0(setting: Setting, scale: Scale, seed: int):
    torch.manual_seed(seed)
    return ll.finetune(SmallResNet(width=scale.width), setting.train, epochs=scale.train_epochs, lr=3e-3, seed=seed)


def replay_of(v0, setting: Setting, recipe: Recipe) -> ll.Replay | None:
    """v0's explanations of the replay probes, or None when λ is 0 (plain fine-tuning)."""
    if recipe.weight == 0:
        return None
    memory = ll.explain(v0, setting.replayed.x, recipe.method, target=setting.replayed.y,
                        **options(recipe.method, recipe.scale))
    return ll.Replay.from_explanation(memory, setting.replayed.x, weight=recipe.weight, metric=recipe.metric)


def chain(v0, setting: Setting, recipe: Recipe) -> dict[str, ll.Model]:
    """The five successive versions of one chain, by name."""
    replay = replay_of(v0, setting, recipe)
    versions, current, removed = {}, v0, 0.0
    for total in PRUNED:
        step = 1 - (1 - total) / (1 - removed)  # of the current model's channels, to reach `total` of v0's
        # No rounding to 8: along a chain it compounds (30 % would already halve the stem's 32 channels).
        pruned = ll.prune(current, setting.train, ratio=step, criterion="taylor", round_to=None)
        current = ll.finetune(pruned, setting.train, epochs=recipe.scale.finetune_epochs, lr=1e-3,
                              seed=recipe.seed + 1, replay=replay)
        versions[f"prune {total:.0%}"], removed = current, total
        log(f"  prune {total:.0%} (λ = {recipe.weight:g}) done")
    versions["int8 of prune 70%"] = ll.quantize(current, setting.train, scheme="int8")
    torch.manual_seed(recipe.seed + 1)
    versions["retrain, new seed, fresh images"] = ll.finetune(
        SmallResNet(width=recipe.scale.width), setting.fresh, epochs=recipe.scale.train_epochs, lr=3e-3,
        seed=recipe.seed + 1, replay=replay)
    log(f"  retrain (λ = {recipe.weight:g}) done")
    return versions


# --- what is measured -----------------------------------------------------------------------------


def accuracy(model, data: Dataset) -> float:
    return float((model.predict(data.x).argmax(1) == data.y).mean())


def compare(model, setting: Setting, reference: dict[str, np.ndarray], scale: Scale) -> dict[str, float]:
    """Accuracy, pointing game and similarity to v0 on the held-out probes, lesion and clear apart."""
    held = setting.held
    lesion = held.y == LESION
    figures = {"accuracy": accuracy(model, setting.test)}
    for method in COMPARED:
        maps = explain(model, held, method, scale)
        rho, top = spearman(maps, reference[method]), top_k_overlap(maps, reference[method], 0.1)
        for part, rows in (("lesion", lesion), ("clear", ~lesion)):
            figures[f"{method} spearman {part}"] = float(rho[rows].mean())
            figures[f"{method} top10 {part}"] = float(top[rows].mean())
        if method == "gradcam++":
            figures["pointing"] = float(pointing_game(maps[lesion], held.masks[lesion], tolerance=TOLERANCE).mean())
    return figures


def v0_pointing(v0, test: Dataset, scale: Scale) -> dict[str, float]:
    """v0's pointing-game hit rate per method on every test image with a lesion."""
    sick = test.subset(test.y == LESION)
    return {m: float(pointing_game(explain(v0, sick, m, scale), sick.masks, tolerance=TOLERANCE).mean())
            for m in POINTED}


def sweep(v0, setting: Setting, recipe: Recipe, weights: list[float], reference) -> dict[float, dict]:
    """One step (prune 50 % of v0, fine-tune as the chain does) per λ: what λ buys on the held-out probes."""
    pruned = ll.prune(v0, setting.train, ratio=0.5, criterion="taylor", round_to=None)
    results = {}
    for weight in weights:
        replay = replay_of(v0, setting, replace(recipe, weight=weight))
        tuned = ll.finetune(pruned, setting.train, epochs=recipe.scale.finetune_epochs, lr=1e-3,
                            seed=recipe.seed + 1, replay=replay)
        results[weight] = compare(tuned, setting, reference, recipe.scale)
        log(f"  sweep λ = {weight:g} done")
    return results


# --- one seed, then the tables --------------------------------------------------------------------


def run_seed(recipe: Recipe, weights: list[float]) -> dict:
    scale, seed = recipe.scale, recipe.seed
    setting = make_setting(scale, seed)
    v0 = train_v0(setting, scale, seed)
    log(f"seed {seed}: v0 trained, {accuracy(v0, setting.test):.3f} on test")
    reference = {m: explain(v0, setting.held, m, scale) for m in COMPARED}
    versions = {}
    for replayed in (False, True):
        for name, model in chain(v0, setting, recipe if replayed else replace(recipe, weight=0.0)).items():
            versions[name, replayed] = compare(model, setting, reference, scale)
    return {"v0": compare(v0, setting, reference, scale), "pointing": v0_pointing(v0, setting.test, scale),
            "versions": versions, "sweep": sweep(v0, setting, recipe, weights, reference),
            "model": v0, "test": setting.test}


def cell(values: list[float], digits: int = 3, worst: bool = False) -> str:
    """The mean over seeds; with `worst`, also the lowest seed's figure."""
    mean = f"{np.mean(values):.{digits}f}"
    return f"{mean} ({min(values):.{digits}f})" if worst and len(values) > 1 else mean


def versions_table(runs: list[dict]) -> str:
    """Per version and chain: accuracy and similarity to v0, means over seeds."""
    v0_accuracy = [run["v0"]["accuracy"] for run in runs]
    lines = [("| version | replay | accuracy % | Δ points | Grad-CAM++ ρ, lesion (worst seed) | ρ, lesion-free | "
              "top-10 %, lesion | IG ρ, lesion | IG ρ, lesion-free | IG top-10 %, lesion | pointing % |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("v0", "", [run["v0"] for run in runs])]
    for name, replayed in runs[0]["versions"]:
        rows.append((name, "yes" if replayed else "no", [run["versions"][name, replayed] for run in runs]))
    for name, replayed, figures in rows:
        def column(key, figures=figures):
            return [f[key] for f in figures]
        drop = [100 * (f["accuracy"] - a) for f, a in zip(figures, v0_accuracy)]
        lines.append(" | ".join([
            f"| {name}", replayed, cell([100 * a for a in column("accuracy")], 1), cell(drop, 1, worst=True),
            cell(column("gradcam++ spearman lesion"), worst=True), cell(column("gradcam++ spearman clear")),
            cell(column("gradcam++ top10 lesion")), cell(column("ig spearman lesion")),
            cell(column("ig spearman clear")), cell(column("ig top10 lesion")),
            cell([100 * p for p in column("pointing")], 1)]) + " |")
    return "\n".join(lines)


def pointing_table(runs: list[dict]) -> str:
    """v0's pointing game per method, and Grad-CAM++ against Grad-CAM in points and relative %."""
    hits = {m: [100 * run["pointing"][m] for run in runs] for m in POINTED}
    lines = ["| method | pointing game % (mean over seeds) | per seed |", "|---|---:|---|"]
    lines += [f"| {m} | {np.mean(h):.1f} | {', '.join(f'{x:.1f}' for x in h)} |" for m, h in hits.items()]
    cam, plus = np.mean(hits["gradcam"]), np.mean(hits["gradcam++"])
    relative = f"{100 * (plus - cam) / cam:+.1f} %" if cam > 0 else "n/a (Grad-CAM never hits)"
    lines.append(f"\nGrad-CAM++ − Grad-CAM: {plus - cam:+.1f} points, {relative} relative (the seeds claim +17 %).")
    return "\n".join(lines)


def sweep_table(runs: list[dict]) -> str:
    """λ against accuracy and held-out similarity on one step (prune 50 % of v0, fine-tune)."""
    lines = ["| λ | accuracy % | Grad-CAM++ ρ, lesion (worst seed) | ρ, lesion-free | IG ρ, lesion |",
             "|---:|---:|---:|---:|---:|"]
    for weight in runs[0]["sweep"]:
        figures = [run["sweep"][weight] for run in runs]
        lines.append(f"| {weight:g} | {cell([100 * f['accuracy'] for f in figures], 1)} | "
                     f"{cell([f['gradcam++ spearman lesion'] for f in figures], worst=True)} | "
                     f"{cell([f['gradcam++ spearman clear'] for f in figures])} | "
                     f"{cell([f['ig spearman lesion'] for f in figures])} |")
    return "\n".join(lines)


def cost_of_explaining(v0, test: Dataset, smoke: bool) -> str:
    """The cost-of-explaining table of benchmarks/explaining_cost.py, for this run's v0."""
    from explaining_cost import (  # benchmarks/ is on sys.path when this file runs as a script
        SMOKE,
        cost_table,
    )

    if not smoke:
        return cost_table(v0, test)
    return cost_table(v0, test, batch_sizes=SMOKE["batch_sizes"], options=SMOKE["options"],
                      repeats=SMOKE["repeats"], budget_s=SMOKE["budget_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one full run per seed (~16 min each on 2 cores)")
    parser.add_argument("--method", default="gradcam++", help="the replayed attribution method")
    parser.add_argument("--metric", default="spearman", help="the replay distance: spearman (soft ranks) or pearson")
    parser.add_argument("--weight", type=float, default=3.0, help="λ of the replay chain")
    parser.add_argument("--sweep", default="0,3", help="λ values of the sweep, comma-separated")
    parser.add_argument("--epochs", type=float, help="fine-tune epochs after each prune, with replay and without "
                        f"(default {FULL.finetune_epochs:g})")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that every row runs")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost-of-explaining table")
    args = parser.parse_args()
    scale = SMOKE if args.smoke else FULL
    if args.epochs is not None:
        scale = replace(scale, finetune_epochs=args.epochs)
    weights = [float(w) for w in args.sweep.split(",")]
    start = time.perf_counter()
    runs = [run_seed(Recipe(scale, args.method, args.metric, args.weight, seed), weights) for seed in args.seeds]
    print(f"lesions (hard), {scale.images} images (a quarter for testing), SmallResNet(width={scale.width}); "
          f"replay of {args.method!r} ({args.metric}) at λ = {args.weight:g} on {scale.probes // 2} probes, similarity on the "
          f"{scale.probes // 2} held-out ones; {scale.finetune_epochs:g} fine-tune epochs after each prune; "
          f"IG at {scale.ig_steps} steps; seeds {args.seeds}"
          + (" - SMOKE RUN, figures mean nothing" if args.smoke else "") + "\n")
    print(versions_table(runs), "\n")
    print(pointing_table(runs), "\n")
    print(sweep_table(runs), "\n")
    if not args.no_cost:
        print(cost_of_explaining(runs[0]["model"], runs[0]["test"], args.smoke), "\n")
    print(f"{time.perf_counter() - start:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
