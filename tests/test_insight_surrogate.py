"""Surrogates: a decision tree imitating a model (held-out fidelity, rules) and a local linear fit (weighted R²)."""

import numpy as np
import pytest
from errors_support import one_line
from sklearn.tree import DecisionTreeClassifier

from leanlens.errors import BadOption
from leanlens.insight import global_surrogate, local_surrogate


def grid(side: int = 40) -> np.ndarray:
    """Points evenly spread over [-1, 1]², so shares of regions are known in advance."""
    axis = (np.arange(side) + 0.5) / side * 2 - 1
    return np.array([(a, b) for a in axis for b in axis])


def scores_of(decide):
    """A two-class model from a rule: probability 1 for class 1 where `decide` holds."""
    return lambda x: np.stack([1.0 - decide(x), decide(x)], axis=1).astype(float)


def test_the_surrogate_of_a_depth_3_tree_is_that_tree():
    # counts (integer features): any split between the same two values decides every row alike,
    # so a tree fit to part of the rows can match the model on the held-out ones exactly
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, size=(800, 3)).astype(float)
    y = ((x[:, 0] > 4) & (x[:, 1] > 2)) | (x[:, 2] > 7)
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    assert model.score(x, y) == 1.0
    surrogate = global_surrogate(model, x, max_depth=3)
    assert surrogate.fidelity == 1.0 and surrogate.train_fidelity == 1.0


def test_held_out_fidelity_is_the_agreement_a_hand_built_tree_would_have():
    x = grid()
    model = scores_of(lambda x: (x[:, 0] > 0) & (x[:, 1] > -0.5))  # class 1 in 3/8 of the square
    surrogate = global_surrogate(model, x, max_depth=1, random_state=0)
    # one split can only cut at x0 = 0 and call the right half class 1: wrong where x1 <= -0.5 there
    assert surrogate.tree.tree_.feature[0] == 0 and abs(surrogate.tree.tree_.threshold[0]) < 0.06
    held_out = np.setdiff1d(np.arange(len(x)), _fitted_rows(surrogate, x))
    wrong = (x[held_out, 0] > 0) & (x[held_out, 1] <= -0.5)
    assert surrogate.fidelity == pytest.approx(1 - wrong.mean())
    assert 0.8 < surrogate.fidelity < 0.95


def _fitted_rows(surrogate, x):
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(x)), test_size=0.25, random_state=0)[0]


def test_rules_name_features_and_categories():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"debt": rng.uniform(0, 1, 400), "job": rng.choice(["full", "none", "part"], 400)})
    refuse = (frame["debt"] > 0.6) | (frame["job"] == "none")

    def model(rows):
        decide = ((rows["debt"] > 0.6) | (rows["job"] == "none")).to_numpy(float)
        return np.stack([1 - decide, decide], axis=1)

    surrogate = global_surrogate(model, frame, max_depth=3)
    rules = surrogate.rules()
    assert surrogate.fidelity > 0.97 and refuse.mean() > 0.3
    assert "job in {none}" in rules and "job in {full, part}" in rules or "job in {full}" in rules
    assert any(line.strip().startswith("debt <= 0.6") or line.strip().startswith("debt <= 0.5") for line in rules.splitlines())
    leaves = [line for line in rules.splitlines() if "->" in line]
    assert len(leaves) == surrogate.tree.get_n_leaves() and all("rows)" in leaf for leaf in leaves)


def test_a_linear_model_is_its_own_local_surrogate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    weights = np.array([0.05, -0.02, 0.0])
    model = lambda rows: np.stack([0.5 - rows @ weights, 0.5 + rows @ weights], axis=1)
    surrogate = local_surrogate(model, 7, x, target=1, n_samples=300)
    assert surrogate.fidelity == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(surrogate.coef, weights, atol=1e-9)
    assert surrogate.intercept == pytest.approx(0.5)


def test_a_curve_at_its_bottom_has_no_local_linear_fidelity():
    x = np.vstack([[0.0, 0.0], grid(20)])  # row 0 sits at the vertex
    model = lambda rows: np.stack([rows[:, 0] ** 2, 1 - rows[:, 0] ** 2], axis=1)
    near = local_surrogate(model, 0, x, target=0, n_samples=4000, kernel_width=0.5)
    # symmetric noise around the vertex: x0 and x0² are uncorrelated, so a line explains nothing
    assert near.fidelity < 0.02
    far = local_surrogate(model, int(np.argmax(x[:, 0])), x, target=0, n_samples=4000, kernel_width=0.5)
    assert far.fidelity > 0.5  # on its flank the same curve looks far more like a line


def test_surrogate_mistakes_are_one_line():
    x = grid(10)
    model = scores_of(lambda x: x[:, 0] > 0)
    for call, message in [(lambda: global_surrogate(model, x, max_depth=0), "max_depth=0"),
                          (lambda: local_surrogate(model, 100, x), "row=100 for 100 rows"),
                          (lambda: local_surrogate(model, 0, x, kernel_width=0), "kernel_width=0")]:
        with pytest.raises(BadOption) as error:
            call()
        assert message in one_line(error)
