"""What a model costs: parameters, multiply-accumulates, bytes on disk, CPU latency."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.audit.runtimes import Latency, latencies
from leanlens.audit.timing import Clock
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.scheme import scheme_of
from leanlens.models.torch_model import TorchModel, count_parameters
from leanlens.models.wrap import wrap


@dataclass(frozen=True)
class Cost:
    """Size figures; None where the model does not say (a black-box function has no weights to count)."""

    params: int | None
    macs: int | None
    bytes: int | None  # serialized size: safetensors for torch, the .onnx file for ONNX
    scheme: str | None = None  # how ll.quantize made it ("int8", "int8-qat"...); None for float models


@dataclass(frozen=True)
class Profile:
    cost: Cost
    latency: Latency  # on `batch` samples, own runtime and best fp32 path
    batch: int

    @property
    def latency_ms(self) -> float:
        return self.latency.own.median_ms


def cost(model, example: np.ndarray) -> Cost:
    """Size figures of `model`; MACs are counted on one sample of `example`."""
    model = wrap(model)
    module = getattr(model, "module", None)
    if module is None and isinstance(model, OnnxModel):  # a graph without a twin: count its stored values
        return Cost(params=_onnx_values(model.model_bytes), macs=None, bytes=len(model.model_bytes),
                    scheme=scheme_of(model))
    return Cost(
        params=count_parameters(module) if module is not None else None,
        macs=_macs(module, example[:1]) if module is not None else None,
        bytes=serialized_bytes(model),
        scheme=scheme_of(model),
    )


def _onnx_values(model_bytes: bytes) -> int:
    import onnx

    graph = onnx.load_model_from_string(model_bytes).graph
    return sum(int(np.prod(tensor.dims)) for tensor in graph.initializer)


def profile(model, x: np.ndarray, *, batch: int = 32, repeats: int = 15, warmup: int = 3,
            clock: Clock | None = None) -> Profile:
    """Measure `model` on the first `batch` samples of `x` (median of `repeats` interleaved rounds)."""
    model = wrap(model)
    example = x[:batch]
    (latency,) = latencies([model], example, repeats=repeats, warmup=warmup, clock=clock)
    return Profile(cost(model, example), latency, len(example))


def serialize(model) -> bytes | None:
    """The model as deployed: the .onnx file, or the module's weights as safetensors; None for a black box."""
    if isinstance(model, OnnxModel):
        return model.model_bytes
    if isinstance(model, TorchModel):
        from safetensors.torch import save

        state = {k: v.detach().contiguous().cpu() for k, v in model.module.state_dict().items()}
        return save(state)
    return None


def serialized_bytes(model) -> int | None:
    content = serialize(wrap(model))
    return None if content is None else len(content)


def fingerprint(model) -> str:
    """A short content hash of the serialized model: equal weights, equal fingerprint.

    A black-box function has no weights: its fingerprint hashes the function itself (prefixed
    "fn-" so that nobody reads it as a weight hash), so two different functions never share one.
    """
    model = wrap(model)
    content = serialize(model)
    if content is None:
        return "fn-" + hashlib.sha256(_function_identity(model.fn)).hexdigest()[:13]
    return hashlib.sha256(content).hexdigest()[:16]


def _function_identity(fn) -> bytes:
    """What a function is, as bytes: pickled when it can be (a bound estimator method pickles with
    the estimator's fitted state; dumping runs no foreign code), else its name and code."""
    import pickle

    try:
        return pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - lambdas, closures, local functions: pickle refuses them by design
        code = getattr(fn, "__code__", None)
        name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
        parts = [name.encode()] + ([code.co_code, repr(code.co_consts).encode()] if code is not None else [])
        return b"\0".join(parts)


def _macs(module, example: np.ndarray) -> int:
    import torch_pruning as tp

    device = next(module.parameters()).device
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(module, torch.as_tensor(example, device=device))
    return int(macs)
