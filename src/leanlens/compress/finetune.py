"""Training a copy of a model: from scratch for the demo, or to recover after pruning."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from leanlens.compress.checks import check_labels, torch_model
from leanlens.data import as_dataset
from leanlens.explain.options import positive_int, real
from leanlens.models.torch_model import TorchModel


def finetune(
    model,
    data,
    epochs: float = 1.0,
    lr: float = 1e-3,
    *,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
) -> TorchModel:
    """A trained copy of `model`: AdamW on cross-entropy, one-cycle learning rate (warm-up, then cosine decay).

    `epochs` may be fractional (e.g. 0.5 passes over the data). `on_step(done, total)`
    is called after every batch, for progress bars. The input model is not changed; the
    copy trains every parameter, also those frozen in the input.
    """
    model = torch_model(model, "finetune")
    epochs = real("epochs", epochs, "use a positive number of passes over the data, e.g. 1.0", low=0.0, strict=True)
    lr = real("lr", lr, "use a positive learning rate such as 1e-3", low=0.0, strict=True)
    batch_size = positive_int("batch_size", batch_size, "use a positive int such as 32")
    data = as_dataset(data)
    module = copy.deepcopy(model.module)
    check_labels(module.eval(), data)
    module.train()
    for p in module.parameters():
        p.requires_grad_(True)
    device = next(module.parameters()).device
    rng = np.random.default_rng(seed)
    per_epoch = int(np.ceil(len(data) / batch_size))
    total = max(1, round(epochs * per_epoch))
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
    order = np.empty(0, dtype=np.int64)
    for step in range(total):
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(data))])
        batch, order = order[:batch_size], order[batch_size:]
        x = torch.as_tensor(data.x[batch], device=device)
        y = torch.as_tensor(data.y[batch], device=device)
        loss = F.cross_entropy(module(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step + 1, total)
    return TorchModel(module.eval())
