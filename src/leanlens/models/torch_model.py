"""The PyTorch adapter: a `torch.nn.Module` seen as a leanlens `Model`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from leanlens.errors import BadInput
from leanlens.models.base import BLACK_BOX, GRADIENTS, LAYERS


class TorchModel:
    """A PyTorch module with leanlens' model interface.

    The module is kept as `.module` and never modified by leanlens: pruning and
    quantization work on copies. Inference always runs in eval mode.
    """

    framework = "torch"
    capabilities = frozenset({GRADIENTS, LAYERS, BLACK_BOX})

    def __init__(self, module: nn.Module):
        self.module = module

    def __repr__(self) -> str:
        return f"TorchModel({type(self.module).__name__}, {count_parameters(self.module):,} params)"

    @property
    def device(self) -> torch.device:
        first = next(self.module.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def input_rank(self) -> int | None:
        """Rank of the batch the first layer expects (4 for Conv2d), if it can be told."""
        for layer in self.module.modules():
            if isinstance(layer, nn.Conv2d):
                return 4
            if isinstance(layer, nn.Conv1d):
                return 3
            if isinstance(layer, nn.Linear):
                return 2
        return None

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' float type: inputs are cast to it (float32 unless the module was cast)."""
        first = next((p for p in self.module.parameters() if p.is_floating_point()), None)
        return first.dtype if first is not None else torch.float32

    def to_tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        outputs = []
        with inference(self.module), torch.inference_mode():
            for start in range(0, len(x), batch_size):
                scores = self.module(self.to_tensor(x[start : start + batch_size]))
                outputs.append(scores.float().cpu().numpy())
        if not outputs:
            raise BadInput("predict() got an empty batch", "pass at least one sample")
        return np.concatenate(outputs)

    def layer(self, name: str) -> nn.Module:
        modules = {n: m for n, m in self.module.named_modules() if n}
        if name not in modules:
            from leanlens.errors import closest

            raise BadInput(f"the model has no layer named {name!r}", closest(name, modules))
        return modules[name]


@contextlib.contextmanager
def inference(module: nn.Module, freeze: bool = True) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration of the block, restored even on error.

    Freezing the parameters means a backward pass stops at the input (or at a hooked
    layer) instead of computing weight gradients nobody asked for. `freeze=False` keeps
    them trainable, for attributions that a loss will be differentiated through.
    """
    # Remember exactly which modules were training: a root in eval mode may hold a child a user
    # put in train mode, and both must come back as they were.
    training = [m for m in module.modules() if m.training]
    frozen = [p for p in module.parameters() if p.requires_grad] if freeze else []
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


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
