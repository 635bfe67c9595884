"""What a model is to insight: a function from tabular rows to class scores, with the classes' labels.

A fitted scikit-learn estimator or pipeline answers with `predict_proba` on the user's
own rows (DataFrame columns by name), and so does any `predict_proba`-like function; a
leanlens `Model` (an ONNX file, a torch module) answers with its scores on the numeric matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.errors import BadInput, MissingCapability
from leanlens.insight.tabular import Table, with_background
from leanlens.models.architecture import first_line
from leanlens.models.base import Model
from leanlens.models.sklearn_model import SklearnModel, is_estimator
from leanlens.models.tables import check_columns, is_frame


@dataclass(frozen=True)
class Scorer:
    """A model's class scores on rows of a `Table`."""

    fn: Callable  # rows in the user's form -> (N, classes)
    classes: np.ndarray  # the label of each score column
    space: str  # "probability" (predict_proba) or "score" (whatever the model returns)
    estimator: object | None  # the fitted scikit-learn estimator, when the model is one

    def scores(self, table: Table, matrix: np.ndarray | None = None) -> np.ndarray:
        """Scores (N, classes) float64 of the table's rows, or of a matrix of codes in its columns."""
        rows = table.decode(table.matrix if matrix is None else matrix)
        return np.asarray(self.fn(rows), dtype=np.float64)

    def decisions(self, table: Table) -> np.ndarray:
        """The predicted class index of each row."""
        return self.scores(table).argmax(1)


def prepare(model, x, background=None) -> tuple[Scorer, Table, Table | None]:
    """The scorer of `model`, the table of `x` and that of `background` (categories coded alike),
    checked against each other with one call on one row."""
    given = None if background is None else aligned(model, background, "background")
    table, background = with_background(aligned(model, x), given)
    scorer = _scorer(model)
    try:
        probe = scorer.scores(table.rows(slice(0, 1)))
    except Exception as error:  # noqa: BLE001 - a model fails on rows it cannot read in its own way
        raise BadInput(f"the model cannot score these rows: {first_line(error)}",
                       "pass the columns the model was trained on, in the same form") from None
    if probe.ndim != 2 or len(probe) != 1:
        raise BadInput(f"the model returned scores of shape {probe.shape} for one row",
                       "return scores of shape (N, classes); for one output use scores[:, None]")
    classes = scorer.classes if scorer.classes is not None else np.arange(probe.shape[1])
    return Scorer(scorer.fn, classes, scorer.space, scorer.estimator), table, background


def aligned(model, x, what: str = "x"):
    """`x` with the columns a fitted estimator was trained on, in its order; a mismatch is refused."""
    expected = getattr(model, "feature_names_in_", None)
    if expected is not None and is_frame(x):
        return check_columns(x, tuple(expected.tolist()), what)
    width = getattr(model, "n_features_in_", None)
    if width is not None and np.ndim(x) == 2 and np.shape(x)[1] != width:
        raise BadInput(f"the data has {np.shape(x)[1]} columns, the model was trained on {width}",
                       "pass the columns the model was trained on")
    return x


def _scorer(model) -> Scorer:
    if is_estimator(model):
        return _estimator_scorer(model)
    if callable(model) and not isinstance(model, (Model, torch.nn.Module)):
        # a predict_proba-like function sees the rows as the user holds them: a DataFrame stays one
        return Scorer(model, None, "score", None)
    from leanlens.models.wrap import wrap

    wrapped = wrap(model)  # a leanlens Model (ONNX, torch), an .onnx path or a torch module
    return Scorer(lambda rows: wrapped.predict(np.asarray(rows, np.float32), batch_size=len(rows)),
                  None, "score", None)


def _estimator_scorer(estimator) -> Scorer:
    SklearnModel(estimator)  # the adapter's refusals: an unfitted estimator, one without scores
    if not hasattr(estimator, "predict_proba"):
        raise MissingCapability(f"{type(estimator).__name__} has no predict_proba: its decisions have no score",
                                "use a classifier with predict_proba, or wrap it in CalibratedClassifierCV")
    # called directly, not through the adapter's float32 scores: insight reports probabilities in float64
    return Scorer(estimator.predict_proba, np.asarray(estimator.classes_), "probability", estimator)
