"""A latency table made up for tests: which layer is expensive is the test's choice, not the machine's."""

from __future__ import annotations

import torch
from torch import nn

from leanlens.compression.latency import Entry, LatencyTable
from leanlens.compression.widths import layout

EXPENSIVE_MS = 50.0  # a channel of the expensive layer; any other layer's channel costs 1 ms


def fake_table(module: nn.Module, example: torch.Tensor, expensive: str) -> LatencyTable:
    """Every timed layer costs 1 ms per output channel, `expensive` 50 ms; input widths change nothing."""
    entries = {}
    for name, layer in layout(module, example).layers.items():
        if layer.kind == "norm":
            continue
        couts = tuple(range(1, layer.cout + 1))
        per_channel = EXPENSIVE_MS if name == expensive else 1.0
        entries[name] = Entry((layer.cin,), couts, (tuple(per_channel * c for c in couts),))
    return LatencyTable("fake", "cpu", 1, entries)


def fake_ms(module: nn.Module, expensive: str) -> float:
    """What `fake_table` says `module` costs, counted by hand from its layers' output widths."""
    return sum((EXPENSIVE_MS if name == expensive else 1.0) * (getattr(m, "out_channels", None) or m.out_features)
               for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
