"""Quantization-aware training (scheme "int8-qat"), deployed on the same ORT kernels as PTQ.

Jacob et al., 2018: train with the rounding in the forward pass so that the weights learn
to live with it. The training runs on the batch-norm-folded copy that post-training
quantization exports, rounded as `fakequant` mirrors ORT; it starts from PTQ itself (the
ranges calibrated on the same samples, min-max). Afterwards the trained float weights and
the learned activation ranges go to ORT's static quantizer as explicit scales and zero
points (TensorQuantOverrides) rather than being written into a finished QDQ graph: ORT
derives each int32 bias from its input's scale, which a scale patched in afterwards would
leave inconsistent. The graph is therefore PTQ's graph, node for node, with what QAT learned.

The trained weights also go back into a copy of the input module, each folded batch-norm
set to pass its conv's output through unchanged: that copy is what `ll.save` stores, and
folding it gives back the weights the graph was quantized from, so the twin rebuilds.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.optimization import matches_module_pattern

from leanlens.compression.checks import check_labels, labelled
from leanlens.compression.fakequant import (
    ActivationRange,
    RoundedWeights,
    calibrate,
    fake_quantized,
    learned_roundings,
    observers,
)
from leanlens.compression.finetune import shuffled_batches
from leanlens.compression.onnx_export import fold_batchnorm, quiet_onnx_tools, to_onnx
from leanlens.data import Dataset
from leanlens.errors import BadOption
from leanlens.explain.options import real

# the conv-bn pairs that torch.fx's `fuse` folds (fold_batchnorm), in its order
FOLDED_PATTERNS = [(nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d),
                   (nn.Linear, nn.BatchNorm1d)]
MATCHING_SAMPLES = 16  # inputs on which the graph's rounded tensors are found among torch's nodes
# Adam's step on the ranges' log-scales: at most about this fraction of a range per step, whatever
# the weights' learning rate (a range is one number that every value of its tensor pulls on)
RANGE_LR = 3e-2


class Training(NamedTuple):
    """What QAT trains on, and how long."""

    data: Dataset
    epochs: float
    lr: float
    on_step: Callable[[int, int], None] | None


class Trained(NamedTuple):
    """The outcome: the input architecture with trained weights, its folded copy and graphs."""

    source: nn.Module
    folded: fx.GraphModule
    fp32_onnx: bytes
    int8_onnx: bytes
    simulated: fx.GraphModule  # the trained fake-quantized model
    losses: list[float]  # training loss at each step
    start: dict[str, dict]  # the calibrated ranges training started from, as ORT overrides
    learned: dict[str, dict]  # the ranges it ended with: those of `int8_onnx`


def training_options(scheme: str, data, epochs, lr, on_step, calibrate_method: str) -> Training | None:
    """The checked training options of scheme "int8-qat"; refused for the other schemes."""
    if scheme != "int8-qat":
        given = [name for name, value in (("epochs", epochs), ("lr", lr), ("on_step", on_step)) if value is not None]
        if given:
            raise BadOption(f"{given[0]} works with scheme='int8-qat', not {scheme!r}",
                            f"quantize with scheme='int8-qat', or leave {given[0]} out")
        return None
    if calibrate_method != "minmax":
        raise BadOption(f"scheme='int8-qat' learns its ranges from min-max ones, not {calibrate_method!r}",
                        "leave calibrate_method out with int8-qat")
    dataset = labelled(data, "scheme='int8-qat' trains")
    epochs = real("epochs", 1.0 if epochs is None else epochs, "use a positive number of passes, e.g. 1.0",
                  low=0.0, strict=True)
    lr = real("lr", 1e-4 if lr is None else lr, "use a positive learning rate such as 1e-4", low=0.0, strict=True)
    if on_step is not None and not callable(on_step):
        raise BadOption(f"on_step={on_step!r}", "pass a function on_step(done, total), or leave it out")
    return Training(dataset, epochs, lr, on_step)


def train_int8(source: nn.Module, folded: fx.GraphModule, fp32_onnx: bytes, training: Training,
               calibration: np.ndarray, batch_size: int, seed: int = 0) -> Trained:
    """Quantization-aware training of `folded` (the folded `source`) and its int8 graph."""
    # PTQ's own static quantizer, imported here because quantize.py dispatches to this module
    from leanlens.compression.quantize import _prepared, _quantize_static

    check_labels(folded, training.data)
    with tempfile.TemporaryDirectory() as tmp, quiet_onnx_tools():
        prepared = _prepared(fp32_onnx, Path(tmp))[1].read_bytes()
    ptq = _quantize_static(fp32_onnx, calibration, batch_size, "minmax", [])
    model = fake_quantized(folded, prepared, ptq, calibration[:MATCHING_SAMPLES])
    calibrate(model, calibration, batch_size)
    start = learned_roundings(model)
    for observer in observers(model):
        observer.learn_range()
    losses = _train(model, training, batch_size, seed)
    trained_source = _written_back(source, _unwrapped(model))
    trained_folded = fold_batchnorm(trained_source)
    trained_fp32 = to_onnx(trained_folded, torch.as_tensor(calibration[:1]))
    learned = learned_roundings(model)
    int8 = _quantize_static(trained_fp32, calibration, batch_size, "minmax", [], overrides=learned)
    return Trained(trained_source, trained_folded, trained_fp32, int8, model, losses, start, learned)


def _train(model: fx.GraphModule, training: Training, batch_size: int, seed: int) -> list[float]:
    """AdamW on cross-entropy with a cosine decay: the weights at `lr`, the activation ranges at
    RANGE_LR; batch-norms left in float stay frozen (their statistics are those of the float model
    the graph computes)."""
    data = training.data
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    ranges = [p for observer in observers(model) for p in (observer.log_scale, observer.zero_point)]
    weights = [p.requires_grad_(True) for p in model.parameters() if all(p is not r for r in ranges)]
    total = max(1, round(training.epochs * int(np.ceil(len(data) / batch_size))))
    optimizer = torch.optim.AdamW([{"params": weights, "lr": training.lr}, {"params": ranges, "lr": RANGE_LR}],
                                  weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    batches = shuffled_batches(np.random.default_rng(seed), len(data), batch_size)
    losses = []
    for step in range(total):
        rows = next(batches)
        loss = F.cross_entropy(model(torch.as_tensor(data.x[rows])), torch.as_tensor(data.y[rows]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if training.on_step is not None:
            training.on_step(step + 1, total)
    model.eval()
    return losses


def _unwrapped(model: fx.GraphModule) -> dict[str, torch.Tensor]:
    """The trained weights under the folded module's names, without the rounding wrappers and observers."""
    wrapped = {f"{name}.layer.": f"{name}." for name, m in model.named_modules() if isinstance(m, RoundedWeights)}
    state = {}
    for key, value in model.state_dict().items():
        if isinstance(model.get_submodule(key.rsplit(".", 1)[0]), ActivationRange):
            continue
        prefix = next((p for p in wrapped if key.startswith(p)), None)
        state[key if prefix is None else wrapped[prefix] + key[len(prefix):]] = value.detach().clone()
    return state


def _written_back(source: nn.Module, trained: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `source` holding the trained folded weights: each folded conv takes its weight
    and bias, and its batch-norm becomes the identity (running mean carrying the folded bias,
    so that a conv without a bias and a norm without affine parameters still hold it)."""
    result = copy.deepcopy(source).eval()
    pairs = folded_pairs(result)
    own = result.state_dict()
    with torch.no_grad():
        for key, value in trained.items():
            if key in own and own[key].shape == value.shape:
                own[key].copy_(value)
        for conv_name, norm_name in pairs.items():
            conv, norm = result.get_submodule(conv_name), result.get_submodule(norm_name)
            if conv.bias is not None:
                conv.bias.zero_()
            # folding computes bias = (conv bias − mean) · w / sqrt(var + eps) + b, weight · w / sqrt(var + eps)
            norm.running_mean.copy_(-trained[f"{conv_name}.bias"])
            norm.running_var.fill_(1.0 - norm.eps)
            if norm.affine:
                norm.weight.fill_(1.0)
                norm.bias.zero_()
    return result


def folded_pairs(module: nn.Module) -> dict[str, str]:
    """conv (or linear) name → the batch-norm name that `fold_batchnorm` folds into it."""
    traced = fx.symbolic_trace(module)
    modules = dict(traced.named_modules())
    pairs = {}
    for pattern in FOLDED_PATTERNS:
        for node in traced.graph.nodes:
            if matches_module_pattern(pattern, node, modules) and len(node.args[0].users) == 1 \
                    and modules[node.target].track_running_stats:
                pairs[node.args[0].target] = node.target
    return pairs
