"""Done-when 1 of issue 14 on the lesions set: compressed to 50 % and 30 % of the MACs, accuracy held."""

from __future__ import annotations

import pytest
import torch
from compress_support import assert_budget_and_accuracy_held
from torch import nn

import leanlens as ll


def lesion_cnn() -> nn.Sequential:
    """Three plain convs, two of them strided, for the 64×64 lesion images (not the demo's residual net)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )


@pytest.fixture(scope="module")
def lesions():
    return ll.data.load("lesions", n=900, seed=3).split(0.33, seed=0)


@pytest.fixture(scope="module")
def trained(lesions, one_thread):
    train, _ = lesions
    torch.manual_seed(0)
    return ll.finetune(lesion_cnn(), train, epochs=6.0, lr=3e-3, batch_size=32)


@pytest.mark.parametrize("share", [0.5, 0.3])
def test_lesions_compressed_to_the_budget_keep_their_accuracy(trained, lesions, share, one_thread):
    train, test = lesions
    result = ll.compress(trained, train, budget=f"macs={share}", max_drop=1.0, validation=test,
                         epochs_per_step=1.0, lr=3e-3, batch_size=64)
    assert_budget_and_accuracy_held(trained, result, test, share, least=0.97)
