"""Which runtimes a model can be timed on: its own, and the fp32 paths of the same architecture.

A speed-up only means something against the best way to run the float model. For a
PyTorch model that is eager torch or ONNX Runtime on its batch-norm-folded export,
whichever is faster here; for an int8 model made by `ll.quantize`, the fp32 graph it was
quantized from. Every contender of every model is timed in one interleaved run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.audit.timing import Clock, Timing, interleaved, ort_session, torch_threads
from leanlens.errors import LeanlensError
from leanlens.models.onnx_model import OnnxModel, as_input
from leanlens.models.torch_model import TorchModel

TORCH, ORT, ORT_INT8 = "torch", "onnxruntime", "onnxruntime int8"
# operators that only appear in a quantized graph
_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                  "ConvInteger", "MatMulInteger", "MatMulNBits"}


@dataclass(frozen=True)
class Latency:
    """A model's latency on its own runtime and on the best fp32 path of its architecture."""

    runtime: str
    own: Timing
    fp32_runtime: str | None  # None when no fp32 path of this architecture is known
    fp32: Timing | None
    threads: int


@dataclass(frozen=True)
class Contenders:
    own: str
    fp32: tuple[str, ...]  # runtimes that run the same architecture in float32
    calls: dict[str, Callable[[], object]]


def _ort_call(model_bytes: bytes, x: np.ndarray, threads: int) -> Callable[[], object]:
    session = ort_session(model_bytes, threads)
    feed = {session.get_inputs()[0].name: as_input(session, x)}
    return lambda: session.run(None, feed)


def _torch_contenders(model: TorchModel, x: np.ndarray, threads: int) -> Contenders:
    calls = {TORCH: lambda: model.predict(x, batch_size=len(x))}
    if model.device.type == "cpu":
        calls.update(_exported(model, x, threads))
    return Contenders(TORCH, tuple(calls), calls)


def _exported(model: TorchModel, x: np.ndarray, threads: int) -> dict[str, Callable[[], object]]:
    """ONNX Runtime on the module's batch-norm-folded export, when it exports."""
    from leanlens.compression.onnx_export import fold_batchnorm, to_onnx

    try:
        graph = to_onnx(fold_batchnorm(model.module), torch.as_tensor(x[:1], dtype=torch.float32))
    except (LeanlensError, RuntimeError, torch.onnx.errors.OnnxExporterError) as error:
        # the ONNX row is a second opinion; a model that does not export is still timed on torch
        warnings.warn(f"not timed on ONNX Runtime, export failed: {str(error).splitlines()[0][:160]}",
                      stacklevel=3)
        return {}
    return {ORT: _ort_call(graph, x, threads)}


def is_quantized(model_bytes: bytes) -> bool:
    import onnx

    graph = onnx.load_model_from_string(model_bytes).graph
    return any(node.op_type in _QUANTIZED_OPS for node in graph.node)


def _onnx_contenders(model: OnnxModel, x: np.ndarray, threads: int) -> Contenders:
    if model.fp32 is not None:
        calls = {ORT_INT8: _ort_call(model.model_bytes, x, threads), ORT: _ort_call(model.fp32.model_bytes, x, threads)}
        return Contenders(ORT_INT8, (ORT,), calls)
    if is_quantized(model.model_bytes):  # an int8 file without its float graph: no fp32 path known
        return Contenders(ORT_INT8, (), {ORT_INT8: _ort_call(model.model_bytes, x, threads)})
    return Contenders(ORT, (ORT,), {ORT: _ort_call(model.model_bytes, x, threads)})


def contenders(model, x: np.ndarray, threads: int) -> Contenders:
    """The calls that time `model` on the batch `x`."""
    if isinstance(model, TorchModel):
        return _torch_contenders(model, x, threads)
    if isinstance(model, OnnxModel):
        return _onnx_contenders(model, x, threads)
    # any other adapter: its own predict, and no known float path
    return Contenders(model.framework, (), {model.framework: lambda: model.predict(x)})


def _latency(c: Contenders, timings: dict[str, Timing], threads: int) -> Latency:
    best = min(c.fp32, key=lambda name: timings[name].median_ms, default=None)
    return Latency(c.own, timings[c.own], best, timings.get(best), threads)


def latencies(models: Sequence, x: np.ndarray, *, threads: int | None = None, repeats: int = 15,
              warmup: int = 3, clock: Clock | None = None) -> list[Latency]:
    """Each model's `Latency` on the batch `x`, all contenders timed in one interleaved run.

    Contenders run in a fixed order: model by model, its own runtime first, then its other
    fp32 paths. `threads` (default: torch's current count) is used by torch and ONNX Runtime alike.
    """
    threads = threads or torch.get_num_threads()
    with torch_threads(threads):
        plans = [contenders(model, x, threads) for model in models]
        calls = {(i, name): call for i, plan in enumerate(plans) for name, call in plan.calls.items()}
        timed = interleaved(calls, repeats=repeats, warmup=warmup, clock=clock)
    return [_latency(plan, {name: timed[(i, name)] for name in plan.calls}, threads)
            for i, plan in enumerate(plans)]
