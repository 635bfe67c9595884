"""Exporting and quantizing a transformer text classifier (leanlens.text.TextClassifier).

The fx trace that exports the other models cannot follow a transformers BERT (its forward
branches on Python values), so the text model takes the TorchScript exporter directly, with
dynamic batch and token axes and int64 ids as its one input. The dynamo exporter is not used:
it needs the onnxscript package, which leanlens does not depend on.

What each scheme rounds: "int8" puts static QDQ pairs around every MatMul (the attention
products and the linear layers) and the head's Gemm, calibrated on token ids; "int8-dynamic"
turns the linear layers into MatMulInteger, leaving the two activation × activation products
of each attention layer in float; "int4-weight" stores the linear layers' weights in 4-bit
blocks (MatMulNBits). In all three the embedding tables (most of the file) stay float.

The quantized model runs forward only: there is no int8 twin of a transformer, so gradient
and CAM methods are refused in one line; black-box methods explain the ONNX graph itself.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from leanlens.compression.checks import calibration_inputs
from leanlens.compression.int4 import quantize_int4
from leanlens.compression.quantize import (
    _quantize_dynamic,
    _quantize_static,
    _unlabelled,
)
from leanlens.errors import BadInput, BadOption
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.torch_model import TorchModel, inference
from leanlens.text.classifier import TextClassifier

# the operators static int8 quantizes in a transformer: rounding LayerNorm, Softmax or GELU
# inputs costs accuracy and saves no time, since ORT has no integer kernels for them
STATIC_OPS = ["MatMul", "Gemm"]


def quantize_text(model: TorchModel, data, scheme: str, *, calibration_samples: int, batch_size: int,
                  calibrate_method: str, max_drop: float | None) -> OnnxModel:
    """`ll.quantize` for a TextClassifier; its options are checked there, except `max_drop`."""
    if scheme == "int8-qat":  # its fake-quant finds the rounded tensors in an fx trace, which transformers lack
        raise BadOption("scheme='int8-qat' is not available for text models yet",
                        "use scheme='int8-dynamic' (it kept 96.7 % agreement on the VADER task) or 'int8'")
    if max_drop is not None:
        raise BadOption("max_drop is not available for text models: their layers have no int8 twin to rank",
                        "leave max_drop out and compare q.predict with the float model on your data")
    calibration = calibration_inputs(_unlabelled(data), calibration_samples)
    module = model.module
    module.checked_ids(torch.as_tensor(calibration))  # every calibration row, before any export
    fp32_onnx = text_to_onnx(module, calibration[:1])
    # ORT's symbolic shape inference gives up on this graph; ONNX's own is enough for the MatMuls
    if scheme == "int8-dynamic":
        low_bit_onnx = _quantize_dynamic(fp32_onnx, symbolic_shapes=False)
    elif scheme == "int4-weight":
        low_bit_onnx = quantize_int4(fp32_onnx)
    else:
        low_bit_onnx = _quantize_static(fp32_onnx, calibration, batch_size, calibrate_method, [], STATIC_OPS,
                                        symbolic_shapes=False)
    return OnnxModel(low_bit_onnx, fp32=OnnxModel(fp32_onnx))


def text_to_onnx(module: TextClassifier, example: np.ndarray, opset: int = 17) -> bytes:
    """ONNX bytes of `module` taking int64 ids "x" (batch, tokens), both axes dynamic, giving "scores"."""
    if not isinstance(module, TextClassifier):
        raise BadInput(f"text_to_onnx() exports a leanlens TextClassifier, got {type(module).__name__}",
                       "build the model with leanlens.text.TextClassifier")
    ids = module.checked_ids(torch.as_tensor(example))
    buffer = io.BytesIO()
    with inference(module), warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice and transformers' tracer warnings are not
        # actionable for users: tests/test_text_quantize.py checks the graph against torch instead
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (ids,), buffer, dynamo=False, opset_version=opset,
            input_names=["x"], output_names=["scores"],
            dynamic_axes={"x": {0: "batch", 1: "tokens"}, "scores": {0: "batch"}},
        )
    return buffer.getvalue()
