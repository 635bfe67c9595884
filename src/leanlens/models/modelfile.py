"""leanlens' model file: one file that `ll.load` turns back into the model `ll.save` was given.

A zip archive of stored (uncompressed) entries, read in memory and never extracted:

- `meta.json`: the format, the kind of model (`torch` or `onnx`) and the architecture,
  a factory `"package.module:callable"` with JSON keyword arguments plus the widths of
  every conv, linear, norm and embedding layer (pruning changes them);
- `weights.safetensors`: the torch module's weights (for an int8 model, those of the float
  module it was quantized from);
- `model.onnx`, `fp32.onnx`: the ONNX graph and the float graph an int8 graph came from.

An int8 model's twin is not stored: loading rebuilds it from the float module and the int8
graph with the function `ll.quantize` used, so it is the same twin. No pickle is read.
Loading imports the factory's module: that runs code from an installed package named in
the file, never code from the file itself; a factory named by a file must be a
`torch.nn.Module` class or a function annotated to return one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from leanlens.errors import BadInput, BadOption, UnsafeFile
from leanlens.models.architecture import (
    FACTORY_PATTERN,
    REFIT,
    architecture,
    call_factory,
    first_line,
    load_weights,
    resize,
)
from leanlens.models.keras_model import KerasModel, is_keras_file, load_keras_file
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.torch_model import TorchModel
from leanlens.models.wrap import wrap

FORMAT, VERSION = "leanlens-model", 1
META, WEIGHTS, GRAPH, FP32_GRAPH = "meta.json", "weights.safetensors", "model.onnx", "fp32.onnx"
ENTRIES = (META, WEIGHTS, GRAPH, FP32_GRAPH)
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin")


def save(model, path: str | os.PathLike, *, factory: str | None = None, factory_kwargs: dict | None = None) -> Path:
    """Write `model` (a torch module, a TorchModel, or an OnnxModel such as `ll.quantize` returns) to `path`.

    Parameters
    ----------
    factory : "package.module:callable" that builds the architecture; by default the module's
        own class. Give it when the class needs arguments, with `factory_kwargs` (JSON values);
        a function must be annotated to return a torch.nn.Module (see the module docstring).

    The file is checked by rebuilding the model from it before it is written, so a model
    whose architecture cannot be rebuilt is refused here rather than when it is loaded.
    """
    model = wrap(model)
    if isinstance(model, TorchModel):
        entries = {WEIGHTS: _weights(model.module)}
        meta = {"kind": "torch", "architecture": architecture(model.module, factory, factory_kwargs),
                "output": _output_choice(model.output)}
    elif isinstance(model, OnnxModel):
        meta, entries = _onnx_entries(model, factory, factory_kwargs)
    else:
        raise BadInput(f"ll.save cannot store a {model.framework} model", "save a torch module or an ONNX model")
    meta = {"format": FORMAT, "version": VERSION, **meta}
    try:
        _rebuild(meta, entries, check_against=model)
    except (BadInput, UnsafeFile) as error:  # said as a saving problem: the file is not written
        raise BadInput(f"ll.save cannot rebuild this model from its file: {error.problem}",
                       "pass factory= and factory_kwargs= that build this architecture") from None
    return _write(Path(path), {META: json.dumps(meta, indent=1).encode(), **entries})


def _output_choice(choice):
    """`ll.wrap(module, output=...)` as JSON: a key or an index; a function has no file form."""
    if callable(choice):
        raise BadInput("ll.save cannot store a function given as output=",
                       "wrap the module with output= a key or an index, or return the scores from forward()")
    return choice


def _onnx_entries(model: OnnxModel, factory, factory_kwargs) -> tuple[dict, dict]:
    fp32 = getattr(model, "fp32", None)
    source = fp32.twin.module if fp32 is not None and fp32.twin is not None else None
    if model.twin is not None and source is None:
        raise BadInput("ll.save cannot rebuild this ONNX model's twin: it has no float module to rebuild it from",
                       "save the model ll.quantize returned, or an OnnxModel without a twin")
    entries = {GRAPH: model.model_bytes}
    if fp32 is not None:
        entries[FP32_GRAPH] = fp32.model_bytes
    meta = {"kind": "onnx", "architecture": None, "twin": "int8" if model.twin is not None else None}
    if source is not None:
        meta["architecture"] = architecture(source, factory, factory_kwargs)
        entries[WEIGHTS] = _weights(source)
    return meta, entries


def _weights(module: nn.Module) -> bytes:
    # Copies: safetensors refuses tensors that share memory (tied weights, views).
    return save_safetensors({k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()})


def _write(path: Path, entries: dict[str, bytes]) -> Path:
    if not path.parent.is_dir():
        raise BadInput(f"no folder {str(path.parent)!r} to save the model in", "create the folder first")
    if path.is_dir():
        raise BadInput(f"{str(path)!r} is a folder", "name the model file, e.g. model.leanlens")
    # A temporary file beside the target, renamed over it: a crash never leaves half a model file.
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise BadInput(f"cannot write in {str(path.parent)!r}: {error.strerror or error}",
                       "save the model in a folder you can write to") from None
    try:
        with os.fdopen(handle, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> TorchModel | OnnxModel | KerasModel:
    """The model `ll.save` wrote to `path`, in eval mode on the CPU; or a Keras `.keras` file's model.

    Damaged or hostile files are refused in one line (BadInput, or UnsafeFile for entries
    no leanlens file holds, factories that are not torch modules, and Keras layers holding
    Python code); nothing is extracted.
    """
    if is_keras_file(path):
        return load_keras_file(path)
    meta, entries = _read(Path(path))
    return _rebuild(meta, entries)


def _read(path: Path) -> tuple[dict, dict[str, bytes]]:
    if not path.is_file():
        raise BadInput(f"no model file at {str(path)!r}", "check the path")
    try:
        with zipfile.ZipFile(path) as archive:
            # read() checks each entry's CRC: a damaged entry raises BadZipFile
            entries = {info.filename: archive.read(info) for info in _checked_infos(archive)}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise BadInput(f"{path.name} is not a readable leanlens model file ({first_line(error)})", REFIT) from None
    if META not in entries:
        raise BadInput(f"{path.name} has no {META}: not a leanlens model file", REFIT)
    try:
        meta = json.loads(entries.pop(META))
    except (UnicodeDecodeError, ValueError):
        raise BadInput(f"{path.name} has a damaged {META}", REFIT) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise BadInput(f"{path.name} is not a leanlens model file of version {VERSION}", REFIT)
    return meta, entries


def _checked_infos(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    names = [info.filename for info in infos]
    for info in infos:
        if info.filename not in ENTRIES or names.count(info.filename) > 1:
            raise UnsafeFile(f"the model file holds an entry {info.filename!r} that ll.save never writes",
                             "load only files written by ll.save")
        # Stored entries cannot be larger than the file itself: no decompression bomb.
        if info.compress_type != zipfile.ZIP_STORED:
            raise UnsafeFile(f"the model file's entry {info.filename!r} is compressed", "load only files written by ll.save")
    return infos


def _rebuild(meta: dict, entries: dict[str, bytes], check_against=None) -> TorchModel | OnnxModel:
    """The model described by `meta` and `entries`; with `check_against`, proof that it equals that model."""
    kind = meta.get("kind")
    if kind == "torch":
        rebuilt = TorchModel(_module(meta, entries), output=_read_output(meta.get("output")))
    elif kind == "onnx":
        rebuilt = _onnx_model(meta, entries)
    else:
        raise BadInput(f"the model file names an unknown kind of model {kind!r}", REFIT)
    if check_against is not None:
        _check_same(rebuilt, check_against)
    return rebuilt


def _read_output(choice):
    if choice is None or (isinstance(choice, (str, int)) and not isinstance(choice, bool)):
        return choice
    raise BadInput(f"the model file names an output {choice!r} that is neither a key nor an index", REFIT)


def _onnx_model(meta: dict, entries: dict[str, bytes]) -> OnnxModel:
    if GRAPH not in entries:
        raise BadInput(f"the model file has no {GRAPH}", REFIT)
    source = _module(meta, entries) if meta.get("architecture") is not None else None
    fp32 = None
    if FP32_GRAPH in entries:
        fp32 = OnnxModel(entries[FP32_GRAPH], twin=TorchModel(source) if source is not None else None)
    twin = None
    if meta.get("twin") == "int8":
        if source is None:
            raise BadInput("the model file names an int8 twin but holds no float module to rebuild it", REFIT)
        twin = TorchModel(_int8_twin(source, entries[GRAPH]))
    return OnnxModel(entries[GRAPH], twin=twin, fp32=fp32)


def _int8_twin(source: nn.Module, int8_graph: bytes) -> nn.Module:
    # The one import from compress/: the twin is rebuilt by the very function ll.quantize used.
    from leanlens.compression.onnx_export import fold_batchnorm
    from leanlens.compression.twin import int8_twin

    return int8_twin(fold_batchnorm(source), int8_graph)[0]


def _module(meta: dict, entries: dict[str, bytes]) -> nn.Module:
    recorded = meta.get("architecture")
    if not isinstance(recorded, dict) or WEIGHTS not in entries:
        raise BadInput(f"the model file lacks the architecture or {WEIGHTS}", REFIT)
    try:
        state = load_safetensors(entries[WEIGHTS])
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise BadInput(f"the model file's weights are damaged ({first_line(error)})", REFIT) from None
    module = call_factory(recorded.get("factory"), recorded.get("kwargs"), named_by_file=True)
    resize(module, recorded.get("widths"), state)
    load_weights(module, state, "the model file's weights")
    return module.eval()


def _check_same(rebuilt, original) -> None:
    """Refuse to write a file whose torch module (or int8 twin) would come back different."""
    if isinstance(original, OnnxModel):
        if original.twin is None:
            return  # the graphs are stored byte for byte
        rebuilt, original = rebuilt.twin, original.twin
    new, old = rebuilt.module.state_dict(), original.module.state_dict()
    if new.keys() != old.keys() or not all(
            new[k].shape == old[k].shape and torch.equal(new[k], old[k].cpu()) for k in new):
        raise BadInput("the model rebuilt from the file differs from the one given", REFIT)


def resolve_model(spec: str | os.PathLike, weights: str | os.PathLike | None = None, trust_pickle: bool = False):
    """The model a command line names: a leanlens model file, an `.onnx` file, a pickled
    module (only with `trust_pickle`), or `package.module:factory` plus a `weights` file
    (safetensors)."""
    path = Path(spec)
    if path.is_file():
        if weights is not None:
            raise BadOption("--weights goes with a 'package.module:factory' model only", "drop --weights")
        return _model_at(path, trust_pickle)
    if isinstance(spec, str) and FACTORY_PATTERN.match(spec):
        if weights is None:  # the factory alone builds random weights: nothing worth explaining
            raise BadOption(f"{spec} needs its weights", "pass --weights file.safetensors")
        module = call_factory(spec, {}, named_by_file=False)
        load_weights(module, _safetensors_file(Path(weights)), f"the weights in {Path(weights).name}")
        return TorchModel(module.eval())
    raise BadInput(f"no model file at {str(spec)!r}",
                   "pass a file from ll.save, an .onnx file, or package.module:factory with --weights")


def _model_at(path: Path, trust_pickle: bool):
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxModel(path)
    if suffix in PICKLE_SUFFIXES:
        return _pickled_module(path, trust_pickle)
    if is_keras_file(path):
        return load_keras_file(path)
    if zipfile.is_zipfile(path):
        return load(path)
    raise BadInput(f"cannot tell what kind of model {path.name} holds",
                   "pass a file from ll.save, an .onnx file, or package.module:factory with --weights")


def _pickled_module(path: Path, trust_pickle: bool) -> TorchModel:
    if not trust_pickle:
        raise UnsafeFile(f"{path.name} is a pickle: loading it runs any code it holds",
                         "save the model with ll.save, or pass --trust-pickle for a file you made yourself")
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - unpickling raises whatever the pickled code raises
        raise BadInput(f"cannot load {path.name}: {first_line(error)}", "check that torch.save wrote it") from None
    if not isinstance(module, nn.Module):
        raise BadInput(f"{path.name} holds a {type(module).__name__}, not a torch module",
                       "for a state dict pass package.module:factory with --weights file.safetensors")
    return TorchModel(module.eval())


def _safetensors_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() != ".safetensors":
        raise BadInput(f"--weights {path.name} is not a .safetensors file", "convert the weights with safetensors")
    if not path.is_file():
        raise BadInput(f"no weights file at {str(path)!r}", "check the path")
    try:
        return load_safetensors(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise BadInput(f"{path.name} is not readable safetensors ({first_line(error)})", "save the weights again") from None

