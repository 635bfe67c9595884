"""How one step of `compress` chooses the widths it prunes to.

Uniform (the default): every prunable group loses the same share of its channels, the smallest
share (the step's *strength*, found by bisection) whose widths reach the step's goal on every
cost. An `allocation` callable may reshape that share layer by layer; the strength is still
searched. `allocation="latency"`: the HALP-style allocator (`allocation.allocate`) picks each
group's width from a latency table and the criterion's channel scores, so the channels removed
first are those that free the most time per importance lost.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn

from leanlens.compression import surgery
from leanlens.compression.allocation import allocate
from leanlens.compression.latency import LatencyTable
from leanlens.compression.prune import Pruning
from leanlens.compression.widths import channel_scores
from leanlens.errors import BadOption
from leanlens.explain.options import real

LATENCY = "latency"  # the name that asks for the latency-aware allocator
SEARCH_ROUNDS = 12  # bisection of the step's strength: 2^-12 is finer than one channel of 4096
# The allocator's cost model counts conv and linear layers only; torch-pruning's count also has
# norms and pooling. When its widths miss the goal by that little, ask it again a little tighter.
TIGHTENINGS = 6
Allocation = Callable[[nn.Module, float], Mapping[str, float]]


def check_allocation(allocation) -> None:
    """None, "latency" or a callable: refused in one line before any work otherwise."""
    if allocation is None or allocation == LATENCY or callable(allocation):
        return
    raise BadOption(f"allocation={allocation!r}",
                    "use allocation='latency', a callable (module, strength) -> {layer: share}, or None (uniform)")


def trial_costs(plan: Pruning, keep: Mapping[str, int], costs) -> dict[str, float]:
    """The costs of the plan's module cut to widths `keep` (which channels go does not matter)."""
    trial = copy.deepcopy(plan.module)
    graph = surgery.dependency_graph(trial, plan.example)
    kept = [trial.get_submodule(name) for name in plan.kept_names]
    surgery.remove_channels(trial, graph, lambda group: torch.arange(len(group[0].idxs), dtype=torch.float32), keep, kept)
    return {key: cost(trial, plan.example) for key, cost in costs.items()}


def uniform_widths(plan: Pruning, costs, goal, allocation: Allocation | None) -> tuple[float, dict[str, int]]:
    """The smallest strength whose widths meet `goal` on every cost, and those widths, found by
    bisection (costs only fall as widths shrink, and widths only shrink as the strength grows)."""
    low, high = 0.0, 1.0
    best = _widths_at(plan, high, allocation)
    for _ in range(SEARCH_ROUNDS):
        middle = (low + high) / 2
        keep = _widths_at(plan, middle, allocation)
        figures = trial_costs(plan, keep, costs)
        if all(figures[key] <= goal[key] for key in costs):
            high, best = middle, keep
        else:
            low = middle
    return high, best


def latency_aware_widths(plan: Pruning, costs, goal, table: LatencyTable, importance) -> tuple[float, dict[str, int]]:
    """Widths from the latency-aware allocator that meet `goal` on every cost, and the share of
    the prunable channels they remove. `importance` scores the channels of the module as it is."""
    scores = channel_scores(plan.module, plan.example, importance)
    now = {key: cost(plan.module, plan.example) for key, cost in costs.items()}
    wanted = {key: min(1.0, goal[key] / now[key]) for key in costs}
    for _ in range(TIGHTENINGS):
        keep = _allocated(plan, wanted, scores, table)
        figures = trial_costs(plan, keep, costs)
        missed = {key: goal[key] / figures[key] for key in costs if figures[key] > goal[key]}
        if not missed:
            return removed_share(plan.widths(), keep), keep
        wanted.update({key: wanted[key] * share for key, share in missed.items()})
    raise BadOption(f"the latency-aware allocation did not reach this step's goal in {TIGHTENINGS} tries",
                    "use allocation=None (uniform), or a smaller round_to")


def _allocated(plan: Pruning, wanted: Mapping[str, float], scores, table: LatencyTable) -> dict[str, int]:
    """Each group's width under every limit at once: the narrowest any one limit asks for."""
    unscored = [name for name in plan.widths() if name not in scores]  # kept whole, as `remove_channels` does
    protect = [*plan.kept_names, *unscored]
    chosen = [allocate(plan.module, plan.example, {key: share}, scores, table, round_to=plan.round_to,
                       protect=protect) for key, share in wanted.items()]
    return {group: min(widths[group] for widths in chosen) for group in chosen[0]}


def _widths_at(plan: Pruning, strength: float, allocation: Allocation | None) -> dict[str, int]:
    widths = plan.widths()
    ratios = dict.fromkeys(widths, strength)
    if allocation is not None:
        ratios.update(_checked_allocation(allocation(plan.module, strength), widths))
    return surgery.target_widths(widths, ratios, plan.round_to)


def _checked_allocation(ratios, widths: Mapping[str, int]) -> dict[str, float]:
    if not isinstance(ratios, Mapping):
        raise BadOption(f"allocation returned a {type(ratios).__name__}", "return {layer name: share to remove}")
    for name, share in ratios.items():
        if name not in widths:
            raise BadOption(f"allocation names {name!r}, which is not a prunable layer",
                            f"use names among {sorted(widths)[:4]}")
        real(f"allocation[{name!r}]", share, "use a share between 0 and 1", low=0.0)
    return {name: min(1.0, float(share)) for name, share in ratios.items()}


def removed_share(before: Mapping[str, int], after: Mapping[str, int]) -> float:
    """The share of the prunable channels in `before` that `after` no longer has."""
    return 1.0 - sum(after.get(name, width) for name, width in before.items()) / sum(before.values())
