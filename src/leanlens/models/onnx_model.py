"""The ONNX Runtime adapter: an `.onnx` file or session seen as a leanlens `Model`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from leanlens.errors import BadInput
from leanlens.models.base import BLACK_BOX, GRADIENTS, LAYERS


class OnnxModel:
    """A model served by ONNX Runtime on the CPU.

    ONNX Runtime gives no gradients. A compressed model may carry a `twin`: a torch
    module that computes the same function (for int8, the same integer weights and
    activation scales, simulated in float). Gradient and CAM methods then run on the
    twin, while `predict`, latency and size are those of the ONNX model itself.

    A quantized model also keeps `fp32`: the same architecture in float32 on ONNX Runtime,
    the best float path its speed-up is read against.
    """

    framework = "onnx"

    def __init__(self, source: str | os.PathLike | bytes, twin=None, fp32: OnnxModel | None = None):
        import onnxruntime as ort

        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise BadInput(f"no ONNX file at {str(path)!r}", "check the path")
            source = path.read_bytes()
        self.model_bytes = bytes(source)
        options = ort.SessionOptions()
        # ORT's worker threads otherwise busy-wait after each run and starve torch in the
        # same process (seen here: eager torch 5-15x slower next to an idle ORT session).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(self.model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            message = str(error).splitlines()[0][:200]
            raise BadInput(f"ONNX Runtime cannot load this model: {message}", "export it again") from None
        self.input_name = self.session.get_inputs()[0].name
        self.twin = twin
        self.fp32 = fp32
        self.module = twin.module if twin is not None else None

    @property
    def capabilities(self) -> frozenset[str]:
        if self.twin is None:
            return frozenset({BLACK_BOX})
        return frozenset({BLACK_BOX, GRADIENTS, LAYERS})

    def __repr__(self) -> str:
        return f"OnnxModel({len(self.model_bytes):,} bytes, twin={'yes' if self.twin else 'no'})"

    # The twin answers the questions that need a torch module.
    def __getattr__(self, name):
        if name in ("device", "dtype", "to_tensor", "layer") and self.__dict__.get("twin"):
            return getattr(self.twin, name)
        raise AttributeError(name)

    @property
    def input_rank(self) -> int:
        return len(self.session.get_inputs()[0].shape)

    def _check_shape(self, x: np.ndarray) -> None:
        """The batch against the graph's declared input (named axes are free), before ORT sees it."""
        declared = self.session.get_inputs()[0].shape
        fixed = [(axis, size) for axis, size in enumerate(declared[1:], 1) if isinstance(size, int)]
        if x.ndim != len(declared) or any(x.shape[axis] != size for axis, size in fixed):
            shape = tuple(size if isinstance(size, int) else "N" if axis == 0 else "?" for axis, size in enumerate(declared))
            raise BadInput(f"x has shape {tuple(x.shape)} but the ONNX model takes {shape}".replace("'", ""),
                           "pass a batch of the model's input shape")

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        self._check_shape(np.asarray(x))
        outputs = []
        for start in range(0, len(x), batch_size):
            chunk = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
            outputs.append(self.session.run(None, {self.input_name: chunk})[0])
        if not outputs:
            raise BadInput("predict() got an empty batch", "pass at least one sample")
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_bytes(self.model_bytes)
        return path
