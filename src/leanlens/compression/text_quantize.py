"""Exporting and quantizing a transformer text classifier (leanlens.text.TextClassifier).

The fx trace that exports the other models cannot follow a transformers BERT (its forward
branches on Python values), so the text model takes the TorchScript exporter directly, with
dynamic batch and token axes and int64 ids as its one input. The dynamo exporter is not used:
it needs the onnxscript package, which leanlens does not depend on.

What each scheme rounds: "int8" rounds the inputs of every MatMul (the attention products and
the linear layers) and of the head's Gemm with static QDQ pairs calibrated on token ids, and
leaves their outputs float; "int8-qat" is that graph after training with that rounding
(compression/text_qat.py); `max_drop` sends the MatMuls that hurt most back to float
(compression/text_fallback.py); "int8-dynamic"
turns the linear layers into MatMulInteger, leaving the two activation × activation products
of each attention layer in float; "int4-weight" stores the linear layers' weights in 4-bit
blocks (MatMulNBits). In all three the embedding tables (most of the file) stay float.

The quantized model runs forward only: there is no int8 twin of a transformer, so gradient
and CAM methods are refused in one line; black-box methods explain the ONNX graph itself.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from leanlens.compression.checks import calibration_inputs
from leanlens.compression.int4 import quantize_int4
from leanlens.compression.onnx_export import quiet_onnx_tools
from leanlens.compression.qat import Training
from leanlens.compression.quantize import (
    _accuracy_guard,
    _prepared,
    _quantize_dynamic,
    _quantize_static,
    _unlabelled,
)
from leanlens.compression.text_fallback import within_drop_graph
from leanlens.errors import BadInput
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.torch_model import TorchModel, inference
from leanlens.text.classifier import TextClassifier

# the operators static int8 quantizes in a transformer: rounding LayerNorm, Softmax or GELU
# inputs costs accuracy and saves no time, since ORT has no integer kernels for them
STATIC_OPS = ["MatMul", "Gemm"]
# ... and their outputs stay float: ORT then fuses each into MatMulIntegerToFloat rather than
# QLinearMatMul. Rounding the outputs put the feed-forward layers' outputs, where BERT's outlier
# dimensions live (values to 190 among values of about 1), on one uint8 grid: on the VADER task
# that was most of static int8's loss (benchmarks/RESULTS.md, "Text quantization").
STATIC_OPTIONS = {"OpTypesToExcludeOutputQuantization": STATIC_OPS}


def quantize_text(model: TorchModel, data, scheme: str, *, calibration_samples: int, batch_size: int,
                  calibrate_method: str, max_drop: float | None, training: Training | None) -> OnnxModel:
    """`ll.quantize` for a TextClassifier; its options are checked there (`training` for "int8-qat")."""
    guard = _accuracy_guard(data, max_drop, scheme)
    calibration = calibration_inputs(_unlabelled(data), calibration_samples)
    module = model.module
    module.checked_ids(torch.as_tensor(calibration))  # every calibration row, before any export
    if scheme in ("int8", "int8-qat") and len(calibration) < 2:
        raise BadInput(f"scheme={scheme!r} calibrates activation ranges, and one sample has no range to speak of",
                       "pass more samples (256 is the default calibration_samples)")

    def static(fp32_onnx: bytes, float_nodes: list[str], overrides: dict | None = None) -> bytes:
        return _quantize_static(fp32_onnx, calibration, batch_size, calibrate_method, float_nodes, STATIC_OPS,
                                symbolic_shapes=False, overrides=overrides, extra_options=STATIC_OPTIONS)

    if scheme == "int8-qat":
        # imported here, not at the top: text_qat imports this module
        from leanlens.compression.text_qat import train_text_int8

        trained = train_text_int8(module, training, calibration, batch_size,
                                  lambda graph, learned: static(graph, [], learned))
        return OnnxModel(trained.int8_onnx, fp32=OnnxModel(trained.fp32_onnx))
    fp32_onnx = text_to_onnx(module, calibration[:1])
    # ORT's symbolic shape inference gives up on this graph; ONNX's own is enough for the MatMuls
    if scheme == "int8-dynamic":
        low_bit_onnx = _quantize_dynamic(fp32_onnx, symbolic_shapes=False)
    elif scheme == "int4-weight":
        low_bit_onnx = quantize_int4(fp32_onnx)
    else:
        low_bit_onnx = static(fp32_onnx, [])
        if guard is not None:
            low_bit_onnx = within_drop_graph(fp32_onnx, low_bit_onnx, *guard, lambda nodes: static(fp32_onnx, nodes))
    return OnnxModel(low_bit_onnx, fp32=OnnxModel(fp32_onnx))


def prepared_graph(fp32_onnx: bytes) -> bytes:
    """The float graph as ORT's quantizer sees it, after its pre-processing: its tensor names are
    the ones that TensorQuantOverrides and nodes_to_exclude refer to."""
    with tempfile.TemporaryDirectory() as tmp, quiet_onnx_tools():
        return _prepared(fp32_onnx, Path(tmp), symbolic_shapes=False)[1].read_bytes()


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
