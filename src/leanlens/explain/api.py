"""`explain()` and `attribute()`: validate once, run a registered method.

`explain()` is the everyday entry point: NumPy out, an `Explanation` with the targets
and predictions. `attribute()` returns the raw tensor on the model's device, and with
`create_graph=True` a loss on it can be differentiated back to the weights.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain import cam, gradients, lime, occlusion, shapley  # noqa: F401  (register the methods)
from leanlens.explain.checks import (
    as_batch,
    as_checked_tensor,
    as_tensor,
    bind_options,
    require,
)
from leanlens.explain.explanation import Explanation
from leanlens.explain.options import chunk_size, flag
from leanlens.explain.registry import lookup
from leanlens.explain.targets import Targets, class_scores, runs_own_forward
from leanlens.models.base import GRADIENTS
from leanlens.models.tables import is_frame, table_input
from leanlens.models.wrap import wrap
from leanlens.text.attributions import explain_text, is_text_batch


def explain(model, x, method: str = "saliency", target=None, *, autocast: bool = False, engine=None,
            **options) -> Explanation:
    """Attribute each sample's target score to its input.

    Parameters
    ----------
    model : a torch module, an .onnx path, a function of a NumPy batch, or a leanlens Model.
    x : a batch, (N, ...) NumPy array or tensor, or a pandas DataFrame (one feature a column;
        the explanation carries the column names as `feature_names`).
    method : a name from `ll.methods()`, e.g. "ig", "gradcam++".
    target : class to explain; None (the predicted class), an int, or one int a sample.
    autocast : run the model under bfloat16/float16 autocast (GPU; CPU uses bfloat16).
        Faster on tensor-core GPUs, at the cost of about three significant digits.
    engine : None (this process), or "ray" / `leanlens.scale.Ray(...)`: the same explanation,
        computed in shards on a Ray cluster (docs/scale.md).
    **options : the method's keyword options (see `ll.methods()[method].options`).

    A list of strings is explained over its tokens (see `leanlens.text.attributions`): the
    model is then a text classifier, with `tokenizer=` for a transformers one.
    """
    if is_text_batch(x):
        if engine is not None:
            raise BadOption("engine= does not take texts yet", "explain texts in this process (leave engine out)")
        return explain_text(model, x, method, target, **options)
    if engine is not None:  # leanlens.scale: equal to this process's run, computed in shards
        from leanlens.scale import explain_on_ray

        return explain_on_ray(engine, model, x, method, target, autocast=autocast, **options)
    model = wrap(model)
    # a misspelt method, or one the model cannot run, is reported before anything about the batch
    require(model, lookup(method).needs, method)
    model, x, options, feature_names = _table(model, x, options)
    x = as_batch(x, model)
    values, extra, targets, options, deployed = _run(model, x, method, target, autocast, options)
    predictions = targets.scores.cpu().numpy() if deployed is None else deployed
    extra = {k: _numpy(v) for k, v in extra.items()}
    for chosen in ("layer", "rule"):  # what a method chose (a CAM layer, IG's rule) is an option to reuse
        if chosen in extra:
            options[chosen] = extra.pop(chosen)
    if deployed is not None and GRADIENTS in lookup(method).needs:
        # the gradients came from a stand-in (an int8 graph's float twin): keep what it scored,
        # so that the explanation says how closely its stand-in follows the deployed model
        extra["stand_in_scores"] = targets.scores.cpu().numpy()
    return Explanation(values=_numpy(values), method=method, target=targets.indices(), predictions=predictions,
                       options=options, feature_names=feature_names, **extra)


def _table(model, x, options: dict):
    """A DataFrame (and a DataFrame background) as the numbers methods perturb, the model to call
    on them, and the column names; any other batch as it is."""
    if not is_frame(x):
        return model, x, options, None
    table = table_input(model, x, options.get("background"))
    if table.background is not None:
        options = {**options, "background": table.background}
    return table.model, table.x, options, table.feature_names


def attribute(model, x, method: str = "saliency", target=None, *, autocast: bool = False, **options) -> torch.Tensor:
    """The attributions as a tensor on the model's device (`explain()` without the NumPy).

    With `create_graph=True` (gradient and CAM methods) the parameters stay trainable and
    the result carries its graph: `loss(attribute(...)).backward()` reaches the weights.
    """
    model = wrap(model)
    require(model, lookup(method).needs, method)
    x = as_checked_tensor(x, model)
    return _run(model, x, method, target, autocast, options)[0]


def _deployed_scores(model, x, batch_size: int | None) -> np.ndarray | None:
    """The real model's scores when gradients come from a stand-in (an ONNX graph's twin) or
    there are none (a black box): its predicted class is the one to explain. None when the
    model's own forward will score the batch anyway."""
    if runs_own_forward(model):
        return None
    batch = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    return model.predict(batch, batch_size=chunk_size(batch_size, len(batch)))


def _run(model, x, method, target, autocast, options):
    """Check, run the method; the values, its extras, the targets, the bound options, and the
    deployed model's scores when the method's own forward is not the deployed model's."""
    spec = lookup(method)
    options = bind_options(spec.fn, options, method)
    create_graph = flag("create_graph", options["create_graph"]) if "create_graph" in options else False
    deployed = _deployed_scores(model, x, options.get("batch_size"))
    targets = Targets(deployed.argmax(-1) if target is None and deployed is not None else target, len(x))
    tensor = x if isinstance(x, torch.Tensor) else as_tensor(model, x)
    # Gradient methods must work inside torch.no_grad() and torch.inference_mode() blocks too
    # (Lightning validates in the latter); a tensor made in inference mode is copied out of it.
    with torch.inference_mode(False), _session(model, create_graph), torch.enable_grad(), \
            _autocast(autocast, tensor.device):
        if tensor.is_inference():
            tensor = tensor.clone()
        values, extra = spec.fn(model, tensor, targets, **options)
    if not targets.complete:  # a method that never scored the clean batch itself
        targets.pick(class_scores(model, tensor))
    if values.dtype in (torch.float16, torch.bfloat16):  # autocast's output, back to full precision
        values = values.float()
    return values, extra, targets, options, deployed


def _session(model, create_graph: bool):
    """The model in eval mode, weights frozen unless a loss will reach them (gradient models only)."""
    if GRADIENTS not in model.capabilities:
        return contextlib.nullcontext()
    return model.inference(freeze=not create_graph)


def _autocast(enabled: bool, device: torch.device):
    if not flag("autocast", enabled):
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _numpy(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        # float64 stays float64 (a double model's attributions keep their precision);
        # half and bfloat16, which NumPy lacks or computes poorly in, become float32
        return (value if value.dtype == torch.float64 else value.float()).numpy()
    return value if not isinstance(value, list) else np.asarray(value)
