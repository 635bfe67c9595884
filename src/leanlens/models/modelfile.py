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

import importlib
import inspect
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from leanlens.errors import BadInput, BadOption, UnsafeFile
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.torch_model import TorchModel
from leanlens.models.wrap import wrap

FORMAT, VERSION = "leanlens-model", 1
META, WEIGHTS, GRAPH, FP32_GRAPH = "meta.json", "weights.safetensors", "model.onnx", "fp32.onnx"
ENTRIES = (META, WEIGHTS, GRAPH, FP32_GRAPH)
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin")
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
REFIT = "re-save the model with ll.save"

# The attributes that hold each layer kind's widths: the ones torch-pruning rewrites.
WIDTHS = (
    (nn.modules.conv._ConvNd, ("in_channels", "out_channels", "groups")),
    (nn.Linear, ("in_features", "out_features")),
    (nn.modules.batchnorm._NormBase, ("num_features",)),
    (nn.GroupNorm, ("num_groups", "num_channels")),
    (nn.LayerNorm, ("normalized_shape",)),
    (nn.Embedding, ("num_embeddings", "embedding_dim")),
)



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
        meta = {"kind": "torch", "architecture": _architecture(model.module, factory, factory_kwargs)}
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
        meta["architecture"] = _architecture(source, factory, factory_kwargs)
        entries[WEIGHTS] = _weights(source)
    return meta, entries


def _weights(module: nn.Module) -> bytes:
    # Copies: safetensors refuses tensors that share memory (tied weights, views).
    return save_safetensors({k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()})


def _architecture(module: nn.Module, factory: str | None, factory_kwargs: dict | None) -> dict:
    if factory is None:
        cls = type(module)
        factory = f"{cls.__module__}:{cls.__qualname__}"
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            raise BadInput(f"{cls.__qualname__} is defined in a script or a function, so no other process can build it",
                           "move the class into an importable module, or pass factory='package.module:callable'")
    if not isinstance(factory, str) or not FACTORY_PATTERN.match(factory):
        raise BadOption(f"factory={factory!r}", "use 'package.module:callable'")
    kwargs = {} if factory_kwargs is None else factory_kwargs
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError):
        raise BadOption(f"factory_kwargs={kwargs!r} is not JSON", "use numbers, strings, lists and dicts") from None
    if not isinstance(kwargs, dict):
        raise BadOption(f"factory_kwargs={kwargs!r}", "pass a dict of keyword arguments")
    return {"factory": factory, "kwargs": kwargs, "widths": _widths(module)}


def _widths(module: nn.Module) -> dict[str, dict]:
    widths = {}
    for name, layer in module.named_modules():
        attributes = _width_attributes(layer)
        if attributes:
            values = {a: list(getattr(layer, a)) if a == "normalized_shape" else getattr(layer, a) for a in attributes}
            widths[name] = {"kind": type(layer).__name__, **values}
    return widths


def _width_attributes(layer: nn.Module) -> tuple[str, ...]:
    return next((attributes for kind, attributes in WIDTHS if isinstance(layer, kind)), ())


def _write(path: Path, entries: dict[str, bytes]) -> Path:
    if not path.parent.is_dir():
        raise BadInput(f"no folder {str(path.parent)!r} to save the model in", "create the folder first")
    # A temporary file beside the target, renamed over it: a crash never leaves half a model file.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path



def load(path: str | os.PathLike) -> TorchModel | OnnxModel:
    """The model `ll.save` wrote to `path`, in eval mode on the CPU.

    Damaged or hostile files are refused in one line (BadInput, or UnsafeFile for entries
    no leanlens file holds and factories that are not torch modules); nothing is extracted.
    """
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
        raise BadInput(f"{path.name} is not a readable leanlens model file ({_first_line(error)})", REFIT) from None
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
        rebuilt = TorchModel(_module(meta, entries))
    elif kind == "onnx":
        rebuilt = _onnx_model(meta, entries)
    else:
        raise BadInput(f"the model file names an unknown kind of model {kind!r}", REFIT)
    if check_against is not None:
        _check_same(rebuilt, check_against)
    return rebuilt


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
    from leanlens.compress.onnx_export import fold_batchnorm
    from leanlens.compress.twin import int8_twin

    return int8_twin(fold_batchnorm(source), int8_graph)


def _module(meta: dict, entries: dict[str, bytes]) -> nn.Module:
    architecture = meta.get("architecture")
    if not isinstance(architecture, dict) or WEIGHTS not in entries:
        raise BadInput(f"the model file lacks the architecture or {WEIGHTS}", REFIT)
    try:
        state = load_safetensors(entries[WEIGHTS])
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise BadInput(f"the model file's weights are damaged ({_first_line(error)})", REFIT) from None
    module = call_factory(architecture.get("factory"), architecture.get("kwargs"), named_by_file=True)
    _resize(module, architecture.get("widths"), state)
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



def call_factory(spec, kwargs, *, named_by_file: bool) -> nn.Module:
    """The module `spec` ("package.module:callable") builds with `kwargs`.

    A factory named by a file (not typed by the user) must be a torch.nn.Module class or a
    function annotated to return one: an arbitrary installed callable would run with the
    file's arguments.
    """
    if not isinstance(spec, str) or not FACTORY_PATTERN.match(spec):
        raise BadInput(f"factory {spec!r} is not of the form 'package.module:callable'", "name an importable callable")
    if not isinstance(kwargs, dict):
        raise BadInput(f"factory arguments {kwargs!r} are not a dict", REFIT)
    module_name, attribute = spec.split(":")
    try:
        factory = importlib.import_module(module_name)
        for part in attribute.split("."):
            factory = getattr(factory, part)
    except Exception as error:  # noqa: BLE001 - importing runs the package's code, which may raise anything
        raise BadInput(f"cannot import the factory {spec!r} ({_first_line(error)})",
                       "install the package that defines it, or fix the name") from None
    if named_by_file and not _builds_a_module(factory):
        raise UnsafeFile(f"the model file names {spec!r}, which is not a torch.nn.Module class",
                         "load only files written by ll.save")
    try:
        module = factory(**kwargs)
    except Exception as error:  # noqa: BLE001 - a user's constructor may raise anything
        raise BadInput(f"the factory {spec!r} failed: {_first_line(error)}",
                       "pass factory_kwargs= with the arguments it needs") from None
    if not isinstance(module, nn.Module):
        raise BadInput(f"the factory {spec!r} returned a {type(module).__name__}, not a torch module",
                       "name a callable that builds the torch.nn.Module")
    return module


def _builds_a_module(factory) -> bool:
    if isinstance(factory, type):
        return issubclass(factory, nn.Module)
    try:
        returns = inspect.signature(factory, eval_str=True).return_annotation
    except Exception:  # noqa: BLE001 - unresolvable annotations: not known to build a module
        return False
    return isinstance(returns, type) and issubclass(returns, nn.Module)


def _resize(module: nn.Module, widths, state: dict[str, torch.Tensor]) -> None:
    """Give each recorded layer its recorded widths, with tensors of the shapes those imply."""
    if not isinstance(widths, dict):
        raise BadInput("the model file records no layer widths", REFIT)
    layers = dict(module.named_modules())
    for name, recorded in widths.items():
        layer = layers.get(name)
        if layer is None or not isinstance(recorded, dict) or recorded.get("kind") != type(layer).__name__:
            raise BadInput(f"the model file records a layer {name!r} that the factory's model lacks", REFIT)
        for attribute in _width_attributes(layer):
            value = recorded.get(attribute)
            value = tuple(value) if isinstance(value, list) else value
            values = value if isinstance(value, tuple) else (value,)
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise BadInput(f"the model file gives layer {name!r} a bad {attribute} {value!r}", REFIT)
            setattr(layer, attribute, value)
        _fit_tensors(name, layer, state)


def _fit_tensors(name: str, layer: nn.Module, state: dict[str, torch.Tensor]) -> None:
    # Shapes are compared before anything is allocated: a hostile width cannot claim memory.
    for tensor_name, shape in _implied_shapes(layer).items():
        current = getattr(layer, tensor_name, None)
        stored = state.get(f"{name}.{tensor_name}" if name else tensor_name)
        if current is None or stored is None:
            continue  # an absent bias; a missing weight is refused by load_weights
        if tuple(stored.shape) != shape:
            raise BadInput(f"the weights of layer {name!r} have shape {tuple(stored.shape)}, "
                           f"but its recorded widths imply {shape}", REFIT)
        if tuple(current.shape) != shape:
            fresh = torch.empty(shape, dtype=current.dtype)
            if isinstance(current, nn.Parameter):
                setattr(layer, tensor_name, nn.Parameter(fresh, requires_grad=current.requires_grad))
            else:
                setattr(layer, tensor_name, fresh)


def _implied_shapes(layer: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape of each of the layer's tensors that its width attributes determine."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        rows, columns = (layer.in_channels, layer.out_channels) if layer.transposed else (layer.out_channels, layer.in_channels)
        return {"weight": (rows, columns // layer.groups, *layer.kernel_size), "bias": (layer.out_channels,)}
    if isinstance(layer, nn.Linear):
        return {"weight": (layer.out_features, layer.in_features), "bias": (layer.out_features,)}
    if isinstance(layer, nn.modules.batchnorm._NormBase):
        return {t: (layer.num_features,) for t in ("weight", "bias", "running_mean", "running_var")}
    if isinstance(layer, nn.GroupNorm):
        return {"weight": (layer.num_channels,), "bias": (layer.num_channels,)}
    if isinstance(layer, nn.LayerNorm):
        return {"weight": tuple(layer.normalized_shape), "bias": tuple(layer.normalized_shape)}
    if isinstance(layer, nn.Embedding):
        return {"weight": (layer.num_embeddings, layer.embedding_dim)}
    return {}


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """`load_state_dict(strict=True)`, with its failures said in one line and float types kept."""
    expected = module.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    misfit = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    for label, keys in (("lack", missing), ("have extra", unexpected), ("have other shapes for", misfit)):
        if keys:
            raise BadInput(f"{what} {label} {len(keys)} of the model's tensors, e.g. {keys[0]!r}",
                           "build the architecture the weights were saved from")
    for key, tensor in module.state_dict(keep_vars=True).items():
        if tensor.is_floating_point() and state[key].dtype != tensor.dtype:
            tensor.data = tensor.data.to(state[key].dtype)  # a float64 model comes back float64
    module.load_state_dict(state, strict=True)



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
        module = call_factory(spec, {}, named_by_file=False)
        if weights is not None:
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
        raise BadInput(f"cannot load {path.name}: {_first_line(error)}", "check that torch.save wrote it") from None
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
        raise BadInput(f"{path.name} is not readable safetensors ({_first_line(error)})", "save the weights again") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:160]
