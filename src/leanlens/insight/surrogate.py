"""Surrogates: simple models that imitate a complex one, with how faithfully they do it.

A global surrogate is a shallow decision tree fit to the model's decisions; its fidelity
is the share of held-out rows on which it decides as the model does (Craven & Shavlik,
1996). A local surrogate is a weighted linear fit of the model's score for one class
around one row, LIME-style (Ribeiro et al., 2016); its fidelity is the weighted R² of
that fit on the perturbed rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leanlens.errors import BadInput, BadOption
from leanlens.insight.attribution import resolve_target
from leanlens.insight.scorer import prepare
from leanlens.insight.tabular import Table


@dataclass(frozen=True)
class TreeSurrogate:
    """A decision tree that imitates a model's decisions, over the model's features (categories coded)."""

    tree: object  # a fitted sklearn DecisionTreeClassifier over class indices
    fidelity: float  # share of held-out rows where tree and model decide alike
    train_fidelity: float  # the same on the rows the tree was fit to
    classes: np.ndarray  # the model's class labels; the tree predicts indices into them
    table: Table  # feature names and categories, for the rules

    def rules(self) -> str:
        """The tree as nested if-rules with feature names, one leaf a line with its decision."""
        from leanlens.insight.rules import tree_rules

        return tree_rules(self.tree, self.table, self.classes)


@dataclass(frozen=True)
class LinearSurrogate:
    """A linear model of one class's score around one row: score ≈ intercept + coef · x."""

    coef: np.ndarray  # (d,) per unit of each feature (a category's code for a text column)
    intercept: float
    fidelity: float  # weighted R² on the perturbed rows
    target: int  # the class index whose score is fit
    feature_names: tuple[str, ...]


def global_surrogate(model, x, *, max_depth: int = 3, test_size: float = 0.25, random_state=0) -> TreeSurrogate:
    """A depth-limited decision tree fit to the model's decisions on part of `x`, scored on the rest."""
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    if not isinstance(max_depth, int) or max_depth < 1:
        raise BadOption(f"max_depth={max_depth!r}", "use a positive int, e.g. 3")
    scorer, table, _ = prepare(model, x)
    if len(table) < 4:
        raise BadInput(f"{len(table)} rows are too few to fit a surrogate and hold some out", "pass more rows")
    decisions = scorer.decisions(table)
    train, test = train_test_split(np.arange(len(table)), test_size=test_size, random_state=random_state)
    tree = DecisionTreeClassifier(max_depth=max_depth, random_state=random_state)
    tree.fit(table.matrix[train], decisions[train])
    agree = tree.predict(table.matrix) == decisions
    return TreeSurrogate(tree, float(agree[test].mean()), float(agree[train].mean()), scorer.classes, table)


def local_surrogate(model, row: int, x, *, target=None, n_samples: int = 1000, kernel_width: float | None = None,
                    random_state=0) -> LinearSurrogate:
    """A weighted linear fit of one class's score around row `row` of `x`.

    Perturbed rows: numeric features move by Gaussian noise with each column's standard
    deviation in `x`; a categorical one takes a random row's category. Each is weighted by
    exp(-D² / kernel_width²), D its distance to the row in standardised units (a changed
    category counts 1); `kernel_width` defaults to 0.75 √d, LIME's choice.
    """
    from sklearn.linear_model import LinearRegression

    scorer, table, _ = prepare(model, x)
    if not isinstance(row, (int, np.integer)) or not 0 <= row < len(table):
        raise BadOption(f"row={row!r} for {len(table)} rows", f"pass a row index in 0..{len(table) - 1}")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 10:
        raise BadOption(f"n_samples={n_samples!r}", "use an int >= 10, e.g. 1000")
    d = table.matrix.shape[1]
    width = 0.75 * np.sqrt(d) if kernel_width is None else float(kernel_width)
    if width <= 0:
        raise BadOption(f"kernel_width={kernel_width!r}", "use a positive width, or None for 0.75 * sqrt(d)")
    rows, distance = _neighbours(table, row, n_samples, np.random.default_rng(random_state))
    scores = scorer.scores(table, rows)
    chosen = int(resolve_target(target, scorer.scores(table.rows([row])))[0])
    weights = np.exp(-(distance**2) / width**2)
    fit = LinearRegression().fit(rows, scores[:, chosen], sample_weight=weights)
    fidelity = float(fit.score(rows, scores[:, chosen], sample_weight=weights))
    return LinearSurrogate(fit.coef_, float(fit.intercept_), fidelity, chosen, table.feature_names)


def _neighbours(table: Table, row: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n perturbed copies of the row (the row itself first) and their standardised distances to it."""
    centre = table.matrix[row]
    scale = table.matrix.std(0)
    scale[scale == 0] = 1.0  # a constant column cannot move
    categorical = np.array([c is not None for c in table.categories])
    rows = centre + rng.normal(size=(n, len(centre))) * scale
    drawn = table.matrix[rng.integers(len(table), size=n)]
    rows[:, categorical] = drawn[:, categorical]
    rows[0] = centre
    steps = np.where(categorical, rows != centre, (rows - centre) / scale)
    return rows, np.sqrt((steps.astype(np.float64) ** 2).sum(1))
