"""The table of attribution methods: name → function and what it needs.

A method is a plain function `fn(model, x, target, **options) -> (values, extra)`
registered with `@method(...)`. It receives a checked tensor batch and resolved
targets; validation and building the `Explanation` happen once, in `explain()`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from leanlens.errors import UnknownMethod, closest


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable[..., tuple[Any, dict]]
    family: str
    needs: frozenset[str]
    summary: str

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options and their defaults, read from the function's signature."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


_METHODS: dict[str, MethodSpec] = {}


def method(name: str, *, family: str, needs: Iterable[str] = ()):
    """Register an attribution function under `name`."""

    def register(fn):
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _METHODS[name] = MethodSpec(name, fn, family, frozenset(needs), summary)
        return fn

    return register


def lookup(name: str) -> MethodSpec:
    if not isinstance(name, str) or name not in _METHODS:
        raise UnknownMethod(f"unknown method {name!r}", closest(str(name), _METHODS) + "; see ll.methods()")
    return _METHODS[name]


def methods() -> dict[str, MethodSpec]:
    """Every registered method by name, with its family, needs and options."""
    return dict(sorted(_METHODS.items()))
