"""Pruning to a budget in steps: prune a little, recover by fine-tuning, measure, repeat.

Each step narrows every prunable layer group by the smallest uniform share that reaches the
step's share of the budget (a geometric schedule from the original cost to the budget),
with the criterion recomputed on the current weights, then fine-tunes to recover. Accuracy
is measured on held-out data that neither scoring nor fine-tuning sees, so the guard means
what it says. How a step picks its widths (uniform, a user's hook, or latency-aware from a
table measured on the target device) is `step_widths`' business.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.compression import surgery
from leanlens.compression.allocation import check_table
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
from leanlens.compression.latency import (
    LatencyTable,
    latency_table,
    measured_ms,
    predicted_ms,
)
from leanlens.compression.prune import Pruning
from leanlens.compression.step_widths import (
    LATENCY,
    Allocation,
    check_allocation,
    latency_aware_widths,
    trial_costs,
    uniform_widths,
)
from leanlens.data import as_dataset
from leanlens.errors import BadOption
from leanlens.explain.options import positive_int, real
from leanlens.models.torch_model import TorchModel

# Without `steps`, each step keeps at least this share of the cost left: gentle enough that
# one recovery fine-tune brings accuracy back on small CNNs.
STEP_SHARE = 0.6
SCORING_BATCHES = 8  # batches of 64 the criterion reads each step: enough for stable Taylor scores


@dataclass(frozen=True)
class Step:
    """One point of the trajectory (step 0 is the original model)."""

    step: int
    # share of each layer's channels this step removed (the bisected strength); with the
    # latency-aware allocation, the share of all prunable channels it removed
    ratio: float
    widths: Mapping[str, int]  # output channels of each prunable layer group after the step
    params: int
    macs: int
    accuracy: float  # on the held-out data, 0..1
    similarity: float | None  # mean Grad-CAM++ Spearman to the original on held-out probes; None: no CAM layer
    latency_ms: float  # measured: median of 7 no-grad passes of a fixed held-out batch (`latency.measured_ms`)
    predicted_ms: float | None = None  # the latency table's figure, what a latency budget limits; None: no table


@dataclass(frozen=True)
class CompressionResult:
    model: TorchModel
    trajectory: tuple[Step, ...]
    budget: Budget

    def share(self, figure: str, step: int = -1) -> float:
        """`figure` ("params", "macs", "latency_ms" or "predicted_ms") at `step` as a share of the original's."""
        return getattr(self.trajectory[step], figure) / getattr(self.trajectory[0], figure)

    @property
    def accuracy_drop(self) -> float:
        """Accuracy lost from the original to the result, in points."""
        return _drop(self.trajectory[0], self.trajectory[-1])


def compress(model, data, *, budget, max_drop: float = 1.0, criterion: str = "taylor", steps: int | None = None,
             epochs_per_step: float = 2.0, lr: float = 1e-3, batch_size: int = 32, distill: bool = False,
             temperature: float = 3.0, protect=(), round_to: int | None = 8, validation=None,
             validation_fraction: float = 0.2, allocation: Allocation | str | None = None,
             table: LatencyTable | None = None, latency_batch: int = 32, probes: int = 16, patience: int = 2,
             seed: int = 0, on_step: Callable[[Step, int], None] | None = None) -> CompressionResult:
    """A copy of `model` pruned in steps to `budget`, accuracy kept within `max_drop` points.

    Parameters
    ----------
    budget : fractions of the original to reach: "macs=0.3", {"params": 0.5}, "latency=0.4" or
        Budget(macs=0.3). Latency is what the latency table predicts (see `table`).
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
    allocation : None: every layer loses the same share each step. "latency": each group's width
        from the latency-aware allocator (`allocation.allocate`), reading the table and the
        criterion's scores, so the channels that cost time go first. A callable
        `allocation(module, strength) -> {layer name: share to remove}` replaces the uniform
        share (layers it leaves out get `strength`).
    table : the latency table of the model at `latency_batch` samples, for latency budgets and
        allocation="latency"; None measures it where the model's parameters are (cached on disk).
    latency_batch : samples in the batch the table and each step's measured latency are timed on.
    on_step : called as `on_step(step, steps)` after each step, for progress.

    Raises BadOption, with the best point reached, when the budget or the guard cannot be met.
    The input model is never changed.
    """
    original = torch_model(model, "compress")
    budget = as_budget(budget)
    check_allocation(allocation)
    latency_batch = positive_int("latency_batch", latency_batch, "use a positive int such as 32")
    max_drop = real("max_drop", max_drop, "use accuracy points >= 0, e.g. max_drop=1.0", low=0.0)
    epochs_per_step = real("epochs_per_step", epochs_per_step, "use a positive number such as 2.0", low=0.0, strict=True)
    patience, probes = _count("patience", patience), _count("probes", probes)
    steps = _step_count(budget) if steps is None else positive_int("steps", steps, "use a positive int such as 3")
    train, held = _holdout(data, validation, validation_fraction, seed)
    plan = Pruning(original.module, train, criterion, round_to, protect, "compress")
    check_labels(plan.module, held)
    batch = _timing_batch(held, latency_batch, plan.example.device)
    table = _table(plan, batch, table, needed=budget.latency is not None or allocation == LATENCY)
    costs = countable(budget, table)
    start = {key: cost(plan.module, plan.example) for key, cost in costs.items()}
    _refuse_unreachable(plan, costs, start, budget)
    recover = functools.partial(finetune, data=train, epochs=epochs_per_step, lr=lr, batch_size=batch_size,
                                teacher=original.module if distill else None, temperature=temperature)
    drift = ExplanationDrift.of(original, held, probes)
    measure = functools.partial(_measure, plan=plan, held=held, drift=drift, batch=batch, table=table)
    trajectory = [measure(0, 0.0)]
    within = lambda point: _drop(trajectory[0], point) <= max_drop
    for k in range(1, steps + 1):
        step_goal = {key: start[key] * budget.limits[key] ** (k / steps) for key in costs}
        if all(cost(plan.module, plan.example) <= step_goal[key] for key, cost in costs.items()):
            continue  # rounding in an earlier step already went this far
        strength, keep, scorer = _step_widths(plan, costs, step_goal, allocation, table, seed + k)
        plan.cut(keep, batches=SCORING_BATCHES, batch_size=64, seed=seed + k, scorer=scorer)
        point = _recover(plan, recover, functools.partial(measure, k, strength),
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


def _step_widths(plan: Pruning, costs, goal, allocation, table: LatencyTable | None, seed: int):
    """(strength, widths, the scorer to cut with) for one step; None: `cut` scores the channels itself."""
    if allocation == LATENCY:
        scorer = plan.scorer(batches=SCORING_BATCHES, batch_size=64, seed=seed)
        return (*latency_aware_widths(plan, costs, goal, table, scorer), scorer)
    return (*uniform_widths(plan, costs, goal, allocation), None)


def _timing_batch(held, size: int, device: torch.device) -> torch.Tensor:
    """The batch every latency is timed on: the first `size` held-out samples, repeated if fewer."""
    x = held.x[np.arange(size) % len(held.x)]
    return torch.as_tensor(x, dtype=torch.float32, device=device)


def _table(plan: Pruning, batch: torch.Tensor, table: LatencyTable | None, *, needed: bool) -> LatencyTable | None:
    """The given table, checked against the model, or one measured (or read from the cache) when needed."""
    if table is not None:
        if not isinstance(table, LatencyTable):
            raise BadOption(f"table is a {type(table).__name__}", "pass table=latency_table(model, batch), or None")
        check_table(plan.module, plan.example, table)
        return table
    return latency_table(plan.module, batch) if needed else None


def _refuse_unreachable(plan: Pruning, costs, start, budget: Budget) -> None:
    widths = plan.widths()
    floor = trial_costs(plan, surgery.target_widths(widths, dict.fromkeys(widths, 1.0), plan.round_to), costs)
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


def _measure(k: int, strength: float, *, plan: Pruning, held, drift: ExplanationDrift, batch: torch.Tensor,
             table: LatencyTable | None) -> Step:
    model = TorchModel(plan.module)
    accuracy = float((model.predict(held.x).argmax(1) == held.y).mean())
    return Step(k, strength, plan.widths(), int(count_params(plan.module, plan.example)),
                int(count_macs(plan.module, plan.example)), accuracy, drift.similarity(model),
                measured_ms(plan.module, batch), None if table is None else predicted_ms(table, plan.module))


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

