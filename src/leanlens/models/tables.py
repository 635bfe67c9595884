"""Tables in: a pandas DataFrame as the numeric batch perturbation methods work on, and back.

Perturbation methods switch a feature off by copying a number from a background row into
the sample. A categorical column (object, category, string or bool) has no numbers, so
each is coded: the column's k-th category becomes the number k. Before the model sees a
perturbed batch, its codes are decoded back into a DataFrame with the user's columns and
dtypes, so a pipeline's own encoders see raw values: a feature is a raw column, never one
of the one-hot columns a pipeline makes of it.

pandas is imported only when the user has imported it: a DataFrame cannot exist otherwise.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from leanlens.errors import BadInput, BadOption
from leanlens.models.base import BLACK_BOX


def is_frame(x) -> bool:
    """Whether `x` is a pandas DataFrame (without importing pandas)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(x, pandas.DataFrame)


def is_categorical(dtype) -> bool:
    """Columns whose values are labels rather than quantities: they are coded, never averaged."""
    return dtype.kind in "OUSb" or str(dtype) in ("category", "string", "str")


def check_no_missing(frame, what: str) -> None:
    """Refuse a frame with a missing value anywhere, or an infinite number."""
    bad = np.array(frame.isna())  # a copy: pandas may hand back a read-only view
    numeric = [j for j, dtype in enumerate(frame.dtypes) if dtype.kind in "iuf"]
    if numeric:
        bad[:, numeric] |= ~np.isfinite(frame.iloc[:, numeric].to_numpy(dtype=np.float64))
    refuse_first(bad, tuple(frame.columns), what)


def check_finite(matrix: np.ndarray, names, what: str) -> None:
    """Refuse a numeric matrix with NaN or inf, naming the column as `check_no_missing` does."""
    refuse_first(~np.isfinite(matrix), tuple(names), what)


def refuse_first(bad: np.ndarray, names: tuple, what: str) -> None:
    """One message for every table: the first bad cell by column name and row."""
    if bad.any():
        row, column = (int(i[0]) for i in np.nonzero(bad))
        raise BadInput(f"{what} has a missing or infinite value in column {names[column]!r} (row {row})",
                       "impute or drop missing values first")


def check_columns(frame, expected: tuple[str, ...], what: str = "x"):
    """`frame` with the columns `expected`, in that order; missing or extra columns refused."""
    have = list(frame.columns)
    lacking = [c for c in expected if c not in have]
    if lacking:
        raise BadInput(f"{what} lacks the column(s) {', '.join(map(repr, lacking))} that the model was fit on",
                       "pass a DataFrame with every column the model was fit on")
    extra = [c for c in have if c not in expected]
    if extra:
        raise BadInput(f"{what} has column(s) {', '.join(map(repr, extra))} that the model was not fit on",
                       "drop them, e.g. x[list(model.columns)]")
    return frame if have == list(expected) else frame[list(expected)]


@dataclass(frozen=True)
class TableCodec:
    """How a table's columns become numbers: numeric columns as they are, categories as codes."""

    columns: tuple[Any, ...]
    dtypes: tuple[Any, ...]
    categories: dict[Any, np.ndarray]  # categorical column -> its values; code k stands for categories[k]

    @classmethod
    def fit(cls, *frames) -> TableCodec:
        """The codec for the first frame's columns; categories are those every frame holds."""
        first = frames[0]
        categories = {}
        for column, dtype in first.dtypes.items():
            if str(dtype) == "category":  # the dtype's own order, so codes agree with pandas' codes
                categories[column] = np.asarray(dtype.categories, dtype=object)
            elif dtype.kind == "b":  # both truth values always, so a code is the bool's own number
                categories[column] = np.array([False, True], dtype=object)
            elif is_categorical(dtype):
                # sorted (by text, for mixed types): the same codes whichever rows are coded
                seen = np.concatenate([f[column].to_numpy(dtype=object) for f in frames])
                categories[column] = np.asarray(sorted(dict.fromkeys(seen.tolist()), key=_text_order), dtype=object)
            elif dtype.kind not in "iuf":
                raise BadInput(f"column {column!r} has dtype {dtype}, neither numbers nor categories",
                               "convert it to numbers (e.g. a timestamp to days) or to strings first")
        return cls(tuple(first.columns), tuple(first.dtypes), categories)

    @property
    def categorical(self) -> tuple[Any, ...]:
        return tuple(self.categories)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.columns)

    def encode(self, frame) -> np.ndarray:
        """(rows, columns) float64: numeric values as they are, categories as their codes."""
        frame = self._same_columns(frame)
        out = np.empty(frame.shape, dtype=np.float64)
        for j, column in enumerate(self.columns):
            values = frame[column].to_numpy(dtype=object if column in self.categories else np.float64)
            out[:, j] = self._codes(column, values) if column in self.categories else values
        return out

    def decode(self, codes: np.ndarray):
        """The DataFrame the codes stand for, with the original columns and dtypes."""
        import pandas as pd

        data = {}
        for j, (column, dtype) in enumerate(zip(self.columns, self.dtypes)):
            if column in self.categories:
                values = self.categories[column][np.rint(codes[:, j]).astype(np.int64)]
                data[column] = pd.Series(values, dtype=dtype)
            else:
                data[column] = pd.Series(codes[:, j]).astype(_numbers_dtype(codes[:, j], dtype))
        return pd.DataFrame(data, columns=list(self.columns))

    def _codes(self, column, values: np.ndarray) -> np.ndarray:
        lookup = {value: k for k, value in enumerate(self.categories[column].tolist())}
        unknown = [v for v in values.tolist() if v not in lookup]
        if unknown:
            raise BadInput(f"column {column!r} has the value {unknown[0]!r}, unseen in x and the background",
                           "pass rows whose categories appear in x or the background")
        return np.array([lookup[v] for v in values.tolist()], dtype=np.float64)

    def _same_columns(self, frame):
        if list(frame.columns) != list(self.columns):
            frame = check_columns(frame, self.columns, "background")
        return frame


def _text_order(value) -> tuple[str, str]:
    return str(value), type(value).__name__  # 1 and "1" print alike: the type settles their order


def _numbers_dtype(values: np.ndarray, dtype):
    """A numeric column's own dtype, unless it is an integer one and the values have fractions
    (a surrogate's Gaussian neighbours): rounding them would change what the model is asked."""
    if dtype.kind in "iu" and not np.array_equal(values, np.round(values)):
        return np.float64
    return dtype


class FrameModel:
    """A model seen through a table codec: codes in, and the model it wraps sees the DataFrame.

    Perturbation methods work on the codes; every batch is decoded before `model.predict`.
    """

    capabilities = frozenset({BLACK_BOX})

    def __init__(self, model, codec: TableCodec):
        self.model = model
        self.codec = codec
        self.framework = model.framework

    def __repr__(self) -> str:
        return f"FrameModel({self.model!r}, columns={list(self.codec.columns)})"

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return self.model.predict(self.codec.decode(np.asarray(x)), batch_size=batch_size)


@dataclass(frozen=True)
class TableInput:
    """What `explain()` works on for a DataFrame: the model to call, the numeric batch and background."""

    model: Any
    x: np.ndarray
    background: np.ndarray | None
    feature_names: tuple[str, ...]


def table_input(model, x, background=None) -> TableInput:
    """A DataFrame `x` (and `background`) as numbers for the perturbation methods.

    A model that takes DataFrames (`takes_frames`: scikit-learn, a function) is called through
    a `FrameModel`, so it sees DataFrames with the user's columns and dtypes; any other model
    (torch, ONNX) gets the numeric columns as an array.
    """
    if background is not None and not is_frame(background):
        raise BadOption(f"background is a {type(background).__name__} while x is a DataFrame",
                        "pass background= as a DataFrame with x's columns")
    expected = getattr(model, "columns", None)
    if expected is not None:
        check_columns(x, expected)  # in any order: the model's wrapper reorders
    frames = (x,) if background is None else (x, background)
    for what, frame in zip(("x", "background"), frames):
        check_no_missing(frame, what)
    codec = TableCodec.fit(*frames)
    background_codes = None if background is None else codec.encode(background)
    if not getattr(model, "takes_frames", False):
        if codec.categorical:
            raise BadInput(f"a {model.framework} model cannot take the categorical column(s) "
                           f"{', '.join(map(repr, codec.categorical))}", "encode them as numbers first")
        return TableInput(model, codec.encode(x), background_codes, codec.feature_names)
    if codec.categorical and background is None:
        raise BadOption(f"x has categorical column(s) {', '.join(map(repr, codec.categorical))} and no background rows",
                        "pass background= a DataFrame of typical rows (e.g. 100 training rows): "
                        "a removed feature takes their values")
    return TableInput(FrameModel(model, codec), codec.encode(x), background_codes, codec.feature_names)
