"""leanlens: compress a model and prove it still decides for the same reasons.

    import leanlens as ll
    model = ll.wrap(module)
    exp = ll.explain(model, x, method="gradcam++")
    small = ll.prune(model, data, ratio=0.5, criterion="taylor")
    q = ll.quantize(small, data, scheme="int8")
    result = ll.audit(reference=model, candidate=q, data=data)
"""

from leanlens import data, scale
from leanlens.audit import (
    AuditResult,
    ModelFigures,
    Verdict,
    assess,
    audit,
    check,
    explaining_cost,
    profile,
)
from leanlens.compression import (
    Budget,
    Replay,
    compress,
    finetune,
    prune,
    quantize,
    sparsify,
)
from leanlens.errors import (
    BadInput,
    BadOption,
    LeanlensError,
    MissingCapability,
    UnknownMethod,
)
from leanlens.explain import Explanation, attribute, explain, methods
from leanlens.insight import reasons
from leanlens.metrics import ExplanationScores
from leanlens.models import Model, wrap
from leanlens.models.modelfile import load, save
from leanlens.report import report
from leanlens.store import Store

__version__ = "0.1.0"

__all__ = [
    "AuditResult", "BadInput", "BadOption", "Budget", "Explanation", "ExplanationScores", "LeanlensError",
    "MissingCapability",
    "Model", "ModelFigures", "Replay", "Store", "UnknownMethod", "Verdict", "assess", "attribute", "audit", "check",
    "compress", "data", "explain", "explaining_cost", "finetune", "load", "methods", "profile",
    "prune", "quantize", "reasons", "report", "save", "scale", "sparsify", "wrap",
]
