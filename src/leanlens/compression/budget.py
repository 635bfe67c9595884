"""What a compression budget is, and how each of its figures is counted on a module.

A budget is a fraction of the original model's cost to reach: `Budget(macs=0.3)` means at
most 30 % of the original multiply-accumulates. `"macs=0.3,params=0.5"` or
`{"macs": 0.3}` say the same in short. MACs and params are counted by a function in `COSTS`;
latency is what a latency table, measured once on the target device, predicts for the model's
widths (`latency.predicted_ms`), so a budget step is read from the table, not from a noisy clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import torch
import torch_pruning as tp
from torch import nn

from leanlens.compression.checks import fraction
from leanlens.compression.latency import LatencyTable, predicted_ms
from leanlens.errors import BadOption, closest

Cost = Callable[[nn.Module, torch.Tensor], float]


def count_macs(module: nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass on `example` (one sample)."""
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(module, example)
    return float(macs)


def count_params(module: nn.Module, example: torch.Tensor) -> float:
    return float(sum(p.numel() for p in module.parameters()))


# The figures counted on the module alone; latency needs a table (see `countable`).
COSTS: dict[str, Cost] = {"macs": count_macs, "params": count_params}


@dataclass(frozen=True)
class Budget:
    """Fractions of the original model's cost to reach, each 0 < f < 1; None: no limit."""

    macs: float | None = None
    params: float | None = None
    latency: float | None = None

    def __post_init__(self) -> None:
        limits = {f.name: getattr(self, f.name) for f in fields(self)}
        if all(value is None for value in limits.values()):
            raise BadOption("the budget sets no limit", "give a fraction of the original, e.g. budget='macs=0.5'")
        for key, value in limits.items():
            if value is not None:
                object.__setattr__(self, key, fraction(key, value))

    @property
    def limits(self) -> dict[str, float]:
        """The figures this budget limits, and their fractions."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def __str__(self) -> str:
        return ",".join(f"{key}={value:g}" for key, value in self.limits.items())


def as_budget(budget) -> Budget:
    """`budget` as a Budget: a Budget, a mapping {"macs": 0.3}, or a string "macs=0.3,params=0.5"."""
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, str):
        budget = _parse(budget)
    if not isinstance(budget, Mapping):
        raise BadOption(f"budget={budget!r}", "use e.g. budget='macs=0.5', {'params': 0.3} or Budget(macs=0.5)")
    known = [f.name for f in fields(Budget)]
    for key in budget:
        if key not in known:
            raise BadOption(f"unknown budget key {key!r}", closest(str(key), known))
    return Budget(**budget)


def _parse(text: str) -> dict[str, float]:
    limits = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        try:
            limits[key.strip()] = float(value)  # "" (no "=") and "half" are both refused here
        except ValueError:
            raise BadOption(f"budget part {part!r} is not key=fraction", "use e.g. budget='macs=0.5'") from None
    return limits


def countable(budget: Budget, table: LatencyTable | None = None) -> dict[str, Cost]:
    """The cost function of each figure `budget` limits; latency as `table` predicts it."""
    costs = {key: COSTS[key] for key in budget.limits if key in COSTS}
    if budget.latency is not None:
        if table is None:
            raise BadOption(f"budget {budget} needs a latency table", "pass table=latency_table(model, batch)")
        costs["latency"] = lambda module, example: predicted_ms(table, module)
    return costs
