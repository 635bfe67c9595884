"""How a model travels to Ray's workers: as file bytes that leanlens already knows how to read safely.

- torch modules and ONNX models (also int8 ones with their twin) as leanlens' model file
  (`ll.save`): weights in safetensors, the architecture as a factory name, never a pickle;
- scikit-learn estimators and pipelines as skops bytes, read back with the same
  trusted-types check as `leanlens reasons` (scikit-learn classes only);
- a function of a batch (a black box) as Ray ships any task's function, with cloudpickle:
  it is the caller's own code running on the caller's cluster, and no file is involved.

Keras models are refused for now: a `.keras` file reader is still to come (issue 16).
Each worker reads a parcel once and keeps the model for the next shards it is given.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from leanlens.errors import BadInput, MissingCapability

MODEL_FILE, SKOPS, AS_IS = "leanlens-model", "skops", "as-is"
_unpacked: dict[str, object] = {}  # a worker's models by parcel digest (Ray reuses its worker processes)


@dataclass(frozen=True)
class Parcel:
    """A model as the workers receive it: its kind and its bytes (or, for a function, itself)."""

    kind: str
    payload: object
    digest: str


def pack(model) -> Parcel:
    """The parcel for `model` (anything `ll.wrap` or `ll.reasons` takes); refused in one line if it cannot travel."""
    from leanlens.models.keras_model import KerasModel, is_keras_model
    from leanlens.models.sklearn_model import SklearnModel, is_estimator

    if is_keras_model(model) or isinstance(model, KerasModel):
        raise MissingCapability("engine='ray' cannot send a Keras model to its workers yet",
                                "run it in this process (engine=None), or export it to ONNX and pass the .onnx file")
    if isinstance(model, SklearnModel):
        model = model.estimator
    if is_estimator(model):
        return _parcel(SKOPS, _skops_bytes(model))
    if _is_file_model(model):
        return _parcel(MODEL_FILE, _model_file_bytes(model))
    return _parcel(AS_IS, model)


def unpack(parcel: Parcel):
    """The model a parcel holds; a file is read once a process."""
    if parcel.kind == AS_IS:
        return parcel.payload
    if parcel.digest not in _unpacked:
        _unpacked.clear()  # one model at a time: a worker serves one job's shards
        _unpacked[parcel.digest] = _read(parcel)
    return _unpacked[parcel.digest]


def _parcel(kind: str, payload) -> Parcel:
    digest = hashlib.blake2b(payload, digest_size=16).hexdigest() if isinstance(payload, bytes) else ""
    return Parcel(kind, payload, digest)


def _is_file_model(model) -> bool:
    import os

    import torch

    from leanlens.models.onnx_model import OnnxModel
    from leanlens.models.torch_model import TorchModel

    return isinstance(model, (torch.nn.Module, TorchModel, OnnxModel)) or (
        isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == ".onnx")


def _model_file_bytes(model) -> bytes:
    from leanlens.models.modelfile import save

    with tempfile.TemporaryDirectory(prefix="leanlens-ray-") as folder:
        try:
            path = save(model, Path(folder) / "model.leanlens")
        except BadInput as error:
            raise BadInput(f"engine='ray' sends the model as a leanlens model file, and {error.problem}",
                           "make the module's class importable and buildable without arguments, "
                           "or run it in this process (engine=None)") from None
        return path.read_bytes()


def _skops_bytes(estimator) -> bytes:
    try:
        import skops.io as sio
    except ImportError:
        raise MissingCapability("engine='ray' sends scikit-learn models as skops files, and skops is not installed",
                                "pip install 'leanlens[sklearn]'") from None
    payload = sio.dumps(estimator)
    _read(Parcel(SKOPS, payload, ""))  # refused here, in one line, rather than on every worker
    return payload


def _read(parcel: Parcel):
    with tempfile.TemporaryDirectory(prefix="leanlens-ray-") as folder:
        path = Path(folder) / ("model.skops" if parcel.kind == SKOPS else "model.leanlens")
        path.write_bytes(parcel.payload)
        if parcel.kind == SKOPS:
            from leanlens.insight.files import load_skops

            return load_skops(path)
        from leanlens.models.modelfile import load

        return load(path)
