"""What a model costs: parameters, multiply-accumulates, bytes on disk, CPU latency."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from leanlens.models.onnx_model import OnnxModel
from leanlens.models.torch_model import TorchModel, count_parameters
from leanlens.models.wrap import wrap


@dataclass(frozen=True)
class Profile:
    params: int
    macs: int
    bytes: int  # serialized size: safetensors for torch, the .onnx file for ONNX
    latency_ms: float  # median wall time of predict() on `batch` samples
    batch: int

    def as_dict(self) -> dict:
        return asdict(self)


def profile(model, x: np.ndarray, *, batch: int = 32, repeats: int = 15, warmup: int = 3) -> Profile:
    """Measure `model` on the first `batch` samples of `x` (median of `repeats` runs)."""
    model = wrap(model)
    module = model.module if model.module is not None else None
    example = x[:batch]
    return Profile(
        params=count_parameters(module) if module is not None else 0,
        macs=_macs(module, example[:1]) if module is not None else 0,
        bytes=serialized_bytes(model),
        latency_ms=latency_ms(model, example, repeats=repeats, warmup=warmup),
        batch=len(example),
    )


def serialize(model) -> bytes:
    """The model as deployed: the .onnx file, or the module's weights as safetensors."""
    if isinstance(model, OnnxModel):
        return model.model_bytes
    if isinstance(model, TorchModel):
        from safetensors.torch import save

        state = {k: v.detach().contiguous().cpu() for k, v in model.module.state_dict().items()}
        return save(state)
    return b""


def serialized_bytes(model) -> int:
    return len(serialize(wrap(model)))


def fingerprint(model) -> str:
    """A short content hash of the serialized model: equal weights, equal fingerprint."""
    return hashlib.sha256(serialize(wrap(model))).hexdigest()[:16]


def latency_ms(model, x: np.ndarray, *, repeats: int = 15, warmup: int = 3) -> float:
    for _ in range(warmup):
        model.predict(x, batch_size=len(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=len(x))
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _macs(module, example: np.ndarray) -> int:
    import torch_pruning as tp

    device = next(module.parameters()).device
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(module, torch.as_tensor(example, device=device))
    return int(macs)
