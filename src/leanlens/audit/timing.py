"""Timing contenders fairly: in turns, in one run, with the same thread count.

A shared machine's speed drifts over minutes, so timing model A now and model B later
compares the machine with itself. Here every contender runs once per round, in the same
order, so each sees the same mix of fast and slow moments; the clock is a parameter so
that the arithmetic can be tested with a fake one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

Clock = Callable[[], float]  # seconds, monotonic


@dataclass(frozen=True)
class Timing:
    """Wall time of one call, over the timed rounds."""

    median_ms: float
    min_ms: float  # the least disturbed run: what the code costs on an idle machine


# Calls a turn makes in a row. torch's OpenMP workers keep spinning for several
# milliseconds after a call (measured here: an ONNX Runtime call right after a torch call ran
# 15-30 % slower on 2 cores, whatever pause we tried), so a turn's first call pays for its
# predecessor; the fastest of a few calls in a row is the contender's own cost.
BURST = 3


def interleaved(
    contenders: Mapping[str, Callable[[], object]], *, repeats: int = 15, warmup: int = 3,
    clock: Clock | None = None, sync: Callable[[], None] | None = None, burst: int = BURST,
) -> dict[str, Timing]:
    """Time each callable in turns (a, b, c, a, b, c, ...); the first `warmup` rounds are not kept.

    A turn is `burst` calls in a row and counts its fastest, so that no contender is charged
    for the threads the one before it left busy. `sync` runs before each clock reading, e.g.
    `torch.cuda.synchronize` so that GPU work queued by a contender is inside its own interval.
    """
    clock, sync = clock or time.perf_counter, sync or (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(warmup + repeats):
        for name, call in contenders.items():
            turn = min(_timed(call, clock, sync) for _ in range(burst))
            if round_ >= warmup:
                times[name].append(turn)
    return {name: Timing(float(np.median(t) * 1e3), float(np.min(t) * 1e3)) for name, t in times.items()}


def _timed(call: Callable[[], object], clock: Clock, sync: Callable[[], None]) -> float:
    sync()
    start = clock()
    call()
    sync()
    return clock() - start


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set for the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ort_session(model_bytes: bytes, threads: int):
    """An ONNX Runtime CPU session with `threads` intra-op threads and no spinning.

    The same count as torch's makes the comparison about kernels, not about how many cores
    each runtime grabs; spinning off, because idle ORT workers busy-wait and steal the CPU
    from whichever contender runs next.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
