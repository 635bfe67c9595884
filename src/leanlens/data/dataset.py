"""The Dataset container every leanlens method takes, and `as_dataset` to build one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from leanlens.errors import BadInput

ACCEPTED = "a Dataset, an (x, y) or (x, y, masks) tuple of arrays/tensors, or a DataLoader of (x, y)"


@dataclass(frozen=True)
class Dataset:
    """Inputs `x` (batch first), integer labels `y`, optional ground-truth `masks`.

    `x` is stored as float32, `y` as int64 and `masks` as bool; `__post_init__`
    converts and checks them, so a Dataset that exists is always consistent.
    """

    x: np.ndarray
    y: np.ndarray
    masks: np.ndarray | None = None
    name: str = "data"
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # frozen=True blocks normal assignment; the converted arrays replace the inputs once here.
        object.__setattr__(self, "x", _as_inputs(self.x))
        object.__setattr__(self, "y", _as_labels(self.y, len(self.x)))
        if self.masks is not None:
            object.__setattr__(self, "masks", _as_masks(self.masks, self.x.shape))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        _check_finite(self.x)
        _check_classes(self.y, self.classes)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices) -> Dataset:
        """The samples at `indices` (integer positions or a boolean mask), same name and classes."""
        idx = _as_indices(indices, len(self))
        masks = None if self.masks is None else self.masks[idx]
        return Dataset(self.x[idx], self.y[idx], masks, self.name, self.classes)

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A stratified (train, test) split; the same seed always gives the same split."""
        if not isinstance(test_fraction, (int, float, np.floating)) or not 0.0 < test_fraction < 1.0:
            raise BadInput(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}",
                           "use e.g. test_fraction=0.2")
        rng = np.random.default_rng(seed)
        test = []
        for label in np.unique(self.y):
            members = rng.permutation(np.flatnonzero(self.y == label))
            # A class with a single sample stays in train: it cannot be in both halves.
            n_test = min(round(len(members) * test_fraction), len(members) - 1)
            test.append(members[:n_test])
        test_idx = np.sort(np.concatenate(test))
        if len(test_idx) == 0:
            raise BadInput(f"{len(self)} samples are too few to split with test_fraction={test_fraction}",
                           "use more samples or a larger test_fraction")
        train_idx = np.setdiff1d(np.arange(len(self)), test_idx)
        return self.subset(train_idx), self.subset(test_idx)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) slices of at most `batch_size` samples, in order."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise BadInput(f"batch_size must be a positive integer, got {batch_size!r}", "use e.g. batch_size=64")
        for start in range(0, len(self), int(batch_size)):
            yield self.x[start:start + batch_size], self.y[start:start + batch_size]


def as_dataset(data, name: str = "data") -> Dataset:
    """Turn any accepted form of data into a Dataset (a Dataset is returned as is)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return Dataset(*(_to_numpy(part) for part in data), name=name)
    if _is_dataloader(data):
        return Dataset(*_concat_loader(data), name=name)
    raise BadInput(f"cannot make a dataset from {type(data).__name__}", f"pass {ACCEPTED}")


def as_inputs(x) -> np.ndarray:
    """A batch of inputs without labels (what calibration needs), checked as a Dataset's x is."""
    x = _as_inputs(_to_numpy(x))
    _check_finite(x)
    return x


def _to_numpy(part) -> np.ndarray:
    torch = sys.modules.get("torch")
    # If torch was never imported, `part` cannot be a tensor; this keeps torch an optional import here.
    if torch is not None and isinstance(part, torch.Tensor):
        return part.detach().cpu().numpy()
    if isinstance(part, np.ndarray):
        return part
    raise BadInput(f"dataset parts must be numpy arrays or torch tensors, got {type(part).__name__}",
                   f"pass {ACCEPTED}")


def _is_dataloader(data) -> bool:
    tud = sys.modules.get("torch.utils.data")
    return tud is not None and isinstance(data, tud.DataLoader)


def _concat_loader(loader) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = []
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise BadInput("the DataLoader must yield (x, y) or (x, y, masks) batches",
                           "wrap your tensors in a TensorDataset(x, y)")
        if parts and len(batch) != len(parts):
            raise BadInput("the DataLoader's batches change length", "yield the same tuple form every batch")
        parts = parts or [[] for _ in batch]
        for store, item in zip(parts, batch):
            store.append(_to_numpy(item))
    if not parts:
        raise BadInput("the DataLoader yielded no batches", "check that its dataset is not empty")
    return [np.concatenate(store) for store in parts]


def _as_inputs(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind == "c":  # casting to float32 would silently drop the imaginary part
        raise BadInput(f"x is complex ({x.dtype}); leanlens models take real inputs",
                       "pass x.real and x.imag as separate channels, or np.abs(x)")
    if x.dtype.kind not in "biuf":
        raise BadInput(f"x must hold numbers, got dtype {x.dtype}", "convert x to a float array")
    if x.ndim < 2 or len(x) == 0:
        raise BadInput(f"x must be batch first with at least one sample, got shape {x.shape}",
                       "add a batch axis, e.g. x[None] for a single sample")
    return x.astype(np.float32, copy=False)


def _as_labels(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise BadInput(f"y must have shape ({n},) to match x, got {y.shape}",
                       "pass one integer class index per sample (for one-hot labels use y.argmax(1))")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
        raise BadInput(f"y must hold integer class indices, got dtype {y.dtype}", "pass labels like 0, 1, 2")
    return y.astype(np.int64, copy=False)


def _as_masks(masks, x_shape: tuple[int, ...]) -> np.ndarray:
    masks = np.asarray(masks)
    if len(x_shape) < 3:
        raise BadInput(f"masks need image inputs, but x has shape {x_shape}", "leave masks=None for tabular data")
    expected = (x_shape[0], *x_shape[-2:])
    if masks.shape != expected:
        raise BadInput(f"masks must have shape (N, H, W) = {expected} to match x of shape {x_shape}, "
                       f"got {masks.shape}", "give one H x W mask per sample, matching x's last two axes")
    if masks.dtype != bool:
        if masks.dtype.kind not in "biuf" or not np.isin(masks, (0, 1)).all():
            raise BadInput("masks must be boolean (or 0/1)", "threshold soft masks first, e.g. masks > 0.5")
        masks = masks.astype(bool)
    return masks


def _check_finite(x: np.ndarray) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise BadInput(f"x holds NaN or inf values, first in sample {first} ({int(bad.sum())} samples affected)",
                       "drop or impute those samples before building the dataset")


def _check_classes(y: np.ndarray, classes: tuple[str, ...]) -> None:
    if classes and (y.min() < 0 or y.max() >= len(classes)):
        raise BadInput(f"labels must lie in 0..{len(classes) - 1} for {len(classes)} classes, "
                       f"got {int(y.min())}..{int(y.max())}", "fix y or give the full list of class names")


def _as_indices(indices, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise BadInput(f"a boolean index must have shape ({n},), got {idx.shape}", "use one flag per sample")
        idx = np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise BadInput(f"indices must be a 1-D list of integer positions, got {idx.dtype} of shape {idx.shape}",
                       "pass e.g. [0, 5, 7] or a boolean mask")
    if idx.size == 0:
        raise BadInput("the indices select no samples", "pass at least one index")
    idx = idx.astype(np.int64)
    if idx.min() < -n or idx.max() >= n:
        raise BadInput(f"indices must lie in 0..{n - 1}, got {int(idx.min())}..{int(idx.max())}",
                       "index within the dataset's length")
    return idx
