"""Median wall times, synchronising the GPU when there is one, and the IG floor they are read against."""

from __future__ import annotations

import time

import numpy as np
import torch


def timed(fn) -> float:
    """Seconds one call of `fn` takes, GPU work included."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_ms(fn, repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        timed(fn)
    return float(np.median([timed(fn) for _ in range(repeats)]) * 1e3)


def interleaved_ms(contenders: dict, repeats: int = 9, warmup: int = 2) -> dict[str, float]:
    """Median ms of each callable, run in turns (a, b, c, a, b, c, ...).

    On a shared machine whose speed drifts over minutes, turns keep the ratios honest:
    each contender sees the same mix of fast and slow moments.
    """
    times = {name: [] for name in contenders}
    for round_ in range(warmup + repeats):
        for name, fn in contenders.items():
            elapsed = timed(fn)
            if round_ >= warmup:
                times[name].append(elapsed)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


def ig_floor(model, x, target, steps: int, chunk: int, channels_last: bool = False, bf16: bool = False) -> None:
    """One forward+backward to the input over all (sample, step) points, in the same chunks as IG."""
    points, targets = x.repeat_interleave(steps, 0), target.repeat_interleave(steps, 0)
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk]
        p = (p.contiguous(memory_format=torch.channels_last) if channels_last else p.clone()).requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            score = model(p).gather(1, targets[start : start + chunk, None]).sum()
        torch.autograd.grad(score, p)
