"""A tiny task whose label cue can be moved, for gating a model whose explanations drift.

16×16 images of noise. In the original task class 1 has a bright 3×3 square somewhere
(its mask is the object) and class 0 has none. In the moved task the label is a bright
bar along the top row and squares appear in both classes as distractors, so a model
trained there decides, and explains, by the top row instead of the square.
"""

from __future__ import annotations

import numpy as np
import torch

import leanlens as ll
from leanlens.models import SmallResNet
from leanlens.store import Store, held_out_split

SIZE, METHODS = 16, ("saliency", "gradcam")


def images(n: int, seed: int, moved: bool = False) -> ll.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, size=(n, 1, SIZE, SIZE)).astype(np.float32)
    y = np.arange(n) % 2
    masks = np.zeros((n, SIZE, SIZE), bool)
    squares = rng.random(n) < 0.5 if moved else y == 1
    for i in np.flatnonzero(squares):
        r, c = rng.integers(2, SIZE - 5, size=2)
        masks[i, r:r + 3, c:c + 3] = True
    x[:, 0][masks] += 2.0
    if moved:
        x[y == 1, 0, 0, :] += 2.0
    return ll.data.Dataset(x, y, masks=masks if not moved else None)


def train(data, seed: int, num_classes: int = 2, steps: int = 60) -> SmallResNet:
    torch.manual_seed(seed)
    model = SmallResNet(width=4, num_classes=num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    x, y = torch.as_tensor(data.x), torch.as_tensor(data.y)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def reference_store(path, model, probe) -> None:
    """A store with `model` recorded as v0 on `probe`, half of each class held out."""
    result = ll.assess(model, probe, probe, methods=METHODS, latency_batch=4)
    with Store(path) as store:
        store.set_probe(probe.x, probe.y, probe.masks, held_out=held_out_split(probe.y, 0.5))
        store.record_assessment("v0", model, result)
