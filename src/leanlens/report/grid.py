"""The heatmap grid: probe images down, versions across, one PNG per cell."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from leanlens.errors import BadInput
from leanlens.metrics import heatmap
from leanlens.report import arrays, figures
from leanlens.store import Probe, Store, Version

PROBES_SHOWN = 8


@dataclass(frozen=True)
class Cell:
    src: str  # data: URI
    alt: str


@dataclass(frozen=True)
class GridRow:
    label: str  # probe index and, when known, its class
    image: Cell
    maps: list[Cell]


@dataclass
class Grid:
    versions: list[str] = field(default_factory=list)  # columns that have maps
    rows: list[GridRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why something is not shown


def _label(i: int, probe: Probe) -> str:
    if probe.y is None or np.ndim(probe.y[i]) != 0:
        return f"probe {i}"
    return f"probe {i} · class {probe.y[i]}"


def _maps(store: Store, versions: list[Version], method: str, n: int,
          grid: Grid) -> dict[str, np.ndarray]:
    """{version: first n explanation maps}, noting each version that is skipped."""
    found = {}
    for v in versions:
        try:
            values = store.explanation(v.name, method)
        except BadInput as e:
            grid.notes.append(f"{e.problem}: column skipped.")
            continue
        if values.ndim not in (3, 4):
            grid.notes.append(f"version {v.name!r}: {method!r} explanation has shape "
                              f"{values.shape}, not (N, H, W) or (N, C, H, W): column skipped.")
            continue
        found[v.name] = values[:n]
    return found


def _row(i: int, probe: Probe, maps: dict[str, np.ndarray]) -> GridRow:
    image = arrays.display_image(probe.x[i])
    mask = None if probe.masks is None else probe.masks[i]
    first = Cell(figures.data_uri(figures.probe_png(image, mask)), f"probe {i}, image")
    cells = [Cell(figures.data_uri(figures.heatmap_png(image, heatmap(m[i : i + 1])[0], mask)),
                  f"probe {i}, {name}")
             for name, m in maps.items()]
    return GridRow(_label(i, probe), first, cells)


def heatmap_grid(store: Store, versions: list[Version], method: str,
                 n: int = PROBES_SHOWN) -> Grid:
    """The first n probe images and each version's `method` map of them."""
    grid = Grid()
    try:
        probe = store.probe()
    except BadInput as e:
        grid.notes.append(f"{e.problem}, so there are no images to show.")
        return grid
    maps = _maps(store, versions, method, n, grid)
    grid.versions = list(maps)
    if probe.masks is None:
        grid.notes.append("The probe set has no object masks, so no outlines are drawn.")
    grid.rows = [_row(i, probe, maps) for i in range(min(n, len(probe)))]
    return grid
