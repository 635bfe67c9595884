"""`explain()`: validate once, run a registered method, return an `Explanation`."""

from __future__ import annotations

import numpy as np
import torch

from leanlens.explain import cam, gradients  # noqa: F401  (register the methods)
from leanlens.explain.checks import as_batch, bind_options, require, resolve_target
from leanlens.explain.explanation import Explanation
from leanlens.explain.registry import lookup
from leanlens.models.torch_model import inference
from leanlens.models.wrap import wrap


def explain(model, x, method: str = "saliency", target=None, **options) -> Explanation:
    """Attribute each sample's target score to its input.

    Parameters
    ----------
    model : a torch module, an .onnx path or a leanlens Model.
    x : a batch, (N, ...) NumPy array or tensor.
    method : a name from `ll.methods()`, e.g. "ig", "gradcam++".
    target : class to explain; None (the predicted class), an int, or one int a sample.
    **options : the method's keyword options (see `ll.methods()[method].options`).
    """
    model = wrap(model)
    spec = lookup(method)
    require(model, spec.needs, method)
    x = as_batch(x, model)
    predictions = model.predict(x)
    target = resolve_target(target, predictions)
    options = bind_options(spec.fn, options, method)
    with inference(model.module):
        values, extra = spec.fn(model, model.to_tensor(x), torch.as_tensor(target, device=model.device), **options)
    extra = {k: _numpy(v) for k, v in extra.items()}
    if "layer" in extra:  # which layer a CAM method chose is an option the user may want to reuse
        options["layer"] = extra.pop("layer")
    return Explanation(values=_numpy(values), method=method, target=target, predictions=predictions, options=options, **extra)


def _numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return value if not isinstance(value, list) else np.asarray(value)
