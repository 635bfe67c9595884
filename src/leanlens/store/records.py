"""What the store hands back: model versions and the probe set."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leanlens.errors import BadInput
from leanlens.metrics import ExplanationScores

# option arrays up to this size are kept exactly (a baseline image); bigger ones are summarised
_OPTION_ARRAY_LIMIT = 4096


@dataclass(frozen=True)
class Version:
    """One recorded model version."""

    name: str
    created: str  # ISO-8601 UTC
    fingerprint: str  # hash of the weights, computed by the caller
    metrics: dict = field(hash=False)  # JSON scalars only
    parent: str | None = None
    scores: dict[str, ExplanationScores] = field(default_factory=dict, hash=False)  # by method


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous, so identity only
class Explained:
    """One recorded explanation with what it takes to reproduce it."""

    method: str
    values: np.ndarray
    target: np.ndarray | None  # the class explained for each probe sample, if recorded
    options: dict[str, Any]
    scores: ExplanationScores


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous, so identity only
class Probe:
    """The fixed inputs every version is explained on; y and masks are optional."""

    x: np.ndarray
    y: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


_SCALARS = (str, int, float, bool, type(None))


def _scalar(key: str, value):
    """A JSON scalar, with numpy scalars turned into Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, _SCALARS):
        raise BadInput(f"metric {key!r} is a {type(value).__name__}, not a number, "
                       "string, bool or None", "store one scalar per metric name")
    return value


def clean_metrics(metrics) -> dict:
    """Metrics as a plain dict of JSON scalars, or BadInput."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise BadInput(f"metrics is a {type(metrics).__name__}, not a mapping",
                       "pass a dict such as {'accuracy': 0.91}")
    clean = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise BadInput(f"metric name {key!r} is not a string", "use str keys")
        clean[key] = _scalar(key, value)
    return clean



def _option(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "biufU" and arr.size <= _OPTION_ARRAY_LIMIT:
            return arr.tolist()
    return f"<{type(value).__name__}>"  # kept as a note: a callable or a large array is not data


def options_json(options) -> str:
    """An explanation's options as JSON text, arrays included when small enough to keep."""
    if not isinstance(options, Mapping):
        raise BadInput(f"options is a {type(options).__name__}, not a mapping", "pass a dict of keyword options")
    return json.dumps({str(key): _option(value) for key, value in options.items()})
