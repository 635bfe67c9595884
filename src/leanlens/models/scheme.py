"""Which quantization scheme made an ONNX graph, kept in the graph's own metadata.

PTQ and QAT int8 graphs are the same operators with other scales, so the scheme cannot be
read off the nodes; `ll.quantize` writes it as a metadata property instead. It travels with
the bytes: through `ll.save`, a bare `.onnx` export and a store's recorded figures alike.
"""

from __future__ import annotations

import onnx

KEY = "leanlens.scheme"


def tagged(model_bytes: bytes, scheme: str) -> bytes:
    """The graph with `scheme` written into its metadata (replacing any earlier tag)."""
    model = onnx.load_from_string(model_bytes)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, KEY: scheme})
    return model.SerializeToString()


def scheme_of(model) -> str | None:
    """The scheme `ll.quantize` made `model` with; None for float models and untagged graphs."""
    model_bytes = getattr(model, "model_bytes", None)
    if model_bytes is None:
        return None
    props = onnx.load_from_string(model_bytes).metadata_props
    return next((p.value for p in props if p.key == KEY), None)
