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

from leanlens.compression.checks import (
    calibration_inputs,
    first_scores,
    labelled,
    torch_model,
)
from leanlens.compression.fallback import within_drop
from leanlens.compression.int4 import quantize_int4
from leanlens.compression.onnx_export import fold_batchnorm, quiet_onnx_tools, to_onnx
from leanlens.compression.qat import train_int8, training_options
from leanlens.compression.twin import int8_twin
from leanlens.data import Dataset, as_dataset, as_inputs
from leanlens.errors import BadInput, BadOption, UnknownMethod, closest
from leanlens.explain.options import positive_int, real
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.scheme import tagged
from leanlens.models.torch_model import TorchModel
from leanlens.text.classifier import is_text_classifier

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
    changed, training flags included. A `leanlens.text.TextClassifier` takes its own export
    path and comes back forward-only, without a twin (see `compression/text_quantize.py`).
    """
    if scheme not in SCHEMES:
        raise UnknownMethod(f"unknown quantization scheme {scheme!r}", closest(str(scheme), SCHEMES))
    if calibrate_method not in CALIBRATE_METHODS:
        raise UnknownMethod(f"unknown calibrate_method {calibrate_method!r}",
                            closest(str(calibrate_method), CALIBRATE_METHODS))
    model = torch_model(model, "quantize")
    batch_size = positive_int("batch_size", batch_size, "use a positive int such as 32")
    training = training_options(scheme, data, epochs, lr, on_step, calibrate_method)
    if is_text_classifier(model.module):  # transformers do not fx-trace: they have an export path of their own
        # imported here, not at the top: text_quantize imports this module
        from leanlens.compression.text_quantize import quantize_text

        text = quantize_text(model, data, scheme, calibration_samples=calibration_samples, batch_size=batch_size,
                             calibrate_method=calibrate_method, max_drop=max_drop, training=training)
        return OnnxModel(tagged(text.model_bytes, scheme), twin=text.twin, fp32=text.fp32)
    guard = _accuracy_guard(data, max_drop, scheme)
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
    low_bit_onnx = tagged(low_bit_onnx, scheme)  # the store's scheme column reads it back (models/scheme.py)
    return OnnxModel(low_bit_onnx, twin=TorchModel(int8_twin(folded, low_bit_onnx)[0]), fp32=fp32)


def _accuracy_guard(data, max_drop, scheme: str) -> tuple[Dataset, float] | None:
    """The labelled data and the drop that `max_drop` asks to keep, checked before any work."""
    if max_drop is None:
        return None
    drop = real("max_drop", max_drop, "use accuracy points of at least 0, e.g. max_drop=0.5", low=0)
    if scheme != "int8":
        raise BadOption(f"max_drop works with scheme='int8', not {scheme!r}",
                        "quantize with scheme='int8', or leave max_drop out")
    return labelled(data, "max_drop needs labels to measure accuracy"), drop


def _unlabelled(data) -> np.ndarray:
    """The inputs of `data`: post-training quantization needs no labels, so a bare batch will do."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return as_inputs(data)
    return as_dataset(data).x


def _quantize_static(fp32_onnx: bytes, calibration: np.ndarray, batch_size: int, calibrate_method: str,
                     float_nodes: list[str], op_types: list[str] | None = None, symbolic_shapes: bool = True,
                     overrides: dict | None = None, extra_options: dict | None = None) -> bytes:
    """The static QDQ graph; `op_types` limits which operators are quantized (None: all ORT can);
    `overrides` (ORT's TensorQuantOverrides) fixes some tensors' scales; `extra_options` adds ORT's others."""
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

    graph_input = onnx.load_from_string(fp32_onnx).graph.input[0]  # float images, or integer token ids
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {"x": np.ascontiguousarray(batch, dtype=dtype)}

    with tempfile.TemporaryDirectory() as tmp, quiet_onnx_tools():
        _, prepared, quantized = _prepared(fp32_onnx, Path(tmp), symbolic_shapes)
        quantize_static(
            str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=float_nodes,
            op_types_to_quantize=op_types,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[calibrate_method],
            extra_options={**(extra_options or {}), "TensorQuantOverrides": overrides or {}},
        )
        return quantized.read_bytes()


def _quantize_dynamic(fp32_onnx: bytes, symbolic_shapes: bool = True) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, quiet_onnx_tools():
        _, prepared, quantized = _prepared(fp32_onnx, Path(tmp), symbolic_shapes)
        # per-channel weights, as in the static scheme; MatMul and Gemm only, since ORT's
        # ConvInteger is slower on CPU than the float conv it replaces
        quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
        graph = quantized.read_bytes()
    if not any(node.op_type == "MatMulInteger" for node in onnx.load_from_string(graph).graph.node):
        raise BadOption("scheme='int8-dynamic' quantizes linear layers (MatMul, Gemm), and this model has none",
                        "use scheme='int8' for convolutional models")
    return graph


def _prepared(fp32_onnx: bytes, folder: Path, symbolic_shapes: bool = True) -> tuple[Path, Path, Path]:
    """The float graph written to `folder`, shape-inferred and cleaned up, and where the
    quantized one goes. Without the clean-up ORT leaves some layers in float. `symbolic_shapes`
    off skips ORT's symbolic shape inference, which gives up on transformer graphs (and then
    leaves a copy of the model in the working directory); ONNX's own shape inference still runs."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    raw, prepared, quantized = (folder / name for name in ("fp32.onnx", "prep.onnx", "int8.onnx"))
    raw.write_bytes(fp32_onnx)
    quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=not symbolic_shapes)
    return raw, prepared, quantized
