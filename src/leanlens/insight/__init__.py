"""Global explanations for tabular models: TreeSHAP, permutation and drop-column importance,
surrogates, and credit-style reason codes. Works on fitted scikit-learn estimators and
pipelines, leanlens Models and predict_proba-like functions, with arrays or pandas DataFrames."""

from leanlens.insight.attribution import Attribution
from leanlens.insight.credit import credit_applications
from leanlens.insight.importance import (
           Importance,
           drop_column_importance,
           permutation_importance,
)
from leanlens.insight.payloads import to_payload
from leanlens.insight.reasons import ReasonCodes, reasons
from leanlens.insight.surrogate import (
           LinearSurrogate,
           TreeSurrogate,
           global_surrogate,
           local_surrogate,
)
from leanlens.insight.treeshap import is_tree_model, tree_shap

__all__ = ["Attribution", "Importance", "LinearSurrogate", "ReasonCodes", "TreeSurrogate", "credit_applications",
           "drop_column_importance", "global_surrogate", "is_tree_model", "local_surrogate",
           "permutation_importance", "reasons", "to_payload", "tree_shap"]
