"""`Explanation`: the result of one attribution method on one batch."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leanlens.errors import BadInput
from leanlens.explain.errorbars import NumericalError, error_from_npz


@dataclass(frozen=True)
class StandInFidelity:
    """A stand-in's scores against the deployed model's, over the explained samples."""

    max_error: float  # largest |stand-in score − deployed score| over samples and classes
    mean_error: float
    agreement: float  # share of samples whose top class is the same in both

    def __str__(self) -> str:
        return (f"stand-in fidelity: top-1 agreement {self.agreement:.1%}, "
                f"score error mean {self.mean_error:.2g}, max {self.max_error:.2g}")


@dataclass(frozen=True)
class Explanation:
    """Attributions for a batch, kept raw (never normalised here).

    `values` has the input's shape, or, for CAM methods, the input's spatial grid
    (N, H, W) upsampled from `layer_values`, the map at the layer's own resolution.
    """

    values: np.ndarray
    method: str
    target: np.ndarray
    predictions: np.ndarray
    options: Mapping[str, Any] = field(default_factory=dict)
    delta: np.ndarray | None = None
    layer_values: np.ndarray | None = None
    score: np.ndarray | None = None  # one number a sample, e.g. LIME's fit R²
    # the stand-in's scores (N, classes) when a gradient method ran on a stand-in for the
    # deployed model (an int8 ONNX graph's float twin); `predictions` are the deployed model's
    stand_in_scores: np.ndarray | None = None
    # a table's column names, one a feature (values[:, j] is column j's), when x was a DataFrame
    feature_names: tuple[str, ...] | None = None
    # Shapley methods: the target's score with every feature off (the baseline's, or the mean over
    # the background rows: shap's `base_values`), so base_values + values.sum(1) = f(x) - delta
    base_values: np.ndarray | None = None
    # the method's estimate of its own numerical error (IG completeness, KernelSHAP standard
    # errors, LIME fit R²); None for a method that has none
    error: NumericalError | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def stand_in_fidelity(self) -> StandInFidelity | None:
        """How closely the stand-in that produced these attributions follows the deployed
        model on the explained samples; None when the deployed model was explained itself."""
        if self.stand_in_scores is None:
            return None
        error = np.abs(self.stand_in_scores.astype(np.float64) - self.predictions)
        agrees = self.stand_in_scores.argmax(1) == self.predictions.argmax(1)
        return StandInFidelity(float(error.max()), float(error.mean()), float(agrees.mean()))

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def to_npz(self, path: str | os.PathLike) -> Path:
        """Save as arrays plus a JSON header; loading never unpickles."""
        arrays = {"values": self.values, "target": self.target, "predictions": self.predictions}
        if self.delta is not None:
            arrays["delta"] = self.delta
        if self.layer_values is not None:
            arrays["layer_values"] = self.layer_values
        if self.score is not None:
            arrays["score"] = self.score
        if self.stand_in_scores is not None:
            arrays["stand_in_scores"] = self.stand_in_scores
        if self.base_values is not None:
            arrays["base_values"] = self.base_values
        if self.error is not None:
            arrays.update(self.error.arrays())
        header = json.dumps({"method": self.method, "options": _jsonable(self.options),
                             "feature_names": None if self.feature_names is None else list(self.feature_names),
                             "error": None if self.error is None else self.error.header()})
        path = npz_path(path)
        try:
            np.savez_compressed(path, header=np.frombuffer(header.encode(), dtype=np.uint8), **arrays)
        except OSError as error:
            raise BadInput(f"cannot write {str(path)!r}: {error.strerror or error}",
                           "check that the folder exists and is writable") from None
        return path

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> Explanation:
        """Load a file written by `to_npz()`; anything else is one BadInput line, never unpickled."""
        arrays = _read_arrays(path)
        header = _read_header(arrays.pop("header", None), path)
        error = error_from_npz(header.get("error"), arrays)
        missing = sorted({"values", "target", "predictions"} - set(arrays))
        unknown = sorted(set(arrays) - set(ARRAY_FIELDS))
        if missing or unknown:
            what = f"no {', '.join(missing)} array" if missing else f"unknown arrays {', '.join(unknown)}"
            raise BadInput(f"{str(path)!r} is not a leanlens explanation: {what}", HINT)
        names = header.get("feature_names")
        return cls(method=header["method"], options=header["options"], error=error,
                   feature_names=tuple(map(str, names)) if isinstance(names, list) else None, **arrays)


HINT = "load only files written by Explanation.to_npz()"
ARRAY_FIELDS = ("values", "target", "predictions", "delta", "layer_values", "score", "stand_in_scores", "base_values")


def _read_arrays(path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not an .npz archive")  # noqa: TRY004 - caught below, reworded
        with archive:
            arrays = {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise BadInput(f"no explanation file at {str(path)!r}", "check the path") from None
    except Exception as error:  # noqa: BLE001 - NumPy, zipfile and zlib each raise their own kinds
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise BadInput(f"cannot read explanation file {str(path)!r}: {reason}", HINT) from None
    text = [k for k, v in arrays.items() if not (np.issubdtype(v.dtype, np.number) or v.dtype == bool)]
    if text:
        raise BadInput(f"{str(path)!r} is not a leanlens explanation: {text[0]!r} holds {arrays[text[0]].dtype}, "
                       "not numbers", HINT)
    return arrays


def _read_header(raw, path) -> dict:
    """The JSON header: a method name and an options mapping."""
    try:
        header = json.loads(raw.tobytes().decode()) if raw is not None and raw.dtype == np.uint8 else None
    except ValueError:  # not UTF-8, or not JSON
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("method"), str) \
            or not isinstance(header.get("options"), dict):
        raise BadInput(f"{str(path)!r} is not a leanlens explanation: no JSON header with a method and options", HINT)
    return header


def npz_path(path: str | os.PathLike) -> Path:
    """The file `to_npz(path)` writes: NumPy adds `.npz` silently, so say it here."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def json_option(value, array_limit: int = 0):
    """One option as a JSON value: scalars as they are, numeric arrays of up to `array_limit`
    elements as lists; anything else (a callable, a larger array) as a note of its type."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "biufU" and arr.size <= array_limit:
            return arr.tolist()
    return f"<{type(value).__name__}>"


def _jsonable(options: Mapping[str, Any]) -> dict:
    """Options as JSON; arrays (e.g. a baseline) are summarised, not stored."""
    return {key: json_option(value) for key, value in options.items()}
