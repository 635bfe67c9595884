"""Reason codes: for every row, the decision, its score, and the features that pushed the model to it.

A row's contribution of a feature is its Shapley value for the score of the class the
model decided (exact TreeSHAP for tree ensembles, KernelSHAP against a background
otherwise): positive means the feature's value moved the model *toward* its decision,
away from the background's average. For a lender whose model decides "defaulted", the
reasons of a refusal are the features that most raised the predicted risk. The top
reasons are the `top` largest contributions, most supporting first (signed: a row with
fewer supporting features lists opposing ones last, with their negative sign).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from leanlens.errors import BadOption
from leanlens.insight.kernel import background_rows, kernel_shap
from leanlens.insight.scorer import Scorer, prepare
from leanlens.insight.tabular import Table
from leanlens.insight.treeshap import is_tree_model, tree_shap


@dataclass(frozen=True)
class ReasonCodes:
    """Decisions with their top reasons, one row a row of the data."""

    feature_names: tuple[str, ...]
    decisions: np.ndarray  # (N,) the decided class's label
    scores: np.ndarray  # (N,) the model's score for it (a probability for predict_proba models)
    features: np.ndarray  # (N, top) feature indices, most supporting first
    values: np.ndarray  # (N, top) the row's value of each reason (object: numbers or categories)
    contributions: np.ndarray  # (N, top) signed, toward the decision, in `space`
    method: str  # "treeshap" or "kernelshap"
    space: str  # what the contributions add up to: "probability", "log-odds", "logit" or "score"

    def __len__(self) -> int:
        return len(self.decisions)

    def records(self) -> list[dict]:
        """One dict a row: row, decision, score and its reasons (feature, value, contribution), for JSON."""
        return [{"row": i, "decision": _plain(self.decisions[i]), "score": float(self.scores[i]),
                 "reasons": [{"feature": self.feature_names[j], "value": _plain(v), "contribution": float(c)}
                             for j, v, c in zip(self.features[i], self.values[i], self.contributions[i])]}
                for i in range(len(self))]

    def columns(self) -> dict[str, list]:
        """Flat columns for a CSV: row, decision, score, then reason_k, value_k, contribution_k a reason."""
        table = {"row": list(range(len(self))), "decision": [_plain(d) for d in self.decisions],
                 "score": [float(s) for s in self.scores]}
        for k in range(self.features.shape[1]):
            table[f"reason_{k + 1}"] = [self.feature_names[j] for j in self.features[:, k]]
            table[f"value_{k + 1}"] = [_plain(v) for v in self.values[:, k]]
            table[f"contribution_{k + 1}"] = [float(c) for c in self.contributions[:, k]]
        return table

    def summary(self) -> dict[object, list[tuple[str, int, int]]]:
        """For each decision, the features its rows cite: (feature, times first reason, times in the top)."""
        out = {}
        for decision in _ordered(self.decisions):
            rows = self.decisions == decision
            first = Counter(self.features[rows, 0].tolist())
            cited = Counter(self.features[rows].ravel().tolist())
            ranked = sorted(cited, key=lambda j: (-first[j], -cited[j], j))
            out[_plain(decision)] = [(self.feature_names[j], first[j], cited[j]) for j in ranked]
        return out


def reasons(model, x, *, top: int = 4, background=None, samples: int | None = None, seed: int = 0,
            on_progress: Callable[[int, int], None] | None = None, engine=None) -> ReasonCodes:
    """Reason codes of every row of `x`: the decision, its score and its `top` reasons.

    Parameters
    ----------
    model : a fitted scikit-learn classifier or pipeline with `predict_proba`, a leanlens
        Model (ONNX, torch), or a function of the rows (as given) returning class scores.
    x : the rows, a DataFrame (feature names and text categories carried) or a 2-D array.
    top : reasons a row (at most the number of features).
    background : rows standing for "typical"; None: the trees' own cover for a tree
        ensemble, 20 rows of `x` (seeded) for KernelSHAP.
    samples, seed : KernelSHAP's coalition budget and seed (see `ll.methods()`).
    on_progress : called with (rows done, rows) while KernelSHAP runs.
    engine : None (this process), or "ray" / `leanlens.scale.Ray(...)`: the same codes, in shards on Ray.
    """
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise BadOption(f"top={top!r}", "ask for at least one reason a row, e.g. top=4")
    if engine is not None:  # leanlens.scale: equal to this process's run, computed in shards
        from leanlens.scale import reasons_on_ray

        return reasons_on_ray(engine, model, x, top=int(top), background=background, samples=samples, seed=seed,
                              on_progress=on_progress)
    scorer, table, given = prepare(model, x, background)
    scores = scorer.scores(table)
    decided = scores.argmax(1)
    if walks_trees(scorer, table):
        attribution = tree_shap(model, x, background=background, target=decided)
    else:
        attribution = kernel_shap(scorer, table, background_rows(table, given, seed=seed), target=decided,
                                  samples=samples, seed=seed, on_progress=on_progress)
    order = np.argsort(-attribution.values, axis=1, kind="stable")[:, : min(int(top), table.matrix.shape[1])]
    rows = np.arange(len(table))[:, None]
    values = np.array([[table.value(i, j) for j in order[i]] for i in range(len(table))], dtype=object)
    return ReasonCodes(table.feature_names, scorer.classes[decided], scores[np.arange(len(table)), decided],
                       order, values, attribution.values[rows, order], attribution.method, attribution.space)


def walks_trees(scorer: Scorer, table: Table) -> bool:
    """Exact TreeSHAP applies: a bare tree ensemble on numeric columns (a pipeline goes to KernelSHAP)."""
    return scorer.estimator is not None and is_tree_model(scorer.estimator) and not table.text_columns


def _ordered(labels: np.ndarray) -> list:
    """The distinct labels, most frequent first."""
    return [label for label, _ in Counter(labels.tolist()).most_common()]


def _plain(value):
    """A NumPy scalar as the Python value JSON and CSV writers take."""
    return value.item() if isinstance(value, np.generic) else value
