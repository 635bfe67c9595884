"""The scikit-learn adapter: a fitted estimator or Pipeline seen as a forward-only leanlens `Model`.

Scores come from `predict_proba` where the estimator has it, else from `decision_function`
(one column a class; a binary classifier's single margin m becomes the two columns -m, m,
so that class 1 wins where m > 0 as in scikit-learn), else, for a regressor, from `predict`
(one column an output). A Pipeline takes the user's raw columns, DataFrames included: its
own encoders and scalers run inside every call.
"""

from __future__ import annotations

import sys

import numpy as np

from leanlens.errors import BadInput, MissingCapability
from leanlens.models.base import BLACK_BOX
from leanlens.models.tables import check_columns, is_frame


def is_estimator(obj) -> bool:
    """Whether `obj` is a scikit-learn estimator (without importing scikit-learn)."""
    base = sys.modules.get("sklearn.base")
    return base is not None and isinstance(obj, base.BaseEstimator) and not isinstance(obj, type)


class SklearnModel:
    """A fitted scikit-learn estimator (or Pipeline) with leanlens' model interface, black box only."""

    framework = "sklearn"
    capabilities = frozenset({BLACK_BOX})
    takes_frames = True  # a DataFrame reaches the estimator as a DataFrame

    def __init__(self, estimator):
        _check_fitted(estimator)
        self.estimator = estimator
        self.score_method = _score_method(estimator)
        names = getattr(estimator, "feature_names_in_", None)
        self.columns = None if names is None else tuple(names.tolist())  # set when fit on a DataFrame
        self.n_features = getattr(estimator, "n_features_in_", None)

    def __repr__(self) -> str:
        return f"SklearnModel({type(self.estimator).__name__}, scores from {self.score_method})"

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Class scores (N, classes), not labels: `predict(x).argmax(1)` gives the classes."""
        x = self._as_input(x)
        if len(x) == 0:
            raise BadInput("predict() got an empty batch", "pass at least one sample")
        chunks = [self._scores(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _as_input(self, x):
        """A DataFrame checked against the fitted columns; an array as a DataFrame of them when
        the estimator was fit on one (its column selectors name columns)."""
        if is_frame(x):
            return x if self.columns is None else check_columns(x, self.columns)
        x = np.asarray(x)
        if x.ndim != 2:
            raise BadInput(f"x has shape {x.shape}; a scikit-learn model takes a table (N, features)",
                           "pass a 2-D array or a DataFrame")
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise BadInput(f"x has {x.shape[1]} features but the {type(self.estimator).__name__} was fit on "
                           f"{self.n_features}", "pass rows with the columns the model was fit on")
        if self.columns is None:
            return x
        import pandas as pd  # the estimator was fit on a DataFrame, so pandas is installed

        return pd.DataFrame(x, columns=list(self.columns))

    def _scores(self, chunk) -> np.ndarray:
        try:
            scores = np.asarray(getattr(self.estimator, self.score_method)(chunk), dtype=np.float64)
        except (ValueError, TypeError) as error:  # e.g. numbers where an encoder expects its categories
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            raise BadInput(f"the {type(self.estimator).__name__} refused the batch: {reason}",
                           "pass a DataFrame with the columns and dtypes the model was fit on") from None
        if self.score_method == "decision_function" and scores.ndim == 1:
            return np.stack([-scores, scores], axis=1)
        return scores.reshape(len(scores), -1)


def _check_fitted(estimator) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise BadInput(f"the {type(estimator).__name__} is not fitted", "call .fit(X, y) before explaining it") from None
    except TypeError:  # check_is_fitted refuses objects that are not estimators; their predict tells
        pass


def _score_method(estimator) -> str:
    """Where the scores are: probabilities, else margins, else a regressor's predictions."""
    from sklearn.base import is_regressor

    for name in ("predict_proba", "decision_function"):
        if hasattr(estimator, name):  # hasattr honours available_if (SVC(probability=False) has no predict_proba)
            return name
    if is_regressor(estimator):
        return "predict"
    raise MissingCapability(f"a {type(estimator).__name__} gives class labels only, no scores to explain",
                            "use an estimator with predict_proba or decision_function "
                            "(e.g. SVC(probability=True)), or wrap a function returning scores")
