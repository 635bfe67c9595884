"""Cutting a batch into contiguous shards and putting the shards' results back together in order.

A shard is a slice of rows: an array's, a tensor's or a DataFrame's (`iloc`). The options
that hold one value a sample (a batch-shaped `baseline` or `feature_mask`, a target a
sample) are cut with the rows; everything else (a background, a seed) goes to every shard
whole. Results are dataclasses (`Explanation`, `ReasonCodes`): their per-row arrays are
concatenated in shard order, and their other fields, which every shard computes alike,
are taken from the first shard.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from leanlens.errors import BadInput

PER_SAMPLE_OPTIONS = ("baseline", "feature_mask")  # per sample when shaped like the batch
SHARDS_A_CPU = 4  # a few shards a CPU: a slow shard leaves the others busy, and progress moves


def as_rows(x):
    """`x` as something with a length that slices by rows: an array, a tensor or a DataFrame."""
    import torch

    from leanlens.models.tables import is_frame

    if is_frame(x) or isinstance(x, (np.ndarray, torch.Tensor)):
        rows = x
    else:
        try:
            rows = np.asarray(x)
        except (TypeError, ValueError) as error:
            raise BadInput(f"cannot cut a {type(x).__name__} into shards ({error})",
                           "pass a NumPy array, a torch tensor or a pandas DataFrame") from None
    if rows.ndim < 1 or len(rows) == 0:
        raise BadInput("there are no rows to explain", "pass a batch with at least one sample")
    return rows


def plan(n: int, shard_size: int | None, cpus: int) -> list[slice]:
    """Contiguous slices of `n` rows: `shard_size` rows each, or about SHARDS_A_CPU shards a CPU."""
    if shard_size is None:
        shard_size = math.ceil(n / (SHARDS_A_CPU * max(cpus, 1)))
    return [slice(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def rows_of(x, rows: slice):
    """Rows `rows` of `x` (positions, also for a DataFrame with its own index)."""
    from leanlens.models.tables import is_frame

    return x.iloc[rows] if is_frame(x) else x[rows]


def sample_target(target, n: int, rows: slice):
    """The shard's part of `target`: None or one class as it is; one class a sample, cut."""
    if target is None or isinstance(target, (int, np.integer)):
        return target
    values = np.asarray(target)
    return values[rows] if values.ndim == 1 and len(values) == n else target


def sample_options(options: dict, shape: tuple, rows: slice) -> dict:
    """The shard's options: the per-sample ones cut, the rest whole."""
    cut = {}
    for name, value in options.items():
        if name in PER_SAMPLE_OPTIONS and tuple(np.shape(value)) == tuple(shape):
            value = value[rows]
        cut[name] = value
    return cut


def join(parts: list):
    """The shards' results as one: per-row arrays concatenated in order, other fields the first shard's."""
    sizes = [len(part) for part in parts]
    return _join_fields(parts, sizes)


def _join_fields(parts: list, sizes: list[int]):
    first = parts[0]
    joined = {field.name: _join_values([getattr(p, field.name) for p in parts], sizes)
              for field in dataclasses.fields(first)}
    return dataclasses.replace(first, **joined)


def _join_values(values: list, sizes: list[int]):
    first = values[0]
    if dataclasses.is_dataclass(first) and not isinstance(first, type):  # e.g. an Explanation's error bars
        return _join_fields(values, sizes)
    if isinstance(first, np.ndarray) and first.ndim >= 1 and [len(v) for v in values] == sizes:
        return np.concatenate(values)
    return first
