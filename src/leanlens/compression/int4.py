"""4-bit weights for linear layers on ONNX Runtime's MatMulNBits kernel.

ORT's weight-only quantizer handles MatMul nodes, while torch exports a Linear layer as a
Gemm: each Gemm with a constant weight is first rewritten as MatMul (+ Add for the bias),
which computes the same thing. Weights are grouped along the input axis into blocks of
`block_size`, each block with its own scale, symmetric around zero (4-bit levels −8..7).
Activations stay float: this scheme shrinks the file and the weight traffic, not the
arithmetic. ONNX Runtime has no 4-bit convolution, so a model with conv layers is refused
rather than reported with its convs silently left in float.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from leanlens.compression.onnx_export import quiet_onnx_tools
from leanlens.errors import BadOption

BLOCK_SIZE = 32  # weights per scale: ORT accepts powers of two from 16


def quantize_int4(fp32_onnx: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    """The graph with every linear layer's weight in 4-bit blocks (MatMulNBits)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load_from_string(fp32_onnx)
    convs = sum(node.op_type == "Conv" for node in model.graph.node)
    if convs:
        raise BadOption(f"scheme='int4-weight' has no 4-bit convolution kernel on ONNX Runtime, and this model "
                        f"has {convs} conv layers", "use scheme='int8' for convolutional models")
    _gemm_to_matmul(model)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True)
    with quiet_onnx_tools():
        quantizer.process()
    quantized = getattr(quantizer.model, "model", quantizer.model)
    if not any(node.op_type == "MatMulNBits" for node in quantized.graph.node):
        raise BadOption("scheme='int4-weight' quantizes linear layers, and this model has none",
                        "use scheme='int8'")
    return quantized.SerializeToString()


def _gemm_to_matmul(model: onnx.ModelProto) -> None:
    """Replace each plain Gemm (alpha = beta = 1, A not transposed, constant B) by MatMul + Add."""
    constants = {t.name: t for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0 \
            and attributes.get("transA", 0) == 0
        if node.op_type != "Gemm" or not plain or node.input[1] not in constants:
            nodes.append(node)
            continue
        if attributes.get("transB", 0):
            weight = constants[node.input[1]]
            weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), weight.name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], node.input[1]], [product], name=node.name))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def dequantize_nbits(node, constants) -> np.ndarray:
    """The float weight (N, K) a MatMulNBits node computes with: its packed 4-bit values, less
    their zero point (8 when the graph stores none), times their block's scale."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k, n, block = attributes["K"], attributes["N"], attributes["block_size"]
    packed = constants[node.input[1]].reshape(n, -1)
    levels = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1).astype(np.float32)
    scales = constants[node.input[2]].reshape(n, -1).astype(np.float32)
    zero = 8.0
    if len(node.input) > 3 and node.input[3]:
        raise BadOption("this int4 graph stores zero points, which leanlens does not read",
                        "quantize with ll.quantize(..., scheme='int4-weight')")
    weight = (levels - zero) * np.repeat(scales, block, axis=1)
    return weight[:, :k]
