"""Insight results as JSON payloads, the form a store keeps them in as attachments and the report draws.

One function, `to_payload`, turns each result into its kind and a dict of plain values:
importance (means, spreads and intervals a feature), a tree surrogate (fidelity and its
rules as text) and reason codes (how often each feature is cited for each decision, and
the first rows with their reasons; the whole table is the `leanlens reasons --out` file).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from leanlens.errors import BadInput
from leanlens.insight.importance import Importance
from leanlens.insight.reasons import ReasonCodes
from leanlens.insight.surrogate import TreeSurrogate

EXAMPLE_ROWS = 20  # rows of reason codes a payload keeps for the report to show


def to_payload(result) -> tuple[str, dict]:
    """(kind, payload) of an `Importance`, a `TreeSurrogate` or `ReasonCodes`, for `Store.attach`."""
    for kind, (result_type, make) in _KINDS.items():
        if isinstance(result, result_type):
            return kind, make(result)
    raise BadInput(f"a {type(result).__name__} has no attachment form",
                   "attach an Importance, a TreeSurrogate or ReasonCodes from leanlens.insight")


def _importance(result: Importance) -> dict:
    return {"method": result.method, "feature_names": list(result.feature_names),
            "mean": _floats(result.importances_mean), "std": _floats(result.importances_std),
            "ci_low": _floats(result.ci_low), "ci_high": _floats(result.ci_high),
            "confidence": result.confidence, "repeats": int(result.importances.shape[1]),
            "baseline_score": float(result.baseline_score)}


def _surrogate(result: TreeSurrogate) -> dict:
    return {"fidelity": result.fidelity, "train_fidelity": result.train_fidelity,
            "depth": int(result.tree.get_depth()), "leaves": int(result.tree.get_n_leaves()),
            "classes": [str(c) for c in result.classes], "feature_names": list(result.table.feature_names),
            "rules": result.rules()}


def _reasons(result: ReasonCodes) -> dict:
    counts = Counter(str(d) for d in result.decisions.tolist())
    return {"method": result.method, "space": result.space, "rows": len(result), "top": int(result.features.shape[1]),
            "decisions": dict(counts.most_common()),
            "summary": {str(decision): [[feature, first, cited] for feature, first, cited in cited_features]
                        for decision, cited_features in result.summary().items()},
            "examples": [_json_safe(record) for record in result.records()[:EXAMPLE_ROWS]]}


def _floats(values) -> list[float] | None:
    return None if values is None else [float(v) for v in np.asarray(values)]


def _json_safe(record: dict) -> dict:
    """A reason-code record with a missing value (NaN) as None: JSON has no NaN."""
    def plain(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    reasons = [{**reason, "value": plain(reason["value"])} for reason in record["reasons"]]
    return {**record, "decision": plain(record["decision"]), "reasons": reasons}


_KINDS = {"importance": (Importance, _importance), "surrogate": (TreeSurrogate, _surrogate),
          "reasons": (ReasonCodes, _reasons)}
