"""Replay fine-tuning after pruning: what a λ sweep buys in explanation similarity, and what it costs.

    .venv/bin/python benchmarks/replay.py [--smoke] [--dataset lesions] [--weights 0,0.3,1,3]

v0 is trained, pruned by `--ratio`, then fine-tuned from the same seed once per λ (λ = 0 is
plain fine-tuning). Replay sees only the replay half of the probes; similarity to v0
(Spearman of Grad-CAM++ maps) is measured on the held-out half, images with a lesion
(label 1) and without one apart. Step cost is the fine-tune's wall time over plain
fine-tuning's: short fine-tunes (same steps, same batches) timed in turns, so drift in the
machine's speed touches them alike. Prints Markdown tables; no test reads them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import leanlens as ll
from leanlens.audit.timing import interleaved
from leanlens.compression.replay import Replay
from leanlens.metrics.similarity import spearman
from leanlens.models import SmallResNet

FULL = {"n": 4000, "width": 32, "train_epochs": 2.0, "finetune_epochs": 1.0, "probes": 128}
SMOKE = {"n": 800, "width": 8, "train_epochs": 3.0, "finetune_epochs": 0.5, "probes": 32}
EVALUATED = "gradcam++"
COSTED = ("gradcam", "gradcam++", "input_x_gradient")  # replay methods whose step cost is measured
COST_STEPS = 4


def accuracy(model, data) -> float:
    return float((model.predict(data.x).argmax(1) == data.y).mean())


def similarity(model, held, reference) -> dict[str, float]:
    """Mean Spearman to v0's maps on held-out probes, with and without a lesion."""
    scores = spearman(ll.explain(model, held.x, EVALUATED, target=held.y).values, reference)
    return {"lesion": float(scores[held.y == 1].mean()), "clear": float(scores[held.y == 0].mean())}


def probe_halves(test, count: int, seed: int):
    """Class-balanced probes split in two: a replay half and a held-out half."""
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(test.y == c))[: count // 2] for c in (0, 1)])
    chosen = rng.permutation(chosen)
    return test.subset(np.sort(chosen[: count // 2])), test.subset(np.sort(chosen[count // 2 :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--dataset", default="lesions", help="a built-in image set with labels 0 (clear) and 1 (lesion)")
    parser.add_argument("--weights", default="0,0.3,1,3", help="the λ sweep, comma-separated (0 is plain fine-tuning)")
    parser.add_argument("--method", default="gradcam", help="the replayed attribution method")
    parser.add_argument("--ratio", type=float, default=0.5, help="pruning ratio")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = SMOKE if args.smoke else FULL
    torch.manual_seed(args.seed)
    train, test = ll.data.load(args.dataset, n=config["n"], seed=args.seed).split(0.25, seed=args.seed)
    replayed, held = probe_halves(test, config["probes"], args.seed)

    v0 = ll.finetune(SmallResNet(width=config["width"]), train, epochs=config["train_epochs"], lr=3e-3, seed=args.seed)
    reference = ll.explain(v0, held.x, EVALUATED, target=held.y).values
    memory = ll.explain(v0, replayed.x, args.method, target=replayed.y)
    pruned = ll.prune(v0, train, ratio=args.ratio, criterion="taylor", round_to=8)

    rows = [("v0", accuracy(v0, test), similarity(v0, held, reference), "")]
    rows.append((f"pruned {args.ratio:.0%}, no fine-tune", accuracy(pruned, test), similarity(pruned, held, reference), ""))
    for weight in (float(w) for w in args.weights.split(",")):
        replay = Replay.from_explanation(memory, replayed.x, weight=weight)
        tuned = ll.finetune(pruned, train, epochs=config["finetune_epochs"], lr=1e-3, seed=args.seed + 1, replay=replay)
        rows.append((f"fine-tune, λ = {weight:g}", accuracy(tuned, test), similarity(tuned, held, reference),
                     f"{replay.distance(tuned):.3f}"))
    print_table(args, config, len(replayed), len(held), rows)
    print_costs(step_costs(v0, pruned, train, replayed))


def step_costs(v0, pruned, train, replayed) -> dict[str, float]:
    """Time of a replay step over a plain one, per replay method (λ = 1; λ only scales the term)."""
    batch = 32
    few = train.subset(np.arange(COST_STEPS * batch))  # one pass = COST_STEPS steps

    def tune(replay):
        return lambda: ll.finetune(pruned, few, epochs=1.0, batch_size=batch, replay=replay)

    contenders = {"plain": tune(None)}
    for method in COSTED:
        memory = ll.explain(v0, replayed.x, method, target=replayed.y)
        contenders[method] = tune(Replay.from_explanation(memory, replayed.x))
    timings = interleaved(contenders, repeats=5, warmup=1, burst=1)
    return {name: t.median_ms / timings["plain"].median_ms for name, t in timings.items() if name != "plain"}


def print_table(args, config, n_replayed: int, n_held: int, rows) -> None:
    print(f"dataset {args.dataset!r}, n={config['n']}, SmallResNet width {config['width']}, replay {args.method!r} "
          f"on {n_replayed} probes, {EVALUATED} Spearman to v0 on {n_held} held-out probes; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"| version | accuracy | {EVALUATED} Spearman, lesion | same, lesion-free | replay distance |")
    print("|---|---|---|---|---|")
    for name, acc, sim, distance in rows:
        print(f"| {name} | {acc:.3f} | {sim['lesion']:.3f} | {sim['clear']:.3f} | {distance} |")


def print_costs(costs: dict[str, float]) -> None:
    print(f"\nstep cost, replay of 16 probes beside a task batch of 32, over a plain step ({COST_STEPS}-step fine-tunes "
          "timed in turns, median of 5):\n")
    print("| replay method | cost vs plain step |")
    print("|---|---|")
    for method, ratio in costs.items():
        print(f"| {method} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
