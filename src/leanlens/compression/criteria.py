"""Pruning criteria: how to score a channel group before structural removal.

Each name maps to a factory of a torch-pruning importance; the structural surgery
(which tensors must shrink together) is torch-pruning's dependency graph.
"""

from __future__ import annotations

from collections.abc import Callable

import torch_pruning as tp

from leanlens.errors import UnknownMethod, closest

# Whether the criterion reads gradients, so that prune() knows to run a backward pass first.
CRITERIA: dict[str, tuple[Callable[[], object], bool]] = {
    # |w · ∂L/∂w| summed over the channel group: first-order loss change (Molchanov et al., 2019)
    "taylor": (lambda: tp.importance.TaylorImportance(), True),
    # L1 norm of the channel's weights (Li et al., 2017): cheap, needs no data
    "magnitude": (lambda: tp.importance.MagnitudeImportance(p=1), False),
}


def importance(name: str):
    """The torch-pruning importance for `name`, and whether it needs gradients."""
    if name not in CRITERIA:
        raise UnknownMethod(f"unknown pruning criterion {name!r}", closest(name, CRITERIA))
    factory, needs_gradients = CRITERIA[name]
    return factory(), needs_gradients
