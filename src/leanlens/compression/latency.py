"""Latency tables: what each layer costs at each candidate width, measured once on the target device.

Latency-aware pruning (HALP, Shen et al. 2022) needs to know which channels cost time, not
only MACs: an early high-resolution layer moves far more activations per MAC than a late one.
Each conv or linear layer is timed alone, on an input of the shape it sees in the model, at a
grid of input and output widths (its conv → norm → ReLU block when a norm follows it, since
their traffic grows with the same width); a layer between two widths is read by linear
interpolation. Tables are cached on disk, keyed by the architecture, the input shape, the
device, the dtype and the thread count, so a model is measured once per place it will run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leanlens.audit.timing import interleaved, torch_threads
from leanlens.compression.widths import Layer, as_example, layout
from leanlens.errors import BadInput, BadOption
from leanlens.explain.options import positive_int

FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.125)  # of each layer's width: the candidate grid
TABLE_VERSION = 1  # bump when what a table holds changes, so old caches are measured again


@dataclass(frozen=True)
class Entry:
    """One layer's measured times: `ms[i][j]` at `cin[i]` inputs and `cout[j]` outputs (ascending)."""

    cin: tuple[int, ...]
    cout: tuple[int, ...]
    ms: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class LatencyTable:
    """Per-layer times at candidate widths, for one model, input shape, device, dtype and thread count."""

    key: str
    device: str
    threads: int
    entries: Mapping[str, Entry]
    measured: int = 0  # distinct layer shapes timed to build this table: 0 when it came from the cache

    def ms(self, layer: str, cin: int, cout: int) -> float:
        """The time of `layer` with `cin` inputs and `cout` outputs, interpolated between measured widths."""
        entry = self.entries[layer]
        rows = [_interpolate(entry.cout, row, cout) for row in entry.ms]
        return _interpolate(entry.cin, rows, cin)


def latency_table(model, example, *, widths: Iterable[float] = FRACTIONS, device: str | None = None,
                  dtype: torch.dtype = torch.float32, threads: int | None = None, repeats: int = 5,
                  cache_dir: str | os.PathLike | None = None,
                  on_step: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Time every conv and linear layer of `model` at candidate widths, or read the cached table.

    Parameters
    ----------
    example : a batch as the model will see it; its shape (batch size included) is what is timed.
    widths : fractions of each layer's width to time, in (0, 1]; others are interpolated.
    device : "cpu" or "cuda"; default: where the model's parameters are.
    threads : torch's intra-op threads while timing on CPU; default: torch's current count.
    repeats : interleaved rounds per layer (their median is kept).
    cache_dir : where tables are kept; default `$XDG_CACHE_HOME/leanlens/latency`.
    on_step : called as `on_step(done, total)` after each layer is timed, for progress bars.
    """
    from leanlens.compression.checks import torch_model

    module = torch_model(model, "latency_table").module
    fractions = _fractions(widths)
    device = _device(device, module)
    threads = positive_int("threads", threads if threads is not None else torch.get_num_threads(),
                           "use a positive int, e.g. the threads the model will run with")
    repeats = positive_int("repeats", repeats, "use a positive int such as 5")
    layers = _timed_layers(layout(module, as_example(module, example)))
    grids = {name: _grid(layer, fractions) for name, layer in layers.items()}
    key = _key(module, layers, grids, device, dtype, threads)
    path = Path(cache_dir or _default_cache()) / f"{key}.json"
    cached = _read(path, key, device, threads)
    if cached is not None:
        return cached
    entries, measured = {}, {}
    with torch_threads(threads):
        for done, (name, layer) in enumerate(layers.items(), start=1):
            # Repeated blocks (a ResNet stage's 2nd to last) have one shape: timed once.
            same = (replace(layer, name="", in_group=None, out_group=None), grids[name])
            if same not in measured:
                measured[same] = _measure(layer, grids[name], device, dtype, repeats)
            entries[name] = measured[same]
            if on_step is not None:
                on_step(done, len(layers))
    table = LatencyTable(key, device, threads, entries, measured=len(measured))
    _write(path, table)
    return table


def default_round_to(device: str, dtype: torch.dtype = torch.float32) -> int:
    """Channel multiple the device's kernels like: 8 for CPU vector units, 32 (TF32) or 64 (half) for tensor cores."""
    if device.startswith("cuda"):
        return 64 if dtype in (torch.float16, torch.bfloat16) else 32
    return 8


def _timed_layers(plan) -> dict[str, Layer]:
    """The layers worth a row in the table: convs and linears whose input or output width can change."""
    return {name: layer for name, layer in plan.layers.items()
            if layer.kind != "norm" and (layer.in_group or layer.out_group)}


def _grid(layer: Layer, fractions: tuple[float, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Candidate input and output widths; a width no group changes is timed at its own value only."""
    def axis(width: int, free: bool) -> tuple[int, ...]:
        return tuple(sorted({max(1, round(f * width)) for f in fractions})) if free else (width,)

    if layer.depthwise:  # inputs and outputs move together: one axis, read on the diagonal
        both = axis(layer.cout, True)
        return both, both
    return axis(layer.cin, layer.in_group is not None), axis(layer.cout, layer.out_group is not None)


def _measure(layer: Layer, grid, device: str, dtype: torch.dtype, repeats: int) -> Entry:
    cins, couts = grid
    points = list(zip(cins, couts)) if layer.depthwise else [(i, o) for i in cins for o in couts]
    calls = {point: _block_call(layer, *point, device, dtype) for point in points}
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    timings = interleaved(calls, repeats=repeats, warmup=1, sync=sync, burst=1)
    if layer.depthwise:  # the diagonal holds the times; off it, the time of the wider of the two
        grid = np.array([[timings[(max(i, o), max(i, o))].median_ms for o in couts] for i in cins])
    else:
        grid = np.array([[timings[(i, o)].median_ms for o in couts] for i in cins])
    return Entry(cins, couts, tuple(map(tuple, _monotone(grid).tolist())))


def _monotone(grid: np.ndarray) -> np.ndarray:
    """Noise removed where it contradicts the physics: a narrower layer is never slower than a wider one.

    Each time becomes the least over itself and every point at least as wide in both widths, so
    that a slow moment of the machine cannot make removing channels look like it costs time.
    """
    flipped = grid[::-1, ::-1]
    return np.minimum.accumulate(np.minimum.accumulate(flipped, axis=0), axis=1)[::-1, ::-1]


def _block_call(layer: Layer, cin: int, cout: int, device: str, dtype: torch.dtype) -> Callable[[], object]:
    """A no-grad call of a layer like `layer` at `cin` → `cout` on a random input of its shape."""
    shape = list(layer.input_shape)
    if layer.kind == "linear":
        shape[-1] = cin
        block: nn.Module = nn.Linear(cin, cout, bias=layer.bias)
    else:
        shape[1] = cin
        spatial = len(shape) - 2
        kernel_size, stride, padding, dilation = layer.geometry
        block = getattr(nn, f"Conv{spatial}d")(cin, cout, kernel_size, stride, padding, dilation,
                                               groups=cin if layer.depthwise else 1, bias=layer.bias)
        if layer.normed:
            block = nn.Sequential(block, getattr(nn, f"BatchNorm{spatial}d")(cout), nn.ReLU(inplace=True))
    block = block.to(device=device, dtype=dtype).eval()
    x = torch.randn(shape, device=device, dtype=dtype)

    def call():
        with torch.no_grad():
            return block(x)

    return call


def _interpolate(xs: tuple[int, ...], ys, x: float) -> float:
    """Piecewise-linear in the width; below the narrowest measured width, proportional to it."""
    if len(xs) == 1:
        return float(ys[0])
    if x <= xs[0]:
        return float(ys[0]) * x / xs[0]
    i = min(bisect_left(xs, x), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def _fractions(widths: Iterable[float]) -> tuple[float, ...]:
    hint = "pass fractions of each layer's width in (0, 1], e.g. widths=(1.0, 0.75, 0.5, 0.25)"
    try:
        fractions = tuple(sorted({float(w) for w in widths}))
    except (TypeError, ValueError):
        raise BadOption(f"widths={widths!r}", hint) from None
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise BadOption(f"widths={widths!r}", hint)
    return fractions


def _device(device: str | None, module: nn.Module) -> str:
    device = device or next(module.parameters()).device.type
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise BadOption(f"device={device!r}", "use 'cpu' or 'cuda'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadOption(f"device={device!r} but torch sees no CUDA device", "use device='cpu' on this machine")
    return device


def _key(module: nn.Module, layers: Mapping[str, Layer], grids, device: str, dtype: torch.dtype, threads: int) -> str:
    """What the times depend on: the layers' kinds and shapes, the grid, where and how they run."""
    described = {
        "version": TABLE_VERSION, "architecture": type(module).__qualname__, "torch": torch.__version__,
        "device": device, "hardware": hardware(device), "dtype": str(dtype), "threads": threads,
        "layers": {name: [repr(layer), grids[name]] for name, layer in layers.items()},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:24]


def hardware(device: str) -> str:
    """Which processor `device` is: a table timed on one CPU or GPU says nothing about another
    (the same disk, e.g. a home directory shared by machines, may hold both caches)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: the platform's own description
        return platform.processor() or platform.machine()
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return f"{name} {os.cpu_count()} cpus {' '.join(sorted(f for f in flags if f.startswith('avx') or 'amx' in f))}"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "leanlens" / "latency"


def _read(path: Path, key: str, device: str, threads: int) -> LatencyTable | None:
    """The cached table, or None when there is none or it cannot be read (it is then measured again)."""
    try:
        stored = json.loads(path.read_text())
        entries = {name: Entry(tuple(e["cin"]), tuple(e["cout"]), tuple(tuple(row) for row in e["ms"]))
                   for name, e in stored["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return LatencyTable(key, device, threads, entries) if stored.get("key") == key else None


def _write(path: Path, table: LatencyTable) -> None:
    entries = {name: {"cin": e.cin, "cout": e.cout, "ms": e.ms} for name, e in table.entries.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"key": table.key, "entries": entries}))
        temporary.replace(path)  # a reader never sees half a file
    except OSError as error:
        raise BadInput(f"cannot write the latency table to {path.parent}: {error.strerror}",
                       "pass cache_dir= a folder you can write to") from None


def predicted_ms(table: LatencyTable, module: nn.Module) -> float:
    """The time `table` predicts for `module` at its current widths: the sum of its timed layers'
    times (the cost a latency budget limits; the allocator's `cost(..., "latency", table)` as well)."""
    total = 0.0
    for name, layer in module.named_modules():
        if name in table.entries:
            cin = getattr(layer, "in_channels", None) or layer.in_features
            cout = getattr(layer, "out_channels", None) or layer.out_features
            total += table.ms(name, cin, cout)
    return total


def measured_ms(module: nn.Module, batch: torch.Tensor, *, repeats: int = 7) -> float:
    """Wall time of one no-grad forward pass of `batch`, where the module's parameters are, with
    torch's current threads: the median of `repeats` timed passes after two untimed ones."""
    device = next(module.parameters()).device
    batch = batch.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def call():
        with torch.no_grad():
            return module(batch)

    return interleaved({"model": call}, repeats=repeats, warmup=2, sync=sync, burst=1)["model"].median_ms
