"""Pruning to a budget in steps: prune a little, recover by fine-tuning, measure, repeat.

Each step narrows every prunable layer group by the smallest uniform share that reaches the
step's share of the budget (a geometric schedule from the original cost to the budget),
with the criterion recomputed on the current weights, then fine-tunes to recover. Accuracy
is measured on held-out data that neither scoring nor fine-tuning sees, so the guard means
what it says. An `allocation` hook may replace the uniform share by per-layer shares (e.g.
from a latency table); the step's strength is still searched to meet the budget.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from leanlens.compression import surgery
from leanlens.compression.budget import (
    Budget,
    as_budget,
    count_macs,
    count_params,
    countable,
)
from leanlens.compression.checks import check_labels, torch_model
from leanlens.compression.drift import ExplanationDrift
from leanlens.compression.finetune import finetune
from leanlens.compression.prune import Pruning
from leanlens.data import as_dataset
from leanlens.errors import BadOption
from leanlens.explain.options import positive_int, real
from leanlens.models.torch_model import TorchModel

# Without `steps`, each step keeps at least this share of the cost left: gentle enough that
# one recovery fine-tune brings accuracy back on small CNNs.
STEP_SHARE = 0.6
SCORING_BATCHES = 8  # batches of 64 the criterion reads each step: enough for stable Taylor scores
SEARCH_ROUNDS = 12  # bisection of the step's strength: 2^-12 is finer than one channel of 4096
Allocation = Callable[[nn.Module, float], Mapping[str, float]]


@dataclass(frozen=True)
class Step:
    """One point of the trajectory (step 0 is the original model)."""

    step: int
    ratio: float  # share of each layer's channels this step removed (the bisected strength)
    widths: Mapping[str, int]  # output channels of each prunable layer group after the step
    params: int
    macs: int
    accuracy: float  # on the held-out data, 0..1
    similarity: float | None  # mean Grad-CAM++ Spearman to the original on held-out probes; None: no CAM layer


@dataclass(frozen=True)
class CompressionResult:
    model: TorchModel
    trajectory: tuple[Step, ...]
    budget: Budget

    def share(self, figure: str, step: int = -1) -> float:
        """`figure` ("params" or "macs") at `step` as a share of the original's."""
        return getattr(self.trajectory[step], figure) / getattr(self.trajectory[0], figure)

    @property
    def accuracy_drop(self) -> float:
        """Accuracy lost from the original to the result, in points."""
        return _drop(self.trajectory[0], self.trajectory[-1])


def compress(model, data, *, budget, max_drop: float = 1.0, criterion: str = "taylor", steps: int | None = None,
             epochs_per_step: float = 2.0, lr: float = 1e-3, batch_size: int = 32, distill: bool = False,
             temperature: float = 3.0, protect=(), round_to: int | None = 8, validation=None,
             validation_fraction: float = 0.2, allocation: Allocation | None = None, probes: int = 16,
             patience: int = 2, seed: int = 0, on_step: Callable[[Step, int], None] | None = None) -> CompressionResult:
    """A copy of `model` pruned in steps to `budget`, accuracy kept within `max_drop` points.

    Parameters
    ----------
    budget : fractions of the original to reach: "macs=0.3", {"params": 0.5} or Budget(macs=0.3).
    max_drop : the largest accuracy loss accepted, in points (1.0 = one percentage point).
    criterion : "taylor", "magnitude", "attribution" or "random", rescored at every step.
    steps : prune-and-recover rounds; None picks enough that each keeps >= 60 % of the cost left.
    epochs_per_step : recovery fine-tuning after each step, passes over the training part.
    patience : further recovery rounds a step may take while its accuracy is below the guard.
    distill : recover by distillation from the original (`temperature` softens both).
    protect : names of layers whose width stays; the layers producing the output always do.
    round_to : widths stay multiples of this (8 suits CPU kernels); None for any width.
    validation : held-out data for the accuracy guard; None holds out `validation_fraction` of `data`
        (if the original was trained on all of `data`, that split flatters it: pass unseen data).
    allocation : `allocation(module, strength) -> {layer name: share to remove}` replaces the
        uniform share (layers it leaves out get `strength`).
    on_step : called as `on_step(step, steps)` after each step, for progress.

    Raises BadOption, with the best point reached, when the budget or the guard cannot be met.
    The input model is never changed.
    """
    original = torch_model(model, "compress")
    budget = as_budget(budget)
    costs = countable(budget)
    max_drop = real("max_drop", max_drop, "use accuracy points >= 0, e.g. max_drop=1.0", low=0.0)
    epochs_per_step = real("epochs_per_step", epochs_per_step, "use a positive number such as 2.0", low=0.0, strict=True)
    patience, probes = _count("patience", patience), _count("probes", probes)
    steps = _step_count(budget) if steps is None else positive_int("steps", steps, "use a positive int such as 3")
    train, held = _holdout(data, validation, validation_fraction, seed)
    plan = Pruning(original.module, train, criterion, round_to, protect, "compress")
    check_labels(plan.module, held)
    start = {key: cost(plan.module, plan.example) for key, cost in costs.items()}
    _refuse_unreachable(plan, costs, start, budget)
    recover = functools.partial(finetune, data=train, epochs=epochs_per_step, lr=lr, batch_size=batch_size,
                                teacher=original.module if distill else None, temperature=temperature)
    drift = ExplanationDrift.of(original, held, probes)
    trajectory = [_measure(0, 0.0, plan, held, drift)]
    within = lambda point: _drop(trajectory[0], point) <= max_drop
    for k in range(1, steps + 1):
        step_goal = {key: start[key] * budget.limits[key] ** (k / steps) for key in costs}
        if all(cost(plan.module, plan.example) <= step_goal[key] for key, cost in costs.items()):
            continue  # rounding in an earlier step already went this far
        strength, keep = _strength_for(plan, costs, step_goal, allocation)
        plan.cut(keep, batches=SCORING_BATCHES, batch_size=64, seed=seed + k)
        point = _recover(plan, recover, functools.partial(_measure, k, strength, plan, held, drift),
                         within=within, rounds=1 + patience, seed=seed + 100 * k)
        trajectory.append(point)
        if on_step is not None:
            on_step(point, steps)
        if not within(point):
            raise _guard_failure(trajectory, budget, max_drop, steps)
    _refuse_short(plan, costs, start, budget)
    return CompressionResult(TorchModel(plan.module), tuple(trajectory), budget)


def _drop(original: Step, point: Step) -> float:
    """Accuracy lost from `original` to `point`, in points."""
    return 100.0 * (original.accuracy - point.accuracy)


def _recover(plan: Pruning, recover, measure, *, within, rounds: int, seed: int) -> Step:
    """Fine-tune the plan's module until its held-out accuracy is `within` the guard, for at
    most `rounds` rounds; the plan keeps the best round's module."""
    best, best_module = None, None
    for round_ in range(rounds):
        plan.adopt(recover(TorchModel(plan.module), seed=seed + round_).module)
        point = measure()
        if best is None or point.accuracy > best.accuracy:
            best, best_module = point, copy.deepcopy(plan.module)
        if within(point):
            break
    plan.adopt(best_module)
    return best


def _holdout(data, validation, fraction: float, seed: int):
    data = as_dataset(data)
    if validation is not None:
        return data, as_dataset(validation, name="validation")
    return data.split(fraction, seed=seed)


def _count(name: str, value) -> int:
    """A whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadOption(f"{name}={value!r}", f"use a whole number >= 0, e.g. {name}=2")
    return value


def _step_count(budget: Budget) -> int:
    return max(1, math.ceil(math.log(min(budget.limits.values())) / math.log(STEP_SHARE) - 1e-9))


def _trial_costs(plan: Pruning, keep: Mapping[str, int], costs) -> dict[str, float]:
    """The costs of the plan's module cut to widths `keep` (which channels go does not matter)."""
    trial = copy.deepcopy(plan.module)
    graph = surgery.dependency_graph(trial, plan.example)
    kept = [trial.get_submodule(name) for name in plan.kept_names]
    surgery.remove_channels(trial, graph, lambda group: torch.arange(len(group[0].idxs), dtype=torch.float32), keep, kept)
    return {key: cost(trial, plan.example) for key, cost in costs.items()}


def _widths_at(plan: Pruning, strength: float, allocation: Allocation | None) -> dict[str, int]:
    widths = plan.widths()
    ratios = dict.fromkeys(widths, strength)
    if allocation is not None:
        ratios.update(_checked_allocation(allocation(plan.module, strength), widths))
    return surgery.target_widths(widths, ratios, plan.round_to)


def _strength_for(plan: Pruning, costs, goal, allocation) -> tuple[float, dict[str, int]]:
    """The smallest strength whose widths meet `goal` on every cost, found by bisection
    (costs only fall as widths shrink, and widths only shrink as the strength grows)."""
    low, high = 0.0, 1.0
    best = _widths_at(plan, high, allocation)
    for _ in range(SEARCH_ROUNDS):
        middle = (low + high) / 2
        keep = _widths_at(plan, middle, allocation)
        figures = _trial_costs(plan, keep, costs)
        if all(figures[key] <= goal[key] for key in costs):
            high, best = middle, keep
        else:
            low = middle
    return high, best


def _checked_allocation(ratios, widths: Mapping[str, int]) -> dict[str, float]:
    if not isinstance(ratios, Mapping):
        raise BadOption(f"allocation returned a {type(ratios).__name__}", "return {layer name: share to remove}")
    for name, share in ratios.items():
        if name not in widths:
            raise BadOption(f"allocation names {name!r}, which is not a prunable layer",
                            f"use names among {sorted(widths)[:4]}")
        real(f"allocation[{name!r}]", share, "use a share between 0 and 1", low=0.0)
    return {name: min(1.0, float(share)) for name, share in ratios.items()}


def _refuse_unreachable(plan: Pruning, costs, start, budget: Budget) -> None:
    widths = plan.widths()
    floor = _trial_costs(plan, surgery.target_widths(widths, dict.fromkeys(widths, 1.0), plan.round_to), costs)
    for key in costs:
        if floor[key] > start[key] * budget.limits[key]:
            least = floor[key] / start[key]
            raise BadOption(
                f"budget {budget} cannot be met: with every prunable layer at its narrowest "
                f"({plan.round_to or 1} channels) the model keeps {least:.3g} of its {key}",
                f"use {key}={math.ceil(least * 100) / 100:g} or more, a smaller round_to, or protect fewer layers")


def _refuse_short(plan: Pruning, costs, start, budget: Budget) -> None:
    """Only an allocation that spares too many layers stops short of a reachable budget."""
    for key, cost in costs.items():
        reached = cost(plan.module, plan.example) / start[key]
        if reached > budget.limits[key]:
            raise BadOption(f"budget {budget} was not reached: the allocation's widths keep {reached:.3g} of the {key}",
                            "let the allocation narrow more layers, or loosen the budget")


def _measure(k: int, strength: float, plan: Pruning, held, drift: ExplanationDrift) -> Step:
    model = TorchModel(plan.module)
    accuracy = float((model.predict(held.x).argmax(1) == held.y).mean())
    return Step(k, strength, plan.widths(), int(count_params(plan.module, plan.example)),
                int(count_macs(plan.module, plan.example)), accuracy, drift.similarity(model))


def _guard_failure(trajectory: list[Step], budget: Budget, max_drop: float, steps: int) -> BadOption:
    first, last = trajectory[0], trajectory[-1]
    within = trajectory[1:-1]  # every earlier step passed the guard, or the loop would have stopped there
    best = f"the last step within it, step {within[-1].step}, kept {within[-1].macs / first.macs:.2f} of the MACs" \
        if within else "no step stayed within it"
    error = BadOption(
        f"compress cannot meet budget {budget} within max_drop={max_drop:g}: step {last.step} of {steps} "
        f"({last.macs / first.macs:.2f} of the MACs) reached {100 * last.accuracy:.1f}% against "
        f"{100 * first.accuracy:.1f}% originally; {best}",
        "allow a larger max_drop, a looser budget, more steps or epochs_per_step, or distill=True")
    error.trajectory = tuple(trajectory)  # the figures of every step, for whoever wants to look
    return error

