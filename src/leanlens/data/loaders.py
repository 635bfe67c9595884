"""Datasets by name, and user data from .npz files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from leanlens.data.dataset import Dataset
from leanlens.data.sentiment import vader_sentiment
from leanlens.data.synthetic import lesions
from leanlens.errors import BadInput, UnknownMethod, closest

DATASETS = ("lesions", "digits", "breast-cancer", "vader-sentiment")
# Every name `load` takes: the datasets, "lesions-<difficulty>" for the lesions set's other settings,
# and "vader-sentiment-<split>" for the sentiment task's fixed train and test parts.
NAMES = ("lesions", "lesions-hard", "digits", "breast-cancer", "vader-sentiment", "vader-sentiment-train",
         "vader-sentiment-test")
NPZ_HINT = "save it with np.savez(path, x=x, y=y) or np.savez(path, x=x, y=y, masks=masks)"


def load(name: str, n: int | None = None, seed: int = 0) -> Dataset:
    """The dataset called `name` (see NAMES), with `n` samples (None: the default size).

    "lesions" is the easy setting of the synthetic lesion set, "lesions-hard" the hard one
    (see `leanlens.data.lesions`). "vader-sentiment" is a two-class task on the VADER lexicon's
    words as token ids, with their texts kept (see `leanlens.data.sentiment`; needs leanlens[text]).
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in NAMES:
        raise UnknownMethod(f"unknown dataset {name!r}", closest(str(name), NAMES))
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise BadInput(f"n must be a positive integer or None, got {n!r}", "use e.g. n=1000")
    if key.startswith("lesions"):
        difficulty = key.partition("-")[2] or "easy"
        return lesions(5000 if n is None else int(n), seed=seed, difficulty=difficulty)
    if key.startswith("vader-sentiment"):
        data = vader_sentiment(key.removeprefix("vader-sentiment").lstrip("-") or "all")
    else:
        data = digits() if key == "digits" else breast_cancer()
    return data if n is None else _sample(data, int(n), seed)


def digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits as images (N, 1, 8, 8) scaled to [0, 1]."""
    from sklearn.datasets import (
        load_digits,  # sklearn is slow to import; pay only when used
    )

    raw = load_digits()
    x = raw.images[:, None] / 16.0  # the pixel counts run from 0 to 16
    return Dataset(x, raw.target, name="digits", classes=tuple(str(c) for c in raw.target_names))


def breast_cancer() -> Dataset:
    """scikit-learn's Wisconsin breast-cancer table: 30 raw features per sample."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    return Dataset(raw.data, raw.target, name="breast-cancer", classes=tuple(str(c) for c in raw.target_names))


def load_npz(path: str | os.PathLike) -> Dataset:
    """A Dataset from an .npz file with arrays `x`, `y` and optionally `masks` (and `classes`)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no file at '{path}'", "check the path and that the file exists")
    archive = _guarded(path, lambda: np.load(path, allow_pickle=False))
    # np.load returns a plain array, not an archive, for a .npy file.
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BadInput(f"'{path}' holds a single array, not an .npz archive of x and y", NPZ_HINT)
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise BadInput(f"'{path}' lacks the array(s) {', '.join(missing)}; it holds {sorted(archive.files)}",
                           NPZ_HINT)
        # Members are decompressed only on access, so a damaged member fails here, not at np.load.
        arrays = _guarded(path, lambda: {k: archive[k] for k in ("x", "y", "masks", "classes") if k in archive})
    classes = tuple(arrays.pop("classes", ()))
    return Dataset(**arrays, name=path.stem, classes=classes)


def _guarded(path: Path, read):
    """Run `read`, turning the many ways a bad file fails into one BadInput."""
    try:
        return read()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: Exception) -> BadInput:
    if "allow_pickle" in str(err):
        return BadInput(f"'{path}' stores Python objects, which are not loaded for safety",
                        "save plain numeric arrays (x.astype(np.float32), y.astype(np.int64))")
    return BadInput(f"'{path}' is not a readable .npz file ({type(err).__name__})",
                    f"the file may be truncated or of another format; {NPZ_HINT}")


def _sample(data: Dataset, n: int, seed: int) -> Dataset:
    """A deterministic random subset of `n` samples, kept in the original order."""
    if n > len(data):
        raise BadInput(f"n={n} is more than the {len(data)} samples of {data.name!r}",
                       f"use n <= {len(data)} or n=None for all of them")
    if n == len(data):
        return data
    keep = np.random.default_rng(seed).choice(len(data), size=n, replace=False)
    return data.subset(np.sort(keep))
