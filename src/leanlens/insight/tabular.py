"""Tabular data as insight sees it: a numeric matrix, its feature names, and the codes of its categories.

Shapley and surrogate methods perturb a numeric matrix; a model may want the user's
own DataFrame back, strings included. `Table` codes each non-numeric column to the
integers 0..k-1 (in sorted category order) and `decode()` turns any matrix of codes
back into a frame of the original column types, so a perturbed row is a valid row.

Kept in one small function (`as_table` / `Table.decode`) on purpose: the models/
package's DataFrame adapter can later replace it without touching the methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leanlens.errors import BadInput


@dataclass(frozen=True)
class Table:
    """A numeric view of tabular data: `matrix` (N, d) float64, one name a column.

    `categories[j]` holds column j's category values (code i is categories[j][i]) for a
    non-numeric column, and is None for a numeric one. `frame` says whether the user
    passed a DataFrame, so decoded rows go back to the model in the same form.
    """

    matrix: np.ndarray
    feature_names: tuple[str, ...]
    categories: tuple[tuple | None, ...]
    frame: bool
    whole: tuple[bool, ...] = ()  # which numeric columns held integers (counts), to report them as such

    def __len__(self) -> int:
        return len(self.matrix)

    def decode(self, matrix: np.ndarray):
        """Rows of codes back in the user's form: a DataFrame with the original columns, or an array."""
        if not self.frame:
            return matrix
        import pandas as pd

        columns = {}
        for j, name in enumerate(self.feature_names):
            column = matrix[:, j]
            if self.categories[j] is not None:
                column = np.asarray(self.categories[j], dtype=object)[np.rint(column).astype(int)]
            columns[name] = column
        return pd.DataFrame(columns)

    def rows(self, index) -> Table:
        """The same table restricted to some rows."""
        return Table(self.matrix[index], self.feature_names, self.categories, self.frame, self.whole)

    def value(self, row: int, j: int):
        """The user's own value of feature j in a row: the category itself, or the number."""
        if self.categories[j] is not None:
            return self.categories[j][int(np.rint(self.matrix[row, j]))]
        return int(self.matrix[row, j]) if self.whole and self.whole[j] else float(self.matrix[row, j])


def as_table(x, feature_names=None) -> Table:
    """A `Table` from a DataFrame (names and categories carried) or a 2-D numeric array."""
    if hasattr(x, "columns") and hasattr(x, "dtypes"):
        return _from_frame(x)
    matrix = np.asarray(x)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise BadInput(f"tabular data must be a non-empty (rows, features) table, got shape {matrix.shape}",
                       "pass a 2-D array or a pandas DataFrame")
    if matrix.dtype == object or not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == bool):
        raise BadInput(f"the array has dtype {matrix.dtype}, not numbers",
                       "pass a pandas DataFrame to keep text columns, or encode them as numbers")
    names = tuple(feature_names) if feature_names is not None else tuple(f"x{j}" for j in range(matrix.shape[1]))
    if len(names) != matrix.shape[1]:
        raise BadInput(f"{len(names)} feature names for {matrix.shape[1]} columns", "pass one name a column")
    whole = (np.issubdtype(matrix.dtype, np.integer),) * len(names)
    return Table(_finite(matrix.astype(np.float64), names), names, (None,) * len(names), frame=False, whole=whole)


def with_background(x, background) -> tuple[Table, Table | None]:
    """Tables of the data and of the background rows, their categories coded alike."""
    if background is None:
        return as_table(x), None
    if len(background) == 0:
        raise BadInput("the background has no rows", "pass some typical rows, or background=None")
    if hasattr(x, "columns") != hasattr(background, "columns"):
        raise BadInput("the data and the background are not the same kind of table",
                       "pass both as DataFrames or both as arrays")
    if hasattr(x, "columns"):
        import pandas as pd

        if list(background.columns) != list(x.columns):
            raise BadInput("the background's columns differ from the data's", "pass background rows with the same columns")
        joint = as_table(pd.concat([x, background], ignore_index=True))
    elif np.ndim(background) != 2 or np.ndim(x) != 2 or np.shape(background)[1] != np.shape(x)[1]:
        raise BadInput(f"the background has shape {np.shape(background)}, the data {np.shape(x)}",
                       "pass background rows with the data's columns")
    else:
        joint = as_table(np.vstack([np.asarray(x), np.asarray(background)]))
    return joint.rows(slice(0, len(x))), joint.rows(slice(len(x), None))


def _from_frame(frame) -> Table:
    if len(frame) == 0 or frame.shape[1] == 0:
        raise BadInput(f"the DataFrame has shape {frame.shape}", "pass at least one row and one column")
    columns, categories = [], []
    for name in frame.columns:
        column = frame[name]
        if is_numeric_column(column):
            columns.append(column.to_numpy(dtype=np.float64))
            categories.append(None)
            continue
        if column.isna().any():
            raise BadInput(f"column {name!r} has missing values", "fill or drop them first")
        values = tuple(sorted(column.unique(), key=str))
        codes = {value: code for code, value in enumerate(values)}
        columns.append(column.map(codes).to_numpy(dtype=np.float64))
        categories.append(values)
    names = tuple(str(name) for name in frame.columns)
    from pandas.api.types import is_integer_dtype

    whole = tuple(is_integer_dtype(frame[name].dtype) for name in frame.columns)
    return Table(_finite(np.column_stack(columns), names), names, tuple(categories), frame=True, whole=whole)


def is_numeric_column(column) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return is_numeric_dtype(column.dtype) or is_bool_dtype(column.dtype)


def _finite(matrix: np.ndarray, names) -> np.ndarray:
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, j = map(int, np.argwhere(bad)[0])
        raise BadInput(f"column {names[j]!r} has a missing or infinite value in row {row}", "fill or drop it first")
    return matrix
