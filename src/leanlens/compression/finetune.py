"""Training a copy of a model: from scratch for the demo, or to recover after pruning,
optionally replaying stored explanations so that the copy keeps explaining as before."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from leanlens.compression.checks import check_labels, first_scores, torch_model
from leanlens.compression.replay import Replay
from leanlens.data import as_dataset
from leanlens.errors import BadInput, BadOption
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
    replay: Replay | None = None,
    teacher=None,
    temperature: float = 3.0,
    student_loss_weight: float = 0.5,
    on_step: Callable[[int, int], None] | None = None,
) -> TorchModel:
    """A trained copy of `model`: AdamW on cross-entropy, one-cycle learning rate (warm-up, then cosine decay).

    `epochs` may be fractional (e.g. 0.5 passes over the data). With `replay`, each step
    adds `replay.weight` × the explanation distance on `replay.batch_size` replay probes
    (see `leanlens.compression.replay`); the task batches are the same as without it, and a
    weight of 0 trains exactly as no replay. With a `teacher` model (knowledge distillation,
    Hinton et al., 2015), the loss is `student_loss_weight` × cross-entropy plus the rest ×
    T² · KL(teacher ‖ copy) on both sets of scores softened by `temperature` T (the names
    of keras.distillation). `on_step(done, total)` is called after every
    batch, for progress bars. The input model is not changed; the copy trains every
    parameter, also those frozen in the input.
    """
    model = torch_model(model, "finetune")
    epochs = real("epochs", epochs, "use a positive number of passes over the data, e.g. 1.0", low=0.0, strict=True)
    lr = real("lr", lr, "use a positive learning rate such as 1e-3", low=0.0, strict=True)
    batch_size = positive_int("batch_size", batch_size, "use a positive int such as 32")
    if replay is not None and not isinstance(replay, Replay):
        raise BadOption(f"replay={type(replay).__name__}", "pass a leanlens Replay, e.g. Replay.from_explanation(exp, x)")
    data = as_dataset(data)
    distill = Distillation.of(teacher, temperature, student_loss_weight)
    module = copy.deepcopy(model.module)
    classes = check_labels(module.eval(), data)
    if distill is not None:
        distill.check(classes, data.x)
    module.train()
    for p in module.parameters():
        p.requires_grad_(True)
    trainee = TorchModel(module, output=model.output)  # what replay explains: the copy in training
    device = next(module.parameters()).device
    total = max(1, round(epochs * int(np.ceil(len(data) / batch_size))))
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
    task_batches = shuffled_batches(np.random.default_rng(seed), len(data), batch_size)
    replaying = replay is not None and replay.weight > 0
    # Replay draws from a stream of its own, so the task batches stay those of plain training.
    replay_batches = shuffled_batches(np.random.default_rng([seed, 1]), len(replay), replay.batch_size) \
        if replaying else None
    for step in range(total):
        rows = next(task_batches)
        x = torch.as_tensor(data.x[rows], device=device)
        y = torch.as_tensor(data.y[rows], device=device)
        scores = module(x)
        loss = F.cross_entropy(scores, y) if distill is None else distill.loss(scores, x, y)
        if replaying:
            loss = loss + replay.loss(trainee, next(replay_batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step + 1, total)
    return TorchModel(module.eval())


def shuffled_batches(rng: np.random.Generator, n: int, size: int) -> Iterator[np.ndarray]:
    """Endless batches of up to `size` row indices: each pass is a fresh permutation, and a
    batch that straddles two passes takes its tail from the next one."""
    order = np.empty(0, dtype=np.int64)
    while True:
        if len(order) < size:
            order = np.concatenate([order, rng.permutation(n)])
        batch, order = order[:size], order[size:]
        yield batch


class Distillation:
    """The distillation loss against a fixed teacher (its scores are computed without a graph)."""

    def __init__(self, teacher: torch.nn.Module, temperature: float, student_loss_weight: float):
        self.teacher, self.temperature, self.student_loss_weight = teacher, temperature, student_loss_weight

    @classmethod
    def of(cls, teacher, temperature, student_loss_weight) -> Distillation | None:
        if teacher is None:
            return None
        temperature = real("temperature", temperature, "use a positive temperature such as 3.0", low=0.0, strict=True)
        weight = real("student_loss_weight", student_loss_weight, "use a weight between 0 and 1 such as 0.5", low=0.0)
        if weight > 1.0:
            raise BadOption(f"student_loss_weight={student_loss_weight!r}", "use a weight between 0 and 1 such as 0.5")
        # A copy in eval mode: the caller's teacher keeps its own mode and flags.
        return cls(copy.deepcopy(torch_model(teacher, "finetune").module).eval(), temperature, weight)

    def check(self, classes: int, x: np.ndarray) -> None:
        """Refuse a teacher whose scores do not line up with the student's classes."""
        scores = first_scores(self.teacher, x)
        if scores.dim() != 2 or scores.shape[1] != classes:
            raise BadInput(f"the teacher returns scores of shape {tuple(scores.shape)}, the student {classes} classes",
                           "distil from a teacher with one score a class of the student")

    def loss(self, scores: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = self.teacher(x)
        t = self.temperature
        soft = F.kl_div(F.log_softmax(scores / t, dim=1), F.log_softmax(reference / t, dim=1),
                        reduction="batchmean", log_target=True) * t * t  # T² keeps gradients the size of the hard loss's
        return self.student_loss_weight * F.cross_entropy(scores, y) + (1.0 - self.student_loss_weight) * soft
