"""Exact TreeSHAP for tree ensembles through the shap library (Lundberg et al., 2020, Nature MI).

Without a background the values are path-dependent (each tree's training cover stands in
for the data); with one they are interventional: the expectation over the background
rows of the model with the absent features taken from them, the same game KernelSHAP
plays with a background. Both are exact, in the space the trees add up in: probability
for forests and single trees, log-odds (binary) or per-class logits for gradient boosting.
"""

from __future__ import annotations

import warnings

import numpy as np

from leanlens.errors import BadInput, MissingCapability
from leanlens.insight.attribution import Attribution, resolve_target
from leanlens.insight.scorer import aligned
from leanlens.insight.tabular import as_table

# where shap's exact algorithm reads the trees; xgboost and lightgbm models when they are installed
OTHER_TREE_LIBRARIES = ("xgboost", "lightgbm")


def is_tree_model(model) -> bool:
    """A fitted tree or tree ensemble whose trees TreeSHAP can walk."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import BaseDecisionTree

    sklearn_trees = (BaseDecisionTree, RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier,
                     ExtraTreesRegressor, GradientBoostingClassifier, GradientBoostingRegressor)
    return isinstance(model, sklearn_trees) or type(model).__module__.split(".")[0] in OTHER_TREE_LIBRARIES


def tree_shap(model, x, *, background=None, target=None) -> Attribution:
    """Exact Shapley values of a tree ensemble's rows, with their `base_values`.

    Parameters
    ----------
    model : a fitted scikit-learn tree, forest, extra-trees or gradient-boosting model
        (XGBoost / LightGBM where installed), trained on numeric columns.
    x : rows to explain, a 2-D array or a DataFrame with the model's columns.
    background : rows the absent features are drawn from (interventional); None: the
        trees' own training cover (path-dependent).
    target : class to explain; None (each row's predicted class), an int, or one a row.
    """
    shap = _shap()
    if not is_tree_model(model):
        raise MissingCapability(f"TreeSHAP walks trees; a {type(model).__name__} has none",
                                "use ll.reasons or kernelshap for other models")
    table = _numeric(model, x, "x")
    data = None if background is None else _numeric(model, background, "background").matrix
    explainer = shap.TreeExplainer(model, data=data,
                                   feature_perturbation="tree_path_dependent" if data is None else "interventional")
    result = explainer(table.matrix, check_additivity=False)
    values, base = _with_output_axis(np.asarray(result.values), np.asarray(result.base_values), len(table))
    if data is not None:
        base = _interventional_base(model, table.decode(data), base)
    rows_as_given = table.decode(table.matrix)  # a DataFrame again for a model fit on one
    scores = model.predict_proba(rows_as_given) if hasattr(model, "predict_proba") else np.zeros((len(table), 1))
    chosen = resolve_target(target, scores)
    picked, picked_base = _for_class(values, base, chosen, getattr(model, "classes_", None))
    return Attribution(picked, picked_base, chosen, table.feature_names, "treeshap", _space(model, values.shape[2]))


def _interventional_base(model, background, base: np.ndarray) -> np.ndarray:
    """The mean of the model's raw output over the background: the interventional game's base value
    by definition. Computed here because shap 0.51 offsets every class of a multi-class XGBoost 3
    model by class 0's base_score (its values are right, its base_values are not)."""
    library = type(model).__module__.split(".")[0]
    if library == "xgboost":
        raw = model.predict(background, output_margin=True)
    elif library == "lightgbm":
        raw = model.predict(background, raw_score=True)
    else:
        from sklearn.ensemble import GradientBoostingClassifier

        scores = "decision_function" if isinstance(model, GradientBoostingClassifier) else (
            "predict_proba" if hasattr(model, "predict_proba") else "predict")
        raw = getattr(model, scores)(background)
    mean = np.asarray(raw, dtype=np.float64).reshape(len(background), -1).mean(0)
    return np.broadcast_to(mean, base.shape).copy() if mean.shape == base.shape[1:] else base


def _for_class(values: np.ndarray, base: np.ndarray, chosen: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """Each row's values (N, d) and base value (N,) for its chosen class, from (N, d, outputs) and (N, outputs)."""
    if values.shape[2] == 1 and classes is not None and len(classes) == 2:
        # one margin for two classes: the log-odds of classes_[1]; class 0's are its negative
        sign = np.where(chosen == 1, 1.0, -1.0)
        return values[:, :, 0] * sign[:, None], base[:, 0] * sign
    rows = np.arange(len(values))
    column = chosen if values.shape[2] > 1 else np.zeros_like(chosen)
    return values[rows, :, column].astype(np.float64), base[rows, column]


def _shap():
    try:
        with warnings.catch_warnings():  # shap's plotting colours warn about matplotlib on import; we draw none
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import shap
    except ImportError:
        raise MissingCapability("TreeSHAP needs the shap package",
                                "pip install 'leanlens[sklearn]' (or pip install shap)") from None
    return shap


def _numeric(model, rows, what: str):
    """`rows` as a table in the model's columns, refused if a column holds text (trees split numbers)."""
    table = as_table(aligned(model, rows, what), what=what)
    if table.text_columns:
        raise BadInput(f"TreeSHAP needs numeric columns; {list(table.text_columns)} hold text",
                       "encode them in a pipeline (explained with KernelSHAP by ll.reasons) or as numbers")
    return table


def _with_output_axis(values: np.ndarray, base: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Values as (N, d, outputs) and base values as (N, outputs), whatever shap's shape for one output."""
    if values.ndim == 2:
        values = values[:, :, None]
    base = np.asarray(base, dtype=np.float64)
    if base.ndim < 2:  # one a row for one output, or one an output for all rows
        base = base.reshape(-1, 1) if values.shape[2] == 1 else base.reshape(1, -1)
    return values, np.broadcast_to(base, (n, values.shape[2])).copy()


def _space(model, outputs: int) -> str:
    if not hasattr(model, "predict_proba"):
        return "raw"
    from sklearn.ensemble import GradientBoostingClassifier

    if isinstance(model, GradientBoostingClassifier) or type(model).__module__.split(".")[0] in OTHER_TREE_LIBRARIES:
        return "log-odds" if outputs == 1 else "logit"
    return "probability"
