"""A small classifier trained on the built-in digits, shared by the quality-metric tests."""

import numpy as np
import torch
from torch import nn

import leanlens as ll


def digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10),
    )


def train_digits(seed: int = 0, epochs: int = 40) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A CNN trained full-batch on 1000 digits (seeded, a few seconds), and 200 held-out ones (x, y)."""
    data = ll.data.load("digits")
    torch.manual_seed(seed)
    model = digits_cnn()
    x, y = torch.as_tensor(data.x[:1000]), torch.as_tensor(data.y[:1000])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), data.x[1000:1200], data.y[1000:1200]
