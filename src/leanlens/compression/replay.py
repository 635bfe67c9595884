"""Explanation replay: a loss that keeps a model explaining stored probes as a reference did.

`finetune(..., replay=Replay(...))` adds `weight · distance(current map, reference map)` on a
few replay probes to every training step, where the current map comes from
`attribute(..., create_graph=True)` so that the distance is differentiated back to the
weights. Memory replay of explanations, in the spirit of attribution-preserving
compression (Park et al., NeurIPS 2020). The maps are taken in eval mode, as `explain()`
takes them (batch-norm running statistics, no dropout), so replay preserves the
explanations users see, and the replay batch leaves the running statistics alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from leanlens.errors import BadInput, BadOption, UnknownMethod, closest
from leanlens.explain.api import attribute
from leanlens.explain.checks import bind_options
from leanlens.explain.explanation import Explanation
from leanlens.explain.options import positive_int, real
from leanlens.explain.registry import lookup

# Options that replay sets itself: the graph it needs, and no BN-folded copy (which cannot
# carry one); `layer` has its own field, and `batch_size` means replay probes a step here.
RESERVED = ("create_graph", "fold_bn", "layer", "batch_size")
DIFFERENTIABLE_HINT = "use 'gradcam', 'gradcam++', 'input_x_gradient', 'saliency', 'ig' or 'smoothgrad'"
FLOOR = 1e-9  # share of the mean squared map length under which a map counts as all zero
METRICS = ("pearson", "spearman")  # what the distance is one minus
RANKED_CELLS = 16  # the soft-ranked map's side: a CAM's own grid on the demo's 64 px images
SOFTNESS = 0.1  # the soft rank's sigmoid width, in standard deviations of the map


@dataclass(frozen=True, eq=False)
class Replay:
    """Probes and the explanations to preserve on them while fine-tuning.

    Parameters
    ----------
    x : the replay probes, a batch (N, ...). Keep held-out probes apart to measure what replay kept.
    reference : the reference explanation of `x` (e.g. `ll.explain(v0, x, method).values`):
        the shape of `x`, or its spatial grid (N, H, W) for CAM methods.
    target : the class each probe is explained for, one int or one a probe.
    method : a differentiable attribution method; Grad-CAM costs about two plain steps.
    weight : λ, the weight of the explanation distance beside the task loss (0 turns replay off).
    layer : the CAM layer; None picks the last spatial one. Pruning keeps layer names.
    batch_size : replay probes drawn each training step, so a step's cost stays bounded.
    options : further options of the method, e.g. {"steps": 16} for "ig".
    metric : the distance: "pearson" (1 − Pearson correlation of the maps) or "spearman" (1 − Pearson of their
        soft ranks, on maps pooled to at most 16×16 cells: nearer the Spearman figure the gate reads,
        which weighs the faint background's order as much as the peak's).
    """

    x: np.ndarray
    reference: np.ndarray
    target: Any
    method: str = "gradcam"
    weight: float = 1.0
    layer: str | None = None
    batch_size: int = 16
    options: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "pearson"

    def __post_init__(self) -> None:
        spec = lookup(self.method)  # UnknownMethod with the closest names
        if "create_graph" not in spec.options:
            raise BadOption(f"replay method {self.method!r} cannot be differentiated to the weights", DIFFERENTIABLE_HINT)
        _check_options(self.method, spec, self.options, self.layer)
        if self.metric not in METRICS:
            raise UnknownMethod(f"unknown replay metric {self.metric!r}", closest(str(self.metric), METRICS))
        x = _finite_batch("replay x", self.x)
        reference = _finite_batch("reference", self.reference)
        expected = (len(x), *x.shape[2:]) if spec.family == "cam" else x.shape
        if reference.shape != expected:
            raise BadInput(f"reference has shape {reference.shape}, but {self.method!r} on x of shape {x.shape} "
                           f"gives {expected}", "pass the reference explanation of these probes: "
                           "Replay.from_explanation(ll.explain(v0, x, method), x)")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "reference", reference)
        object.__setattr__(self, "target", _targets(self.target, len(x)))
        object.__setattr__(self, "weight", real("weight", self.weight, "use a weight >= 0 such as 1.0 (0 turns replay off)", low=0.0))
        object.__setattr__(self, "batch_size", positive_int("batch_size", self.batch_size, "use a positive int such as 16"))
        object.__setattr__(self, "options", dict(self.options))

    @classmethod
    def from_explanation(cls, explanation: Explanation, x, *, weight: float = 1.0, batch_size: int = 16,
                         metric: str = "pearson") -> Replay:
        """Replay `explanation` of the probes `x`: its values, targets, method, layer and options."""
        if not isinstance(explanation, Explanation):
            raise BadInput(f"from_explanation() takes an ll.Explanation, got {type(explanation).__name__}",
                           "pass the result of ll.explain(model, x, method)")
        options = {k: v for k, v in explanation.options.items() if k not in RESERVED}
        return cls(x, explanation.values, explanation.target, explanation.method, weight,
                   explanation.options.get("layer"), batch_size, options, metric)

    def __len__(self) -> int:
        return len(self.x)

    def loss(self, model, rows: np.ndarray) -> torch.Tensor:
        """`weight` × the mean distance on probes `rows`, differentiable to the model's weights."""
        current = self._attribute(model, rows, create_graph=True)
        reference = torch.as_tensor(self.reference[rows], device=current.device)
        return self.weight * self._distance(current, reference).mean()

    def distance(self, model) -> float:
        """The mean distance of `model`'s explanations to the reference over every probe (no graph)."""
        chunks = [np.arange(i, min(i + self.batch_size, len(self))) for i in range(0, len(self), self.batch_size)]
        total = 0.0
        for rows in chunks:
            current = self._attribute(model, rows, create_graph=False)
            reference = torch.as_tensor(self.reference[rows], device=current.device)
            total += float(self._distance(current, reference).sum())
        return total / len(self)

    def _distance(self, current: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if self.metric == "spearman":
            return rank_distance(current, reference)
        return explanation_distance(current, reference)

    def _attribute(self, model, rows: np.ndarray, create_graph: bool) -> torch.Tensor:
        layer = {} if self.layer is None else {"layer": self.layer}
        return attribute(model, self.x[rows], self.method, target=self.target[rows], create_graph=create_graph,
                         **layer, **self.options)


def explanation_distance(current: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1 − Pearson correlation of each sample's map with its reference map, shape (N,), in [0, 2].

    Why this distance: it is free of scale and offset (a pruned or retrained model's
    activations, hence its raw maps, change scale, which says nothing about *where* it
    looks), it equals half the mean squared error of the two maps once each is
    standardised, and it is the differentiable stand-in for the Spearman rank correlation
    that audits and the gate report. A map with no variation (a Grad-CAM whose ReLU cut
    everything) scores 1, like an unrelated map.
    """
    b = reference.flatten(1).to(current.dtype)
    return 1.0 - (_standardised(current.flatten(1)) * _standardised(b)).sum(dim=1)


def rank_distance(current: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1 − Pearson correlation of the maps' soft ranks, shape (N,): a differentiable Spearman.

    Why: Spearman weighs every pixel's place in the order alike, so a faint background
    ordered differently costs as much as a moved peak, while Pearson hardly sees it. Maps
    larger than 16×16 are average-pooled to at most that first (a CAM is upsampled from
    such a grid; the pairwise soft rank costs cells²).
    """
    b = reference.to(current.dtype)
    return explanation_distance(soft_rank(_coarse(current)), soft_rank(_coarse(b)))


def soft_rank(maps: torch.Tensor) -> torch.Tensor:
    """Each row's values replaced by their soft rank: Σ_j sigmoid((v_i − v_j) / (SOFTNESS · std)).

    Equal values share a rank (as Spearman's average ranks do); a constant row ranks flat.
    """
    flat = maps.flatten(1)
    width = SOFTNESS * flat.std(dim=1, keepdim=True) + torch.finfo(flat.dtype).tiny
    gaps = (flat[:, :, None] - flat[:, None, :]) / width[:, :, None]
    return torch.sigmoid(gaps).sum(dim=2)


def _coarse(maps: torch.Tensor) -> torch.Tensor:
    """Image-like maps (N, [C,] H, W), channels summed, average-pooled to at most RANKED_CELLS a side."""
    if maps.dim() == 4:
        maps = maps.sum(dim=1)
    if maps.dim() != 3 or max(maps.shape[-2:]) <= RANKED_CELLS:
        return maps
    cells = (min(RANKED_CELLS, maps.shape[-2]), min(RANKED_CELLS, maps.shape[-1]))
    return torch.nn.functional.adaptive_avg_pool2d(maps[:, None], cells)[:, 0]


def _standardised(maps: torch.Tensor) -> torch.Tensor:
    """Each row centred and scaled to unit length; an all-zero row stays zero.

    The floor under the squared length is a small share of the batch's mean (so it scales
    with the maps, keeping the distance scale-free) plus the dtype's smallest number (so
    the square root and its gradient stay finite when every map is zero).
    """
    centred = maps - maps.mean(dim=1, keepdim=True)
    energy = (centred * centred).sum(dim=1, keepdim=True)
    floor = FLOOR * energy.detach().mean() + torch.finfo(maps.dtype).tiny
    return centred / torch.sqrt(energy + floor)


def _check_options(method: str, spec, options, layer) -> None:
    if not isinstance(options, Mapping):
        raise BadOption(f"options={options!r}", "pass a dict of the method's options, e.g. {'steps': 16}")
    taken = sorted(set(options) & set(RESERVED))
    if taken:
        raise BadOption(f"replay sets option {taken[0]!r} itself", "pass layer= and batch_size= to Replay; "
                        "create_graph and fold_bn are not needed")
    if layer is not None and not isinstance(layer, str):
        raise BadOption(f"layer={layer!r}", "name the layer as a string, e.g. 'stage3', or pass None")
    if layer is not None and "layer" not in spec.options:
        raise BadOption(f"method {method!r} has no layer", "drop layer=, or use 'gradcam' or 'gradcam++'")
    bind_options(spec.fn, options, method)  # unknown option names, one line with the closest


def _finite_batch(name: str, values) -> np.ndarray:
    """A non-empty float32 batch (N, ...) of finite numbers."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) \
            or np.iscomplexobj(array):
        raise BadInput(f"{name} has dtype {array.dtype}, not real numbers", "pass a numeric array")
    if array.ndim < 2 or len(array) == 0:
        raise BadInput(f"{name} has shape {array.shape}; expected a non-empty batch (N, ...)", "add a batch axis: x[None]")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise BadInput(f"{name} has NaN or inf in sample {int(np.argmax(bad))}", "clean the probes or recompute the reference")
    return array


def _targets(target, n: int) -> np.ndarray:
    """One class index a probe (range against the model's classes is checked by attribute())."""
    if hasattr(target, "detach"):
        target = target.detach().cpu().numpy()
    t = np.asarray(target)
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise BadInput(f"replay target must be class indices, got dtype {t.dtype}", "pass an int or one int a probe")
    t = np.full(n, int(t)) if t.ndim == 0 else t
    if t.shape != (n,):
        raise BadInput(f"replay target has shape {t.shape} for {n} probes", f"pass one int, or {n} ints")
    if (t < 0).any():
        raise BadInput(f"replay target {int(t[t < 0][0])} is negative", "use class indices from 0")
    return t.astype(np.int64)
