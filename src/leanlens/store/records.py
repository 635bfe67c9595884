"""What the store hands back: model versions and the probe set."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leanlens.errors import BadInput
from leanlens.explain.errorbars import NumericalError
from leanlens.explain.explanation import json_option
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
    # each explanation's own estimate of its numerical error, by method (methods without one left out)
    errors: dict[str, NumericalError] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous, so identity only
class Explained:
    """One recorded explanation with what it takes to reproduce it."""

    method: str
    values: np.ndarray
    target: np.ndarray | None  # the class explained for each probe sample, if recorded
    options: dict[str, Any]
    scores: ExplanationScores
    error: NumericalError | None = None  # the method's estimate of its numerical error, if it has one


PARTS = ("all", "held_out", "replay")


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous, so identity only
class Probe:
    """The fixed inputs every version is explained on; y and masks are optional.

    `held_out` marks the samples that replay fine-tuning must never train on: the gate and
    every similarity figure are read on them, so a model cannot pass by memorising its probes.
    """

    x: np.ndarray
    y: np.ndarray | None = None
    masks: np.ndarray | None = None
    held_out: np.ndarray | None = None  # bool, one a sample; None: all held out

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def part(self, which: str) -> Probe:
        """'all', or only the 'held_out' or the 'replay' samples."""
        if which not in PARTS:
            raise BadInput(f"probe part {which!r} is not one of {', '.join(map(repr, PARTS))}",
                           "use part='held_out' for checks and part='replay' for training")
        held_out = np.ones(len(self), bool) if self.held_out is None else self.held_out
        if which == "all":
            return Probe(self.x, self.y, self.masks, held_out)
        keep = held_out if which == "held_out" else ~held_out
        return Probe(*(None if a is None else a[keep] for a in (self.x, self.y, self.masks, held_out)))


def held_out_split(y, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """A held-out mask for a probe set with labels `y`: `fraction` of each class, at least one, held out."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) < 2:
        raise BadInput(f"labels of shape {y.shape} cannot be split", "pass one label per probe sample, two or more")
    if not 0 < fraction < 1:
        raise BadInput(f"fraction={fraction} is not between 0 and 1", "hold out a share such as 0.5")
    rng = np.random.default_rng(seed)
    held_out = np.zeros(len(y), bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        held_out[members[: max(1, round(fraction * len(members)))]] = True
    return held_out


@dataclass(frozen=True)
class GateRun:
    """One run of the gate: a candidate (by fingerprint) checked against a reference version."""

    id: int
    created: str  # ISO-8601 UTC
    reference: str
    candidate: str  # the candidate's fingerprint
    holds: bool
    verdict: dict = field(hash=False)  # the verdict as JSON: per method scores and thresholds, figures


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


def options_json(options) -> str:
    """An explanation's options as JSON text, arrays included when small enough to keep."""
    if not isinstance(options, Mapping):
        raise BadInput(f"options is a {type(options).__name__}, not a mapping", "pass a dict of keyword options")
    return json.dumps({str(key): json_option(value, _OPTION_ARRAY_LIMIT) for key, value in options.items()})
