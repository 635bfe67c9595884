"""KernelSHAP of tabular rows against a background set, for models that are not trees.

`ll.explain(..., "kernelshap", background=rows)` plays the interventional game shap's
KernelExplainer plays with a background: an absent feature takes each background row's
value in turn and a coalition's payoff is the mean of the model's scores over them. The
rows go to it as the table's codes, and every batch is decoded before the model sees it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leanlens.insight.attribution import Attribution, resolve_target
from leanlens.insight.scorer import Scorer
from leanlens.insight.tabular import Table

DEFAULT_BACKGROUND = 20  # rows: a coalition's payoff is the mean over them
ROWS_A_CALL = 64  # rows a call of ll.explain; progress is reported between calls


def background_rows(table: Table, background: Table | None, size: int = DEFAULT_BACKGROUND,
                    seed: int = 0) -> Table:
    """The given background, or `size` rows of the data drawn without replacement (seeded)."""
    if background is not None:
        return background
    if len(table) <= size:
        return table
    return table.rows(background_indices(len(table), size, seed))


def background_indices(n: int, size: int = DEFAULT_BACKGROUND, seed: int = 0) -> np.ndarray | slice:
    """Which of `n` rows stand for "typical": `size` of them drawn without replacement (seeded), sorted."""
    if n <= size:
        return slice(0, n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def kernel_shap(scorer: Scorer, table: Table, background: Table, *, target=None, samples: int | None = None,
                seed: int = 0, on_progress: Callable[[int, int], None] | None = None) -> Attribution:
    """KernelSHAP values of every row of `table` for its target class, against `background`
    (coded with the table's categories: see `tabular.with_background`).

    `samples` is `kernelshap`'s coalition budget (default: every coalition up to 11
    features, which makes the values exact Shapley values of the background game).
    """
    from leanlens.explain import explain

    chosen = resolve_target(target, scorer.scores(table))
    values, base = np.empty(table.matrix.shape), np.empty(len(table))
    for start in range(0, len(table), ROWS_A_CALL):
        rows = slice(start, min(start + ROWS_A_CALL, len(table)))
        explanation = explain(lambda m: scorer.scores(table, m), table.matrix[rows], "kernelshap",
                              target=chosen[rows], background=background.matrix, samples=samples, seed=seed,
                              batch_size=8192)
        values[rows], base[rows] = explanation.values, explanation.base_values
        if on_progress is not None:
            on_progress(rows.stop, len(table))
    return Attribution(values, base, chosen, table.feature_names, "kernelshap", scorer.space)
