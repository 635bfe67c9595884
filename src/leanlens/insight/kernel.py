"""KernelSHAP of tabular rows against a background set, for models that are not trees.

leanlens' `kernelshap` method plays a game against one baseline a sample. With a
background of B rows, each row is explained B times, once against each background row,
with the same coalitions (the same seed); the values are linear in the game's payoffs,
so their mean is KernelSHAP of the game whose absent features take the background's
values: the interventional game shap's KernelExplainer plays with a background.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leanlens.insight.attribution import Attribution, resolve_target
from leanlens.insight.scorer import Scorer
from leanlens.insight.tabular import Table

DEFAULT_BACKGROUND = 20  # rows: each row is explained once against each of them
ROWS_A_CALL = 64  # rows a call of ll.explain; progress is reported between calls


def background_rows(table: Table, background: Table | None, size: int = DEFAULT_BACKGROUND,
                    seed: int = 0) -> Table:
    """The given background, or `size` rows of the data drawn without replacement (seeded)."""
    if background is not None:
        return background
    if len(table) <= size:
        return table
    return table.rows(np.sort(np.random.default_rng(seed).choice(len(table), size, replace=False)))


def kernel_shap(scorer: Scorer, table: Table, background: Table, *, target=None, samples: int | None = None,
                seed: int = 0, on_progress: Callable[[int, int], None] | None = None) -> Attribution:
    """KernelSHAP values of every row of `table` for its target class, against `background`
    (coded with the table's categories: see `tabular.with_background`).

    `samples` is `kernelshap`'s coalition budget (default: every coalition up to 11
    features, which makes the values exact Shapley values of the background game).
    """
    from leanlens.explain import explain

    chosen = resolve_target(target, scorer.scores(table))
    n, b, d = len(table), len(background), table.matrix.shape[1]
    values = np.empty((n, d))
    for start in range(0, n, ROWS_A_CALL):
        rows = np.arange(start, min(start + ROWS_A_CALL, n))
        # each row paired with every background row; the pairs share the coalitions drawn from `seed`
        pairs = np.repeat(table.matrix[rows], b, axis=0)
        explanation = explain(lambda m: scorer.scores(table, m), pairs, "kernelshap",
                              target=np.repeat(chosen[rows], b), baseline=np.tile(background.matrix, (len(rows), 1)),
                              samples=samples, seed=seed, batch_size=8192)
        values[rows] = explanation.values.reshape(len(rows), b, d).mean(1)
        if on_progress is not None:
            on_progress(int(rows[-1]) + 1, n)
    base = scorer.scores(background)[:, chosen].mean(0)  # each row's class, averaged over the background
    return Attribution(values, base, chosen, table.feature_names, "kernelshap", scorer.space)
