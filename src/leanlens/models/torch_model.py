"""The PyTorch adapter: a `torch.nn.Module` seen as a leanlens `DifferentiableModel`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from leanlens.errors import BadInput, LeanlensError, closest
from leanlens.models import torch_grad
from leanlens.models.base import BLACK_BOX, GRADIENTS, LAYERS, Pick
from leanlens.models.outputs import OutputChoice, check_choice, select_scores
from leanlens.models.torch_folding import gradient_module

# What a module raises when a batch does not fit it (a wrong rank, channel count or width).
SHAPE_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


class TorchModel:
    """A PyTorch module with leanlens' model interface.

    The module is kept as `.module` and never modified by leanlens: pruning and
    quantization work on copies. Inference always runs in eval mode. `output` picks the
    scores out of a module that returns more than a tensor (see `leanlens.models.outputs`).
    """

    framework = "torch"
    capabilities = frozenset({GRADIENTS, LAYERS, BLACK_BOX})
    stand_in = False

    def __init__(self, module: nn.Module, output: OutputChoice = None):
        self.module = module
        self.output = check_choice(output)
        self._fitting_shapes: set[tuple[int, ...]] = set()  # sample shapes a forward has accepted
        self._in_session = False  # inside inference(), where the weights cannot change
        self._session_copy: nn.Module | None = None  # the BN-folded copy, once looked up in that session

    def __repr__(self) -> str:
        return f"TorchModel({type(self.module).__name__}, {count_parameters(self.module):,} params)"

    @property
    def device(self) -> torch.device:
        first = next(self.module.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' float type: inputs are cast to it (float32 unless the module was cast)."""
        first = next((p for p in self.module.parameters() if p.is_floating_point()), None)
        return first.dtype if first is not None else torch.float32

    def to_tensor(self, x) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class scores (N, classes), not labels: `predict(x).argmax(1)` gives the classes."""
        outputs = []
        with inference(self.module), torch.inference_mode():
            for start in range(0, len(x), batch_size):
                scores = self._call(self.module, self.to_tensor(x[start : start + batch_size]))
                outputs.append(scores.float().cpu().numpy())
        if not outputs:
            raise BadInput("predict() got an empty batch", "pass at least one sample")
        return np.concatenate(outputs)

    @contextlib.contextmanager
    def inference(self, freeze: bool = True) -> Iterator[None]:
        """Eval mode and frozen weights for an explanation; the folded copy is looked up once inside."""
        with inference(self.module, freeze=freeze):
            self._in_session = True
            try:
                yield
            finally:
                self._in_session, self._session_copy = False, None

    def scores(self, x: torch.Tensor, *, fold_bn: bool = False) -> torch.Tensor:
        with torch.no_grad():
            return self._call(self._network(fold_bn), x)

    def input_gradients(self, x: torch.Tensor, pick: Pick, *, create_graph: bool = False,
                        fold_bn: bool = False) -> torch.Tensor:
        return torch_grad.input_gradients(self._call, self._network(fold_bn), x, pick, create_graph)

    def default_layer(self, x: torch.Tensor) -> str:
        return torch_grad.last_spatial_layer(self._call, self.module, x)

    def layer_gradients(self, x: torch.Tensor, pick: Pick, layer: str, *, create_graph: bool = False,
                        fold_bn: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        self.layer(layer)  # an unknown name fails here, with the closest names as the hint
        network = torch_grad.cam_network(self.module, self._network(fold_bn), layer)
        return torch_grad.layer_gradients(self._call, network, x, pick, layer, create_graph)

    def layout(self) -> tuple[nn.Module, tuple]:
        """The module, and what a memory probe's result depends on besides the input: each layer's
        type and mode, each parameter's and buffer's name, shape, dtype and whether it takes gradients.
        Not seen: a forward hook added later, or a flag that changes what autograd keeps without
        changing a layer (activation checkpointing switched on): explain such a model with `memory=`
        sized for it, or `batch_size=`."""
        # One walk, reading each module's own tables: named_parameters() and named_buffers() walk the
        # tree again each and build every dotted name (twice the time; the probe key is taken every call).
        # In pre-order, each module with its children's names and its own tensors: the tree and its
        # names, as the dotted names gave them. A module met again is skipped, as modules() does (and a
        # cycle cannot loop); a tensor met again (a tied weight) is marked so, as named_parameters()
        # told it by listing it once: tying two layers' weights changes what autograd saves.
        summary, stack, seen, held = [], [self.module], set(), set()
        while stack:
            m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            children, params, buffers = m._modules, m._parameters, m._buffers
            summary.append((type(m), m.training, tuple(children) if children else (),
                            _tensors(params, held) if params else (), _tensors(buffers, held) if buffers else ()))
            if children:
                stack.extend(child for child in reversed(children.values()) if child is not None)
        return self.module, tuple(summary)

    def layer(self, name: str) -> nn.Module:
        modules = {n: m for n, m in self.module.named_modules() if n}
        if name not in modules:
            raise BadInput(f"the model has no layer named {name!r}", closest(name, modules))
        return modules[name]

    def _network(self, fold_bn: bool) -> nn.Module:
        """The module to differentiate: with `fold_bn`, its BN-folded copy. Inside an inference()
        block the weights cannot change, so their checksum is taken once, not once a chunk."""
        if not fold_bn:
            return self.module
        if not self._in_session:
            return gradient_module(self.module)
        if self._session_copy is None:
            self._session_copy = gradient_module(self.module)
        return self._session_copy

    def _call(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The scores of `network` on `x`. The first forward on a sample shape that fails is the
        user's batch not fitting the model: one line, torch's first. Later failures stay raw."""
        shape = tuple(x.shape[1:])
        if shape in self._fitting_shapes:
            return select_scores(network(x), self.output)
        try:
            scores = select_scores(network(x), self.output)
        except LeanlensError:
            raise
        except SHAPE_ERRORS as error:
            if isinstance(error, torch.cuda.OutOfMemoryError):
                raise
            raise not_fitting(error, shape) from None
        self._fitting_shapes.add(shape)
        return scores


def not_fitting(error: Exception, shape: tuple[int, ...]) -> BadInput:
    """One line for a batch the module refused: its shape (N, not a chunk's length) and torch's reason."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    batch = "(" + ", ".join(["N", *map(str, shape)]) + ")"
    return BadInput(f"the model cannot take a batch of shape {batch} ({len(shape) + 1} axes): {reason}",
                    "pass a batch (N, ...) of the shape the model was built for; one sample needs a batch axis: x[None]")


@contextlib.contextmanager
def inference(module: nn.Module, freeze: bool = True) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration of the block, restored even on error.

    Freezing the parameters means a backward pass stops at the input (or at a hooked
    layer) instead of computing weight gradients nobody asked for. `freeze=False` keeps
    them trainable, for attributions that a loss will be differentiated through.
    """
    # Remember exactly which modules were training: a root in eval mode may hold a child a user
    # put in train mode, and both must come back as they were.
    modules = list(module.modules())  # one walk for both lists: this runs on every explain() call
    training = [m for m in modules if m.training]
    # each parameter once, as parameters() gives them (a weight shared by two layers is one)
    frozen = list({id(p): p for m in modules for p in m._parameters.values()
                   if p is not None and p.requires_grad}.values()) if freeze else []
    for m in training:
        m.training = False
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m in training:
            m.training = True


def _tensors(table: dict, held: set) -> tuple:
    """Name, shape, dtype, whether it takes gradients and whether an earlier module holds it too, of
    each tensor a module holds itself; `held` collects the ids of the tensors seen."""
    out = []
    for name, t in table.items():
        if t is not None:
            out.append((name, t.shape, t.dtype, t.requires_grad, id(t) in held))
            held.add(id(t))
    return tuple(out)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
