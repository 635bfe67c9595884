"""`ModelFigures`: what one model version costs and how it does, as the store and readers see it."""

from __future__ import annotations

from dataclasses import dataclass

from leanlens.audit.profile import Profile
from leanlens.metrics.record import Record, shown

TIMING = "latency per batch, timed in one interleaved run"


@dataclass(frozen=True)
class ModelFigures(Record):
    """A version's figures; a figure that was not measured stays None."""

    scheme: str | None = shown("scheme", "text", "how ll.quantize made this version (int8 is post-training, "
                               "int8-qat quantization-aware training); empty for a float model")
    accuracy: float | None = shown("acc.", "percent", "share of test samples classified correctly")
    agreement: float | None = shown(
        "agree", "percent", "share of samples where this version predicts the same class as the reference")
    params: int | None = shown("params", "count", "number of weights", relative=True)
    macs: int | None = shown("MACs", "count", "multiply-accumulates per input", relative=True)
    bytes: int | None = shown("size", "bytes", "model size on disk", relative=True)
    runtime: str | None = shown("runtime", "text", "the runtime this version is deployed on", group=TIMING)
    latency_ms: float | None = shown(
        "ms", "ms", "time of one batch on its own runtime: the median over rounds of the fastest of three calls "
        "in a row", group=TIMING)
    fp32_runtime: str | None = shown(
        "fp32 path", "text", "the fastest float32 runtime of the same architecture", group=TIMING)
    fp32_latency_ms: float | None = shown(
        "fp32 ms", "ms", "median time of one batch on that float32 path", group=TIMING)
    fp32_speedup: float | None = shown(
        "vs fp32", "times", "this architecture's fastest float32 latency divided by this version's latency: "
        "what its runtime (int8 kernels, say) gains over the best float path", group=TIMING)
    speedup: float | None = shown(
        "vs ref.", "times", "the reference's fastest float32 latency divided by this version's latency: "
        "compression and runtime together", group=TIMING)
    latency_min_ms: float | None = None  # the fastest of the timed runs, own runtime
    fp32_latency_min_ms: float | None = None
    batch: int | None = None  # samples in the timed batch
    threads: int | None = None  # intra-op threads given to every runtime


def profile_figures(p: Profile, *, reference_fp32_ms: float | None) -> dict:
    """The cost and latency fields of a profile; speed-up against the reference's best fp32 path."""
    latency, fp32 = p.latency, p.latency.fp32
    return {
        "scheme": p.cost.scheme, "params": p.cost.params, "macs": p.cost.macs, "bytes": p.cost.bytes,
        "runtime": latency.runtime, "latency_ms": latency.own.median_ms, "latency_min_ms": latency.own.min_ms,
        "fp32_runtime": latency.fp32_runtime,
        "fp32_latency_ms": fp32.median_ms if fp32 else None, "fp32_latency_min_ms": fp32.min_ms if fp32 else None,
        "fp32_speedup": fp32.median_ms / latency.own.median_ms if fp32 else None,
        "speedup": reference_fp32_ms / latency.own.median_ms if reference_fp32_ms else None,
        "batch": p.batch, "threads": latency.threads,
    }
