"""Static int8 post-training quantization, deployed on ONNX Runtime.

Why ONNX Runtime rather than torchao's pt2e flow: ORT's QDQ graphs fuse into real
integer kernels (QLinearConv, QLinearAdd, QGemm) at load time on any x86 CPU, with no
compile step, and the result is a deployable file. On this project's AVX2 CPU, U8S8
(unsigned activations, signed per-channel weights) is the fast format.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from leanlens.compression.checks import calibration_inputs, first_scores, torch_model
from leanlens.compression.fallback import within_drop
from leanlens.compression.int4 import quantize_int4
from leanlens.compression.onnx_export import fold_batchnorm, quiet_onnx_tools, to_onnx
from leanlens.compression.qat import train_int8, training_options
from leanlens.compression.twin import int8_twin
from leanlens.data import Dataset, as_dataset, as_inputs
from leanlens.errors import BadInput, BadOption, UnknownMethod, closest
from leanlens.explain.options import positive_int, real
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.torch_model import TorchModel

# int8: static, activation ranges calibrated ahead (QDQ; convs and linear layers);
# int8-dynamic: weights int8 ahead, each linear layer's input rounded to its own range at run time
# (MatMulInteger), the scheme for linear-heavy models; convs stay float
# int4-weight: linear layers' weights in 4-bit blocks (MatMulNBits), activations float
# int8-qat: int8's graph, after quantization-aware training (compression/qat.py)
SCHEMES = ("int8", "int8-dynamic", "int8-qat", "int4-weight")
# how the activation ranges are read off the calibration batches; the names are ONNX Runtime's
# CalibrationMethod members, lower-cased
CALIBRATE_METHODS = ("minmax", "percentile", "entropy")


def quantize(model, data, scheme: str = "int8", *, calibration_samples: int = 256, batch_size: int = 32,
             calibrate_method: str = "minmax", max_drop: float | None = None, epochs: float | None = None,
             lr: float | None = None, on_step=None) -> OnnxModel:
    """An int8 copy of `model`, calibrated on up to `calibration_samples` inputs of `data`
    (a Dataset, an (x, y) pair, or a bare batch x: calibration needs no labels).

    `scheme` is "int8" (static), "int8-dynamic" (linear layers only; each input rounded to its
    own range when it runs) or "int4-weight" (linear layers' weights in 4-bit blocks of 32, float
    activations; refused for conv models, which have no 4-bit kernel). The last two run no
    calibration: `data` only checks the input shape.
    Weights are int8 per output channel, activations uint8 per tensor. `calibrate_method`
    sets their ranges: "minmax" (the observed extremes), "percentile" (clips the rarest
    0.001 %), or "entropy" (the range that keeps the histogram's KL divergence smallest).
    `max_drop` (accuracy points, e.g. 0.5; static int8 only, labelled `data`): when int8 loses
    more than that on `data` against the float graph, the layers whose rounding hurts most run
    in float, one more at a time, until it does not (`compression.float_layers()` lists them).
    "int8-qat" (labelled `data`) first trains the model for `epochs` passes over `data`
    (default 1.0, AdamW at `lr`, default 1e-4, cosine decay; `on_step(done, total)` after each
    batch) with its weights and activations rounded as the int8 graph rounds them, then
    quantizes the trained model with the activation ranges it learned (compression/qat.py).
    The returned model runs on ONNX Runtime and carries a torch twin with the same int8
    weights and input scales, so that gradient and CAM explanations can still be computed.
    Its `fp32` is the float graph it was quantized from, whose own twin is a copy of the
    input module: what `ll.save` needs to rebuild the int8 twin. The input model is not
    changed, training flags included.
    """
    if scheme not in SCHEMES:
        raise UnknownMethod(f"unknown quantization scheme {scheme!r}", closest(str(scheme), SCHEMES))
    if calibrate_method not in CALIBRATE_METHODS:
        raise UnknownMethod(f"unknown calibrate_method {calibrate_method!r}",
                            closest(str(calibrate_method), CALIBRATE_METHODS))
    model = torch_model(model, "quantize")
    guard = _accuracy_guard(data, max_drop, scheme)
    training = training_options(scheme, data, epochs, lr, on_step, calibrate_method)
    batch_size = positive_int("batch_size", batch_size, "use a positive int such as 32")
    calibration = calibration_inputs(_unlabelled(data), calibration_samples)
    source = copy.deepcopy(model.module).eval()
    first_scores(source, calibration)
    if scheme in ("int8", "int8-qat") and len(calibration) < 2:
        raise BadInput(f"scheme={scheme!r} calibrates activation ranges, and one sample has no range to speak of",
                       "pass more samples (256 is the default calibration_samples)")
    folded = fold_batchnorm(source)
    fp32_onnx = to_onnx(folded, torch.as_tensor(calibration[:1]))
    if scheme == "int8-dynamic":
        low_bit_onnx = _quantize_dynamic(fp32_onnx)
    elif scheme == "int4-weight":
        low_bit_onnx = quantize_int4(fp32_onnx)
    elif scheme == "int8-qat":
        trained = train_int8(source, folded, fp32_onnx, training, calibration, batch_size)
        source, folded, fp32_onnx, low_bit_onnx = trained.source, trained.folded, trained.fp32_onnx, trained.int8_onnx
    else:
        def requantize(float_nodes: list[str]) -> bytes:
            return _quantize_static(fp32_onnx, calibration, batch_size, calibrate_method, float_nodes)

        low_bit_onnx = requantize([])
        if guard is not None:
            low_bit_onnx = within_drop(folded, fp32_onnx, low_bit_onnx, *guard, requantize)
    fp32 = OnnxModel(fp32_onnx, twin=TorchModel(source))
    return OnnxModel(low_bit_onnx, twin=TorchModel(int8_twin(folded, low_bit_onnx)[0]), fp32=fp32)


def _accuracy_guard(data, max_drop, scheme: str) -> tuple[Dataset, float] | None:
    """The labelled data and the drop that `max_drop` asks to keep, checked before any work."""
    if max_drop is None:
        return None
    drop = real("max_drop", max_drop, "use accuracy points of at least 0, e.g. max_drop=0.5", low=0)
    if scheme != "int8":
        raise BadOption(f"max_drop works with scheme='int8', not {scheme!r}",
                        "quantize with scheme='int8', or leave max_drop out")
    if isinstance(data, (np.ndarray, torch.Tensor)):
        raise BadInput("max_drop needs labels to measure accuracy, and data is a bare batch",
                       "pass (x, y) or a Dataset")
    return as_dataset(data), drop


def _unlabelled(data) -> np.ndarray:
    """The inputs of `data`: post-training quantization needs no labels, so a bare batch will do."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return as_inputs(data)
    return as_dataset(data).x


def _quantize_static(fp32_onnx: bytes, calibration: np.ndarray, batch_size: int, calibrate_method: str,
                     float_nodes: list[str], overrides: dict | None = None) -> bytes:
    """The static QDQ graph; `overrides` (ORT's TensorQuantOverrides) fixes some tensors' scales."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if calibrate_method != "minmax" and len(calibration) > batch_size:
        # ORT's histogram calibrators stack the batches into one array, so they must be of one size
        calibration = calibration[: len(calibration) - len(calibration) % batch_size]

    class Batches(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {"x": np.ascontiguousarray(batch, dtype=np.float32)}

    with tempfile.TemporaryDirectory() as tmp, quiet_onnx_tools():
        _, prepared, quantized = _prepared(fp32_onnx, Path(tmp))
        quantize_static(
            str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=float_nodes,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[calibrate_method],
            extra_options={"TensorQuantOverrides": overrides or {}},
        )
        return quantized.read_bytes()


def _quantize_dynamic(fp32_onnx: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, quiet_onnx_tools():
        _, prepared, quantized = _prepared(fp32_onnx, Path(tmp))
        # per-channel weights, as in the static scheme; MatMul and Gemm only, since ORT's
        # ConvInteger is slower on CPU than the float conv it replaces
        quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
        graph = quantized.read_bytes()
    if not any(node.op_type == "MatMulInteger" for node in onnx.load_from_string(graph).graph.node):
        raise BadOption("scheme='int8-dynamic' quantizes linear layers (MatMul, Gemm), and this model has none",
                        "use scheme='int8' for convolutional models")
    return graph


def _prepared(fp32_onnx: bytes, folder: Path) -> tuple[Path, Path, Path]:
    """The float graph written to `folder`, shape-inferred and cleaned up, and where the
    quantized one goes. Without the clean-up ORT leaves some layers in float."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    raw, prepared, quantized = (folder / name for name in ("fp32.onnx", "prep.onnx", "int8.onnx"))
    raw.write_bytes(fp32_onnx)
    quant_pre_process(str(raw), str(prepared))
    return raw, prepared, quantized
