"""Tabular data as insight sees it: a numeric matrix, its feature names, and how to read it back.

Shapley and surrogate methods perturb a numeric matrix; a model may want the user's
own DataFrame back, strings included. A DataFrame is coded by `models.tables.TableCodec`,
the codec `ll.explain` uses for DataFrames too: a categorical column's k-th category (in
sorted order, or a `category` dtype's own order) becomes the number k, and any matrix of
codes decodes back to a frame of the original columns and dtypes. `Table` is insight's
view of it: the matrix, the names, a row's own values, and the rows a model is called on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from leanlens.errors import BadInput
from leanlens.models.tables import (
    TableCodec,
    check_columns,
    check_finite,
    check_no_missing,
    is_frame,
)


@dataclass(frozen=True)
class Table:
    """A numeric view of tabular data: `matrix` (N, d) float64, one name a column.

    `codec` codes and decodes a DataFrame's columns; None for an array, whose rows go to
    the model as they are. `whole` says which numeric columns held integers (counts), to
    report their values as ints.
    """

    matrix: np.ndarray
    feature_names: tuple[str, ...]
    codec: TableCodec | None
    whole: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.matrix)

    @cached_property  # value() reads it for every reason of every row
    def categories(self) -> tuple[tuple | None, ...]:
        """Column j's category values (code k is categories[j][k]), or None for a numeric column."""
        if self.codec is None:
            return (None,) * len(self.feature_names)
        return tuple(None if c not in self.codec.categories else tuple(self.codec.categories[c])
                     for c in self.codec.columns)

    @property
    def text_columns(self) -> tuple[str, ...]:
        """Names of the categorical columns whose codes are not numbers in their own right (bools are)."""
        if self.codec is None:
            return ()
        return tuple(name for name, column, dtype in zip(self.feature_names, self.codec.columns, self.codec.dtypes)
                     if column in self.codec.categories and dtype.kind != "b")

    def decode(self, matrix: np.ndarray):
        """Rows of codes back in the user's form: a DataFrame with the original columns and dtypes, or an array."""
        return matrix if self.codec is None else self.codec.decode(matrix)

    def rows(self, index) -> Table:
        """The same table restricted to some rows."""
        return Table(self.matrix[index], self.feature_names, self.codec, self.whole)

    def value(self, row: int, j: int):
        """The user's own value of feature j in a row: the category itself, or the number."""
        categories = self.categories[j]
        if categories is not None:
            return categories[int(np.rint(self.matrix[row, j]))]
        return int(self.matrix[row, j]) if self.whole[j] else float(self.matrix[row, j])


def as_table(x, feature_names=None, what: str = "x") -> Table:
    """A `Table` from a DataFrame (names and categories carried) or a 2-D numeric array."""
    if is_frame(x):
        return _coded(x, TableCodec.fit(_checked_frame(x, what)))
    matrix = np.asarray(x)
    _check_shape(matrix.shape, what)
    if matrix.dtype == object or not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == bool):
        raise BadInput(f"the array has dtype {matrix.dtype}, not numbers",
                       "pass a pandas DataFrame to keep text columns, or encode them as numbers")
    names = tuple(feature_names) if feature_names is not None else tuple(f"x{j}" for j in range(matrix.shape[1]))
    if len(names) != matrix.shape[1]:
        raise BadInput(f"{len(names)} feature names for {matrix.shape[1]} columns", "pass one name a column")
    check_finite(matrix.astype(np.float64), names, what)
    whole = (np.issubdtype(matrix.dtype, np.integer),) * len(names)
    return Table(matrix.astype(np.float64), names, None, whole)


def with_background(x, background) -> tuple[Table, Table | None]:
    """Tables of the data and of the background rows, their categories coded alike."""
    if background is None:
        return as_table(x), None
    if is_frame(x) != is_frame(background):
        raise BadInput("the data and the background are not the same kind of table",
                       "pass both as DataFrames or both as arrays")
    if not is_frame(x):
        if np.ndim(background) != 2 or np.ndim(x) != 2 or np.shape(background)[1] != np.shape(x)[1]:
            raise BadInput(f"the background has shape {np.shape(background)}, the data {np.shape(x)}",
                           "pass background rows with the data's columns")
        return as_table(x), as_table(background, what="background")
    background = check_columns(_checked_frame(background, "background"), tuple(x.columns), "background")
    codec = TableCodec.fit(_checked_frame(x, "x"), background)
    return _coded(x, codec), _coded(background, codec)


def _checked_frame(frame, what: str):
    _check_shape(frame.shape, what)
    check_no_missing(frame, what)
    return frame


def _coded(frame, codec: TableCodec) -> Table:
    whole = tuple(dtype.kind in "iu" for dtype in codec.dtypes)
    return Table(codec.encode(frame), codec.feature_names, codec, whole)


def _check_shape(shape: tuple, what: str) -> None:
    if len(shape) != 2 or 0 in shape:
        raise BadInput(f"{what} must be a non-empty (rows, features) table, got shape {shape}",
                       "pass a 2-D array or a pandas DataFrame with at least one row and one column")


def is_numeric_column(column) -> bool:
    """A column a numbers-only model (ONNX, torch) can take as it is: numbers or bools."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return is_numeric_dtype(column.dtype) or is_bool_dtype(column.dtype)
