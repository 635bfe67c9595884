"""How far a model being compressed has moved from the original's explanations."""

from __future__ import annotations

import numpy as np

from leanlens.errors import MissingCapability
from leanlens.explain.api import explain
from leanlens.metrics.similarity import spearman
from leanlens.models.torch_model import TorchModel

METHOD = "gradcam++"


class ExplanationDrift:
    """Grad-CAM++ maps of the original on a few held-out probes, for their true classes, and the
    mean Spearman correlation of a candidate's maps with them (1: ranked the same way).
    Models without a spatial layer have no CAM: their similarity is None."""

    def __init__(self, x: np.ndarray, y: np.ndarray, layer: str | None, reference: np.ndarray | None):
        self.x, self.y, self.layer, self.reference = x, y, layer, reference

    @classmethod
    def of(cls, original: TorchModel, held, probes: int) -> ExplanationDrift:
        x, y = held.x[:probes], held.y[:probes]
        try:
            maps = explain(original, x, method=METHOD, target=y)
        except MissingCapability:
            return cls(x, y, None, None)
        return cls(x, y, maps.options["layer"], maps.values)

    def similarity(self, model: TorchModel) -> float | None:
        if self.reference is None or len(self.x) == 0:
            return None
        maps = explain(model, self.x, method=METHOD, target=self.y, layer=self.layer)
        return float(np.mean(spearman(maps.values, self.reference)))
