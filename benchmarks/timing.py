"""Benchmark timing on top of leanlens' own (`leanlens.audit.timing`), GPU-synchronised, and the IG floor.

One timing module for the library and the benchmarks: contenders run in turns in one run,
so a machine whose speed drifts over minutes cannot favour one of them.
"""

from __future__ import annotations

import numpy as np
import torch

from leanlens.audit.timing import interleaved, torch_threads


def _sync() -> None:
    """Wait for queued GPU work, so that it lands inside the interval that queued it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# Attribution benchmarks compare torch with torch (ours against Captum's), and a call lasts
# long enough that the previous one's idle threads do not matter: one call a turn.
def median_ms(fn, repeats: int = 7, warmup: int = 2) -> float:
    return interleaved({"fn": fn}, repeats=repeats, warmup=warmup, sync=_sync, burst=1)["fn"].median_ms


def interleaved_ms(contenders: dict, repeats: int = 9, warmup: int = 2) -> dict[str, float]:
    """Median ms of each callable, run in turns (a, b, c, a, b, c, ...)."""
    return {name: median for name, (median, _) in interleaved_median_min_ms(contenders, repeats, warmup).items()}


def interleaved_median_min_ms(contenders: dict, repeats: int = 9, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """(median ms, min ms) of each callable, run in turns (a, b, c, a, b, c, ...)."""
    timings = interleaved(contenders, repeats=repeats, warmup=warmup, sync=_sync, burst=1)
    return {name: (t.median_ms, t.min_ms) for name, t in timings.items()}


def ig_floor(model, x, target, steps: int, chunk: int, channels_last: bool = False, bf16: bool = False) -> None:
    """One forward+backward to the input over all (sample, step) points, in the same chunks as IG."""
    points, targets = x.repeat_interleave(steps, 0), target.repeat_interleave(steps, 0)
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk]
        p = (p.contiguous(memory_format=torch.channels_last) if channels_last else p.clone()).requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            score = model(p).gather(1, targets[start : start + chunk, None]).sum()
        torch.autograd.grad(score, p)


def ort_call(model_bytes: bytes, x, threads: int):
    """A call of an ONNX Runtime session on `x`, cast to the graph's input dtype, ready to time."""
    from leanlens.audit.timing import ort_session
    from leanlens.models.onnx_model import as_input

    session = ort_session(model_bytes, threads)
    feed = {session.get_inputs()[0].name: as_input(session, x)}
    return lambda: session.run(None, feed)


def speed_rows(predict, graphs: dict[str, bytes], x, threads: int, repeats: int, *, warmup: int = 2,
               digits: int = 3) -> list[str]:
    """Markdown rows `| batch | runtime | median ms | min ms | vs best fp32 |` at batch 1 and 32.

    Eager torch (`predict(x, batch_size=)`) and every ONNX graph of `graphs` run interleaved at
    `threads` threads; each speed-up is read against the faster of eager torch and the graph
    named "ORT fp32", the best fp32 path of the same model.
    """
    lines = []
    for batch in (1, 32):
        inputs = np.ascontiguousarray(x[:batch])
        calls = {"torch eager": lambda inputs=inputs: predict(inputs, batch_size=len(inputs))}
        calls.update({name: ort_call(graph, inputs, threads) for name, graph in graphs.items()})
        with torch_threads(threads):
            timings = interleaved(calls, repeats=repeats, warmup=warmup, burst=1)
        best = min(timings[name].median_ms for name in ("torch eager", "ORT fp32"))
        lines += [f"| {batch} | {name} | {t.median_ms:.{digits}f} | {t.min_ms:.{digits}f} | {best / t.median_ms:.2f}× |"
                  for name, t in timings.items()]
    return lines
