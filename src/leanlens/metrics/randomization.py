"""The model-parameter randomization check (Adebayo et al., 2018), cascading from the output.

An explanation that still looks the same once the model's weights are random does not
explain the model. Layers are re-initialised from the output down, one more at each
step, on a copy of the model, and each step's explanation is compared with the original.
A faithful method's similarity falls as more layers are randomized.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.errors import MissingCapability
from leanlens.explain.api import explain
from leanlens.explain.options import generator
from leanlens.metrics.robustness import method_options
from leanlens.metrics.similarity import spearman
from leanlens.models.torch_model import TorchModel
from leanlens.models.wrap import wrap


@dataclass(frozen=True)
class RandomizationCheck:
    """Similarity to the original explanation after each randomization step."""

    layers: tuple[str, ...]  # the layer re-initialised at each step, output first; the earlier ones stay random
    similarity: np.ndarray  # (steps, N): one score a step and a sample

    def mean(self) -> np.ndarray:
        """(steps,) the mean similarity over the samples after each step."""
        return self.similarity.mean(axis=1)


def randomization_check(model, x, method: str = "saliency", target=None, *, options: Mapping | None = None,
                        similarity: Callable = spearman, seed: int = 0) -> RandomizationCheck:
    """Explain ``x`` again after re-initialising the layers from the output down, one more a step.

    The layers are the modules with a ``reset_parameters()`` (linear, convolution, batch
    norm, ...) in reverse registration order, as Quantus' MPRT (layer_order="top_down")
    takes them; each is reset right after ``torch.manual_seed(seed)``, with the global
    random state restored afterwards. The user's model is never touched: a deep copy is.

    Parameters
    ----------
    model : a PyTorch module or its leanlens Model.
    x, method, target : as for `ll.explain`; every step explains the original's target classes.
    options : the method's keyword options, as a mapping.
    similarity : a function of two batches of maps giving one score a sample (Spearman by
        default; any of `leanlens.metrics.SIMILARITIES`, or `ssim`).
    seed : seeds each re-initialisation.
    """
    model = wrap(model)
    options = method_options(options)
    seed = generator(seed).initial_seed()  # checks the seed the way every method does
    if not isinstance(model, TorchModel):
        raise MissingCapability(f"the randomization check re-initialises torch layers, and a {model.framework} "
                                "model has none it can reach", "pass the PyTorch module the model was made from")
    original = explain(model, x, method, target, **options)
    twin = TorchModel(copy.deepcopy(model.module), output=model.output)
    layers = [(name, m) for name, m in twin.module.named_modules() if callable(getattr(m, "reset_parameters", None))]
    if not layers:
        raise MissingCapability("the model has no layer with reset_parameters() to randomize",
                                "build it from torch.nn layers (Linear, Conv2d, ...)")
    scores = []
    with torch.random.fork_rng():  # the user's random stream goes on as if nothing was drawn
        for _, layer in reversed(layers):
            torch.manual_seed(seed)
            layer.reset_parameters()
            scores.append(similarity(original.values, explain(twin, x, method, original.target, **options).values))
    return RandomizationCheck(tuple(name or "<model>" for name, _ in reversed(layers)), np.stack(scores))
