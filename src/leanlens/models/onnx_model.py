"""The ONNX Runtime adapter: an `.onnx` file or session seen as a leanlens `Model`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from leanlens.errors import BadInput, MissingCapability
from leanlens.models.base import BLACK_BOX


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
    stand_in = True  # gradients come from the twin; predictions and black-box methods from ORT

    def __init__(self, source: str | os.PathLike | bytes, twin=None, fp32: OnnxModel | None = None):
        import onnxruntime as ort

        if isinstance(source, (str, os.PathLike)):
            source = read_onnx(Path(source))
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
        self.module = twin.module if twin is not None else None  # for profiling and compression only

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({BLACK_BOX}) | (self.twin.capabilities if self.twin is not None else frozenset())

    def __repr__(self) -> str:
        return f"OnnxModel({len(self.model_bytes):,} bytes, twin={'yes' if self.twin else 'no'})"

    # DifferentiableModel: the twin answers everything that needs gradients.
    @property
    def device(self):
        return self._twin().device

    @property
    def dtype(self):
        return self._twin().dtype

    def to_tensor(self, x):
        return self._twin().to_tensor(x)

    def inference(self, freeze: bool = True):
        return self._twin().inference(freeze)

    def scores(self, x, *, fold_bn: bool = False):
        return self._twin().scores(x, fold_bn=fold_bn)

    def input_gradients(self, x, pick, *, create_graph: bool = False, fold_bn: bool = False):
        return self._twin().input_gradients(x, pick, create_graph=create_graph, fold_bn=fold_bn)

    def default_layer(self, x):
        return self._twin().default_layer(x)

    def layer_gradients(self, x, pick, layer, *, create_graph: bool = False, fold_bn: bool = False):
        return self._twin().layer_gradients(x, pick, layer, create_graph=create_graph, fold_bn=fold_bn)

    def layout(self):
        return self.twin.layout() if self.twin is not None else None

    def _twin(self):
        if self.twin is None:
            raise MissingCapability("an ONNX model without a torch twin gives no gradients",
                                    "use a black-box method such as 'occlusion'")
        return self.twin

    def _check_shape(self, x: np.ndarray) -> None:
        """The batch against the graph's declared input (named axes are free), before ORT sees it."""
        declared = self.session.get_inputs()[0].shape
        if x.ndim != len(declared):
            hint = "add a batch axis: x[None]" if x.ndim == len(declared) - 1 else "pass a batch of the model's input shape"
            raise BadInput(f"x has {x.ndim} axes {tuple(x.shape)} but the ONNX model takes {len(declared)}", hint)
        fixed = [(axis, size) for axis, size in enumerate(declared[1:], 1) if isinstance(size, int)]
        if any(x.shape[axis] != size for axis, size in fixed):
            shape = tuple(size if isinstance(size, int) else "N" if axis == 0 else "?" for axis, size in enumerate(declared))
            raise BadInput(f"x has shape {tuple(x.shape)} but the ONNX model takes {shape}".replace("'", ""),
                           "pass a batch of the model's input shape")

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class scores (N, classes), not labels: `predict(x).argmax(1)` gives the classes."""
        self._check_shape(np.asarray(x))
        outputs = []
        for start in range(0, len(x), batch_size):
            chunk = as_input(self.session, x[start : start + batch_size])
            outputs.append(self.session.run(None, {self.input_name: chunk})[0])
        if not outputs:
            raise BadInput("predict() got an empty batch", "pass at least one sample")
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_bytes(self.model_bytes)
        return path


# ONNX Runtime's names of the input types leanlens feeds: float scores models, integer token ids
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def as_input(session, x: np.ndarray) -> np.ndarray:
    """`x` in the dtype the session's input declares. Datasets hold x as float32: token ids for an
    integer input pass when they are whole numbers (exact below 2**24), and are refused otherwise."""
    dtype = INPUT_TYPES.get(session.get_inputs()[0].type, np.float32)
    x = np.asarray(x)
    if np.issubdtype(dtype, np.integer) and x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        raise BadInput("x holds fractions, but this ONNX model takes integer token ids",
                       "pass token ids, e.g. from leanlens.text.tokenize")
    return np.ascontiguousarray(x, dtype=dtype)


def read_onnx(path: Path) -> bytes:
    """The model as one self-contained graph. Weights saved as external data next to the file
    (`onnx.save(..., save_as_external_data=True)`) are read in, from the file's folder only."""
    import onnx
    from onnx.external_data_helper import (
        load_external_data_for_model,
        uses_external_data,
    )

    if not path.is_file():
        raise BadInput(f"no ONNX file at {str(path)!r}", "check the path")
    raw = path.read_bytes()
    try:
        graph = onnx.load_from_string(raw)
    except Exception:  # noqa: BLE001 - not a protobuf: ONNX Runtime's message says more
        return raw
    if not any(uses_external_data(t) for t in graph.graph.initializer):
        return raw
    _refuse_over_protobuf_limit(path, len(raw), graph)
    try:
        load_external_data_for_model(graph, str(path.parent))
    except Exception as error:  # noqa: BLE001 - a data file missing, or onnx refusing a path outside the folder
        message = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise BadInput(f"cannot read the external data of {path.name}: {message}",
                       "keep the data files in the model's folder, under the names the model gives") from None
    return graph.SerializeToString()


# one protobuf message holds at most 2 GiB; a graph read in whole must fit in one
PROTOBUF_LIMIT = 2**31 - 1


def _refuse_over_protobuf_limit(path: Path, graph_bytes: int, graph) -> None:
    """Refuse, before reading gigabytes, a model whose weights cannot be inlined into one graph."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    total = graph_bytes
    for tensor in (t for t in graph.graph.initializer if uses_external_data(t)):
        info = ExternalDataInfo(tensor)
        length = info.length
        if not length:  # no length recorded: the tensor runs to the end of its file
            data_file = path.parent / info.location
            length = max(data_file.stat().st_size - (info.offset or 0), 0) if data_file.is_file() else 0
        total += length
    if total > PROTOBUF_LIMIT:
        raise BadInput(f"{path.name} holds {total / 2**30:.1f} GiB of weights; leanlens reads an ONNX model as one "
                       "graph, which protobuf caps at 2 GiB", "compress it in PyTorch and pass the module instead")
