"""Permutation importance (with intervals) and drop-column importance (refitting a clone without each feature)."""

import numpy as np
import pytest
from errors_support import one_line
from scipy.stats import t
from sklearn.inspection import permutation_importance as sklearn_permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import log_loss
from sklearn.svm import LinearSVC

from leanlens.errors import BadInput, BadOption, MissingCapability
from leanlens.insight import drop_column_importance, permutation_importance


@pytest.fixture(scope="module")
def signal_and_noise():
    """Column 0 decides the label, column 1 helps a little, column 2 is pure noise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    y = (2.0 * x[:, 0] + 0.5 * x[:, 1] + 0.2 * rng.normal(size=600) > 0).astype(int)
    model = LogisticRegression().fit(x[:300], y[:300])
    return model, x[300:], y[300:]


def test_permutation_importance_agrees_with_sklearn_within_each_others_intervals(signal_and_noise):
    model, x, y = signal_and_noise
    ours = permutation_importance(model, x, y, scoring="neg_log_loss", n_repeats=20, random_state=0)
    theirs = sklearn_permutation_importance(model, x, y, scoring="neg_log_loss", n_repeats=20, random_state=0)
    assert ours.ranking() == ["x0", "x1", "x2"]
    assert list(np.argsort(-theirs.importances_mean)) == [0, 1, 2]
    half = t.ppf(0.975, 19) * theirs.importances.std(1, ddof=1) / np.sqrt(20)
    assert np.all(np.abs(ours.importances_mean - theirs.importances_mean) <= (ours.ci_high - ours.ci_low) / 2 + half)
    assert ours.baseline_score == pytest.approx(-log_loss(y, model.predict_proba(x)))
    assert ours.importances.shape == (3, 20)
    np.testing.assert_allclose(ours.importances_std, ours.importances.std(1))  # sklearn's ddof=0
    assert ours.ci_low[2] < 0.01 and ours.ci_low[0] > 0.5  # the noise column's interval reaches zero


def test_permutation_importance_runs_on_a_function_of_a_batch(signal_and_noise):
    model, x, y = signal_and_noise
    as_function = permutation_importance(model.predict_proba, x, y, n_repeats=5, random_state=3)
    as_estimator = permutation_importance(model, x, y, n_repeats=5, random_state=3)
    # the same shuffles, the same accuracy drops: the function's classes are 0..k-1, as y is
    np.testing.assert_allclose(as_function.importances, as_estimator.importances)
    assert as_function.baseline_score == pytest.approx((model.predict(x) == y).mean())


class CountingRegression(LinearRegression):
    fits = 0

    def fit(self, x, y, sample_weight=None):
        type(self).fits += 1
        return super().fit(x, y, sample_weight)


def test_drop_column_refits_once_a_feature_and_scores_noise_near_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    y = 3.0 * x[:, 0] + 0.1 * rng.normal(size=400)  # column 0 determines y; 1 and 2 are noise
    CountingRegression.fits = 0
    result = drop_column_importance(CountingRegression(), x, y, random_state=0)
    assert CountingRegression.fits == 4  # every feature once, then once without each
    assert result.method == "drop-column" and result.ranking()[0] == "x0"
    assert result.baseline_score > 0.99  # R² of the full refit on the held-out quarter
    assert result.importances_mean[0] > 0.9  # without x0 nothing explains y
    assert np.all(np.abs(result.importances_mean[1:]) < 0.01)
    assert result.ci_low is None  # one refit a feature: no interval


def test_drop_column_keeps_dataframe_columns_by_name():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"noise": rng.normal(size=300), "signal": rng.normal(size=300)})
    result = drop_column_importance(LinearRegression(), frame, 2 * frame["signal"], random_state=0)
    assert result.feature_names == ("noise", "signal") and result.ranking() == ["signal", "noise"]


def test_importance_mistakes_are_one_line(signal_and_noise):
    model, x, y = signal_and_noise
    cases = [
        (BadOption, "n_repeats=1", lambda: permutation_importance(model, x, y, n_repeats=1)),
        (BadOption, "scoring='acuracy'", lambda: permutation_importance(model, x, y, scoring="acuracy")),
        (BadInput, "y has shape (3,)", lambda: permutation_importance(model, x, y[:3])),
        (BadInput, "the data has 2 columns", lambda: permutation_importance(model, x[:, :2], y)),
        (MissingCapability, "LinearSVC has no predict_proba",
         lambda: permutation_importance(LinearSVC().fit(x, y), x, y)),
        (MissingCapability, "cannot be refit", lambda: drop_column_importance(model.predict_proba, x, y)),
        (BadInput, "is not fitted", lambda: permutation_importance(LogisticRegression(), x, y)),
    ]
    for kind, message, call in cases:
        with pytest.raises(kind) as error:
            call()
        assert message in one_line(error)
