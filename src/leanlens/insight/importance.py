"""Global feature importance: by permuting a column (Breiman, 2001) and by refitting without it.

Permutation importance asks how much a fitted model's score drops when one column's
values are shuffled across rows; drop-column importance asks how much a model *trained
without* the column loses, refitting a clone of the estimator once a feature. Scores are
scikit-learn scorers (`scoring` means what it means in `sklearn.inspection`); importance
is the score without the feature's information subtracted from the score with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from leanlens.errors import BadInput, BadOption, MissingCapability
from leanlens.insight.scorer import Scorer, prepare
from leanlens.models.architecture import first_line
from leanlens.models.sklearn_model import is_estimator

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Importance:
    """One importance a feature and a repeat, with the mean, spread and a t confidence interval."""

    feature_names: tuple[str, ...]
    importances: np.ndarray  # (d, repeats): score with the feature minus score without it
    baseline_score: float  # the model's score on the untouched data
    method: str  # "permutation" or "drop-column"
    confidence: float  # the level of ci_low / ci_high

    @property
    def importances_mean(self) -> np.ndarray:
        return self.importances.mean(1)

    @property
    def importances_std(self) -> np.ndarray:
        """Spread over repeats with ddof=0, as `sklearn.inspection.permutation_importance` reports it."""
        return self.importances.std(1)

    @property
    def ci_low(self) -> np.ndarray | None:
        return None if self._half_width is None else self.importances_mean - self._half_width

    @property
    def ci_high(self) -> np.ndarray | None:
        return None if self._half_width is None else self.importances_mean + self._half_width

    @property
    def _half_width(self) -> np.ndarray | None:
        repeats = self.importances.shape[1]
        if repeats < 2:  # one refit or one shuffle: no spread to build an interval from
            return None
        from scipy.stats import t

        return t.ppf((1 + self.confidence) / 2, repeats - 1) * self.importances.std(1, ddof=1) / np.sqrt(repeats)

    def ranking(self) -> list[str]:
        """Feature names, most important first."""
        return [self.feature_names[j] for j in np.argsort(-self.importances_mean, kind="stable")]


def permutation_importance(model, x, y, *, scoring=None, n_repeats: int = 5, random_state=None,
                           confidence: float = 0.95, on_progress: Progress | None = None) -> Importance:
    """Mean drop in score when each feature's column is shuffled, over `n_repeats` shuffles.

    Parameters
    ----------
    model : a fitted scikit-learn estimator or pipeline, a leanlens Model, or a function
        of the rows (as given) returning class scores (its classes are then 0..k-1).
    x, y : the rows (array or DataFrame) and their labels, ideally held out from training.
    scoring : a scikit-learn scorer name or callable; None: the estimator's `score` (accuracy).
    n_repeats : shuffles a feature (at least 2, for an interval).
    random_state : seed (int), None, or a `numpy.random.Generator`.
    confidence : level of the t interval over repeats.
    """
    _check(n_repeats, confidence)
    scorer, table, _ = prepare(model, x)
    y = _labels(y, len(table))
    score = _score_function(scorer, scoring)
    baseline = score(table.decode(table.matrix), y)
    rng = np.random.default_rng(_seed(random_state))
    d = table.matrix.shape[1]
    importances = np.empty((d, n_repeats))
    for j in range(d):
        for repeat in range(n_repeats):
            shuffled = table.matrix.copy()
            shuffled[:, j] = shuffled[rng.permutation(len(table)), j]
            importances[j, repeat] = baseline - score(table.decode(shuffled), y)
        if on_progress is not None:
            on_progress(j + 1, d)
    return Importance(table.feature_names, importances, baseline, "permutation", confidence)


def drop_column_importance(estimator, x, y, *, scoring=None, test_size: float = 0.25, random_state=0,
                           on_progress: Progress | None = None) -> Importance:
    """Score lost by a clone of `estimator` refit without each feature, on a held-out part of the rows.

    `fit` runs d + 1 times: once on every feature, once without each. The split is
    stratified for classifiers; `test_size` and `random_state` mean what they mean in
    `sklearn.model_selection.train_test_split`.
    """
    from sklearn.base import clone, is_classifier
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import train_test_split

    if not is_estimator(estimator):
        raise MissingCapability(f"drop-column importance refits the model; a {type(estimator).__name__} cannot be refit",
                                "pass an unfitted or fitted scikit-learn estimator, or use permutation_importance")
    y = _labels(y, len(x))
    names = [str(c) for c in x.columns] if hasattr(x, "columns") else [f"x{j}" for j in range(np.shape(x)[1])]
    parts = train_test_split(x, y, test_size=test_size, random_state=random_state,
                             stratify=y if is_classifier(estimator) else None)

    def refit_score(drop: int | None) -> float:
        train, test = (_without(part, drop) for part in parts[:2])
        try:
            fitted = clone(estimator).fit(train, parts[2])
            return float(check_scoring(fitted, scoring)(fitted, test, parts[3]))
        except Exception as error:  # noqa: BLE001 - the estimator's own complaint, in one line
            column = "every column" if drop is None else f"the columns without {names[drop]!r}"
            raise BadInput(f"refitting {type(estimator).__name__} on {column} failed: {first_line(error)}",
                           "drop-column needs an estimator that accepts any subset of the columns") from None

    baseline = refit_score(None)
    importances = np.empty((len(names), 1))
    for j in range(len(names)):
        importances[j, 0] = baseline - refit_score(j)
        if on_progress is not None:
            on_progress(j + 1, len(names))
    return Importance(tuple(names), importances, baseline, "drop-column", 0.95)


def _score_function(scorer: Scorer, scoring) -> Callable[[object, np.ndarray], float]:
    """`score(rows, y)` with a scikit-learn scorer, for an estimator or for any scored model."""
    from sklearn.metrics import check_scoring

    estimator = scorer.estimator if scorer.estimator is not None else _scored_classifier(scorer)
    try:
        sk_scorer = check_scoring(estimator, scoring)
    except (ValueError, TypeError) as error:
        raise BadOption(f"scoring={scoring!r}: {first_line(error)}",
                        "use a name from sklearn.metrics.get_scorer_names() or a scorer callable") from None
    return lambda rows, y: float(sk_scorer(estimator, rows, y))


def _scored_classifier(scorer: Scorer):
    """A fitted-looking scikit-learn classifier over a model's scores, so that any scorer name works."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScoredModel(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):  # never refit: it stands for a model fitted elsewhere
            raise TypeError("this stands for a model fitted elsewhere and cannot be refit")

        def predict_proba(self, rows):
            return scorer.fn(rows)

        def predict(self, rows):
            return self.classes_[np.asarray(scorer.fn(rows)).argmax(1)]

    model = ScoredModel()
    model.classes_ = scorer.classes
    return model


def _without(part, j: int | None):
    if j is None:
        return part
    if hasattr(part, "columns"):
        return part.drop(columns=part.columns[j])
    return np.delete(np.asarray(part), j, axis=1)


def _labels(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise BadInput(f"y has shape {y.shape} for {n} rows", "pass one label a row")
    return y


def _seed(random_state):
    if random_state is None or isinstance(random_state, (int, np.integer, np.random.Generator)):
        return random_state
    raise BadOption(f"random_state={random_state!r}", "pass an int seed, None, or a numpy.random.Generator")


def _check(n_repeats, confidence) -> None:
    if not isinstance(n_repeats, (int, np.integer)) or n_repeats < 2:
        raise BadOption(f"n_repeats={n_repeats!r} gives no confidence interval", "use an int >= 2, e.g. 5")
    if not 0 < confidence < 1:
        raise BadOption(f"confidence={confidence!r}", "use a level between 0 and 1, e.g. 0.95")
