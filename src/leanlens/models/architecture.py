"""How a torch module is rebuilt in another process: a factory plus the widths of its layers.

Pruning changes layer widths (torch-pruning rewrites `out_channels`, `num_features`...), so
a pruned module's weights no longer fit what its class builds. The architecture recorded
here is the factory `"package.module:callable"`, its JSON keyword arguments and every
conv, linear, norm and embedding layer's widths: rebuilding calls the factory, gives each
layer its recorded widths, then loads the weights strictly.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys

import torch
from torch import nn

from leanlens.errors import BadInput, BadOption, UnsafeFile

REFIT = "re-save the model with ll.save"


FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


WIDTHS = (
    (nn.modules.conv._ConvNd, ("in_channels", "out_channels", "groups")),
    (nn.Linear, ("in_features", "out_features")),
    (nn.modules.batchnorm._NormBase, ("num_features",)),
    (nn.GroupNorm, ("num_groups", "num_channels")),
    (nn.LayerNorm, ("normalized_shape",)),
    (nn.Embedding, ("num_embeddings", "embedding_dim")),
)


def architecture(module: nn.Module, factory: str | None, factory_kwargs: dict | None) -> dict:
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
    return {"factory": factory, "kwargs": kwargs, "widths": widths(module)}


def widths(module: nn.Module) -> dict[str, dict]:
    widths = {}
    for name, layer in module.named_modules():
        attributes = width_attributes(layer)
        if attributes:
            values = {a: list(getattr(layer, a)) if a == "normalized_shape" else getattr(layer, a) for a in attributes}
            widths[name] = {"kind": type(layer).__name__, **values}
    return widths


def width_attributes(layer: nn.Module) -> tuple[str, ...]:
    return next((attributes for kind, attributes in WIDTHS if isinstance(layer, kind)), ())


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
    if named_by_file and module_name.split(".")[0] in sys.stdlib_module_names:
        # importing runs a module's code before any check can look at what it defines, and a
        # few standard modules act on import (`antigravity` opens a browser); none builds a model
        raise UnsafeFile(f"the model file names {spec!r}, a standard-library callable, not a model factory",
                         "load only files written by ll.save")
    try:
        factory = importlib.import_module(module_name)
        for part in attribute.split("."):
            factory = getattr(factory, part)
    except Exception as error:  # noqa: BLE001 - importing runs the package's code, which may raise anything
        raise BadInput(f"cannot import the factory {spec!r} ({first_line(error)})",
                       "install the package that defines it, or fix the name") from None
    if named_by_file and not _builds_a_module(factory):
        raise UnsafeFile(f"the model file names {spec!r}, which is not a torch.nn.Module class",
                         "load only files written by ll.save")
    try:
        module = factory(**kwargs)
    except Exception as error:  # noqa: BLE001 - a user's constructor may raise anything
        raise BadInput(f"the factory {spec!r} failed: {first_line(error)}",
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


def resize(module: nn.Module, widths, state: dict[str, torch.Tensor]) -> None:
    """Give each recorded layer its recorded widths, with tensors of the shapes those imply."""
    if not isinstance(widths, dict):
        raise BadInput("the model file records no layer widths", REFIT)
    layers = dict(module.named_modules())
    for name, recorded in widths.items():
        layer = layers.get(name)
        if layer is None or not isinstance(recorded, dict) or recorded.get("kind") != type(layer).__name__:
            raise BadInput(f"the model file records a layer {name!r} that the factory's model lacks", REFIT)
        for attribute in width_attributes(layer):
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


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:160]
