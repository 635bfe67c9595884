"""Profiles count what is really there; audit compares like with like."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.audit import fingerprint, probe_set, profile
from leanlens.models import SmallResNet


def test_profile_counts_params_and_macs_of_a_known_model():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    x = np.zeros((5, 1, 8, 8), dtype=np.float32)
    p = profile(model, x, batch=5, repeats=2, warmup=1)
    assert p.params == 4 * 9 + 256 * 3 + 3
    # conv: 9 MACs per output pixel and channel; linear: one per weight, plus its bias additions
    assert p.macs == 4 * 9 * 64 + (256 * 3 + 3)
    assert p.bytes > 4 * p.params  # float32 weights plus the safetensors header
    assert p.latency_ms > 0 and p.batch == 5


def test_fingerprint_follows_the_weights():
    torch.manual_seed(0)
    a = SmallResNet(width=8)
    b = SmallResNet(width=8)
    b.load_state_dict(a.state_dict())
    assert fingerprint(a) == fingerprint(b)
    with torch.no_grad():
        b.head.bias += 1e-3
    assert fingerprint(a) != fingerprint(b)


def test_probe_set_is_balanced_and_fixed():
    data = ll.data.load("lesions", n=200, seed=3)
    probe = probe_set(data, n=16, seed=0)
    assert len(probe) == 16 and np.bincount(probe.y).tolist() == [8, 8]
    again = probe_set(data, n=16, seed=0)
    np.testing.assert_array_equal(probe.x, again.x)


@pytest.fixture(scope="module")
def small_setup():
    train, test = ll.data.load("lesions", n=1200, seed=2).split(0.25, seed=2)
    torch.manual_seed(0)
    return ll.finetune(SmallResNet(width=8), train, epochs=2.0, lr=3e-3), test


def test_audit_of_a_model_against_itself_is_perfect_agreement(small_setup):
    model, test = small_setup
    result = ll.audit(model, model, test, methods=("gradcam++",))
    assert result.agreement == 1.0
    assert result.similarity["gradcam++"]["spearman"] == pytest.approx(1.0)
    assert result.similarity["gradcam++"]["top10"] == pytest.approx(1.0)
    metrics = result.metrics()
    assert metrics["params_ratio"] == 1.0 and metrics["macs_ratio"] == 1.0
    assert 0.0 <= metrics["pointing[gradcam++]"] <= 1.0


def test_audit_sees_a_different_model(small_setup):
    model, test = small_setup
    torch.manual_seed(1)
    untrained = SmallResNet(width=8)
    result = ll.audit(model, untrained, test, methods=("gradcam++",))
    assert result.similarity["gradcam++"]["spearman"] < 0.9
    assert result.candidate.accuracy < result.reference.accuracy
