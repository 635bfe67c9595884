"""Choosing each group's width under a budget: remove channels where they cost most and matter least.

HALP (Shen et al. 2022) prunes under a latency budget by removing, again and again, the
channels whose latency saved per unit of importance lost is largest. Here a step removes one
`round_to` slice of a group's least important channels; the budget may be on params, MACs or
latency. With a latency table a step is worth the latency it frees per importance lost, whatever
the budget, so that at equal params the time-costly channels (early, high-resolution layers) go
first; the budget only says when to stop. Without a table a step is worth the budget it frees.
The result is one width a group, for `prune_to_widths`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from leanlens.compression.latency import LatencyTable, default_round_to
from leanlens.compression.widths import Layer, Layout, as_example, layout
from leanlens.errors import BadInput, BadOption, closest
from leanlens.explain.options import positive_int

BUDGETS = ("params", "macs", "latency")


def allocate(model, example, budget: Mapping[str, float], scores: Mapping[str, np.ndarray],
             table: LatencyTable | None = None, *, round_to: int | str | None = "auto",
             protect: Iterable[str] = (), max_pruning_ratio: float = 1.0) -> dict[str, int]:
    """Widths, one a group (named by its root layer), that meet `budget` keeping the most importance.

    Parameters
    ----------
    budget : one of {"params": f}, {"macs": f}, {"latency": f}: keep at most the fraction f of the
        dense model's figure (latency as the table predicts it).
    scores : one importance score a channel for each group, comparable across groups, e.g.
        `widths.channel_scores(module, example, tp.importance.TaylorImportance())`.
    table : a `latency_table` of this model and input shape; needed for a latency budget.
    round_to : widths stay multiples of it ("auto": 8 on CPU, 32/64 on CUDA, from the table's device).
    protect : layer names whose output width is kept; the layers producing the output always are.
    max_pruning_ratio : the largest fraction of a group's channels removed (as in torch-pruning);
        a group always keeps at least `round_to` channels.
    """
    from leanlens.compression.checks import torch_model

    module = torch_model(model, "allocate").module
    kind, fraction = _budget(budget)
    if kind == "latency" and table is None:
        raise BadOption(f"budget={dict(budget)!r} needs a latency table", "pass table=latency_table(model, example)")
    round_to = _round_to(round_to, table)
    floor = 1.0 - _ratio(max_pruning_ratio)
    plan = layout(module, as_example(module, example), protect)
    _check_scores(plan, scores)
    _check_table(plan, table)
    return _Greedy(plan, scores, table, kind, round_to, floor).run(fraction)


def cost(plan: Layout, widths: Mapping[str, int], kind: str, table: LatencyTable | None = None) -> float:
    """The model's params, MACs or table latency (ms) with its groups at `widths` (others full)."""
    return sum(_layer_cost(layer, plan, widths, kind, table) for layer in plan.layers.values()) \
        + (plan.fixed_params if kind == "params" else 0)


class _Greedy:
    """The state of the allocation: current widths, channels removed so far, each group's next step."""

    def __init__(self, plan: Layout, scores, table, kind: str, round_to: int | None, floor: float = 0.0):
        self.plan, self.table, self.kind, self.round_to = plan, table, kind, round_to
        self.floor = {g: floor * w for g, w in plan.groups.items()}  # least width a group may keep
        self.widths = dict(plan.groups)
        # Cumulative importance of each group's channels, least important first: a step's loss.
        self.lost = {g: np.concatenate([[0.0], np.cumsum(np.sort(np.asarray(scores[g], dtype=float)))])
                     for g in plan.groups}
        self.tiny = 1e-12 * max(1e-300, max((float(np.abs(v).max()) for v in self.lost.values()), default=1.0))
        self.touching = {g: [layer for layer in plan.layers.values() if g in (layer.in_group, layer.out_group)]
                         for g in plan.groups}
        self.neighbours = {g: {n for layer in self.touching[g] for n in (layer.in_group, layer.out_group) if n}
                           for g in plan.groups}
        self.worth = "latency" if table is not None else kind  # what a step is judged by
        self.dense = {k: cost(plan, self.widths, k, table) for k in {kind, self.worth}}

    def run(self, fraction: float) -> dict[str, int]:
        target = fraction * self.dense[self.kind]
        now = self.dense[self.kind]
        values = {g: self._value(g) for g in self.plan.groups}
        while now > target:
            steps = {g: v for g, v in values.items() if v is not None}
            if not steps:
                self._refuse(fraction, now)
            group = max(steps, key=steps.get)
            now -= self._saved(group, self.kind)
            self.widths[group] = self._narrower(group)
            for g in self.neighbours[group] | {group}:
                values[g] = self._value(g)
        return self.widths

    def _narrower(self, group: str) -> int | None:
        width, step = self.widths[group], self.round_to or 1
        narrower = (width - 1) // step * step
        return narrower if narrower >= max(step, self.floor[group]) else None

    def _value(self, group: str) -> float | None:
        """Latency (with a table) or budget freed by the group's next step, per importance lost."""
        narrower = self._narrower(group)
        if narrower is None:
            return None
        full, width = self.plan.groups[group], self.widths[group]
        lost = self.lost[group][full - narrower] - self.lost[group][full - width]
        return self._saved(group, self.worth) / (max(lost, 0.0) + self.tiny)

    def _saved(self, group: str, kind: str) -> float:
        after = {**self.widths, group: self._narrower(group)}
        return sum(_layer_cost(layer, self.plan, self.widths, kind, self.table)
                   - _layer_cost(layer, self.plan, after, kind, self.table) for layer in self.touching[group])

    def _refuse(self, fraction: float, now: float):
        smallest = now / self.dense[self.kind]
        raise BadOption(f"budget {self.kind}={fraction:g} cannot be met: with every prunable group at its narrowest "
                        f"(round_to={self.round_to}) the model keeps {smallest:.0%} of its {self.kind}",
                        "raise the budget, lower round_to or protect fewer layers")


def _layer_cost(layer: Layer, plan: Layout, widths: Mapping[str, int], kind: str, table: LatencyTable | None) -> float:
    cin = widths.get(layer.in_group, layer.cin) if layer.in_group else layer.cin
    cout = widths.get(layer.out_group, layer.cout) if layer.out_group else layer.cout
    if kind == "params":
        return layer.params(cin, cout)
    if kind == "macs":
        return layer.macs(cin, cout)
    return table.ms(layer.name, cin, cout) if layer.name in table.entries else 0.0


def _budget(budget) -> tuple[str, float]:
    hint = "pass one target as a fraction of the dense model, e.g. budget={'macs': 0.3}"
    if not isinstance(budget, Mapping) or len(budget) != 1:
        raise BadOption(f"budget={budget!r}", hint)
    (kind, fraction), = budget.items()
    if kind not in BUDGETS:
        raise BadOption(f"unknown budget {kind!r}", closest(str(kind), BUDGETS))
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise BadOption(f"budget={{{kind!r}: {fraction!r}}}", "the fraction to keep is in (0, 1], e.g. 0.3")
    return kind, float(fraction)


def _ratio(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BadOption(f"max_pruning_ratio={value!r}", "use a fraction in [0, 1], e.g. 0.8")
    return float(value)


def _round_to(round_to, table: LatencyTable | None) -> int | None:
    if round_to == "auto":
        return default_round_to(table.device) if table is not None else 8
    if round_to is None:
        return None
    return positive_int("round_to", round_to, "use a positive int such as 8, None for no rounding, or 'auto'")


def _check_scores(plan: Layout, scores: Mapping[str, np.ndarray]) -> None:
    for group, width in plan.groups.items():
        if group not in scores:
            raise BadInput(f"scores has no entry for group {group!r}",
                           "pass one score a channel for every group, e.g. from widths.channel_scores")
        if np.shape(scores[group]) != (width,) or not np.all(np.isfinite(scores[group])):
            raise BadInput(f"scores[{group!r}] must be {width} finite numbers, got shape {np.shape(scores[group])}",
                           "pass one finite score a channel of the group's root layer")


def check_table(module, example, table: LatencyTable) -> None:
    """Refuse, in one line, a latency table that lacks a row for a prunable layer of `module`."""
    _check_table(layout(module, as_example(module, example)), table)


def _check_table(plan: Layout, table: LatencyTable | None) -> None:
    if table is None:
        return
    for name, layer in plan.layers.items():
        if layer.kind != "norm" and (layer.in_group or layer.out_group) and name not in table.entries:
            raise BadInput(f"the latency table has no row for layer {name!r}: it was measured for another model",
                           "measure it for this model and input: latency_table(model, example)")
