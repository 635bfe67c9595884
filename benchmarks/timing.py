"""Median wall time of a callable, synchronising the GPU when there is one."""

from __future__ import annotations

import time

import numpy as np
import torch


def median_ms(fn, repeats: int = 7, warmup: int = 2) -> float:
    def timed():
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        timed()
    return float(np.median([timed() for _ in range(repeats)]) * 1e3)
