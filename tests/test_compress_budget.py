"""ll.compress: pruning to a budget in steps keeps accuracy, counts real MACs, refuses what it cannot do."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compress_support import accuracy, assert_budget_and_accuracy_held
from sklearn.datasets import load_digits
from torch import nn

import leanlens as ll
from leanlens.compression.criteria import CRITERIA
from leanlens.compression.finetune import Distillation
from leanlens.errors import BadInput, BadOption, LeanlensError, UnknownMethod

RECOVERY = {"epochs_per_step": 2.0, "lr": 3e-3, "batch_size": 64}


def digits_cnn() -> nn.Sequential:
    """Three convs (not the demo's residual net) for scikit-learn's 8x8 digits."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    data = ll.data.Dataset((bunch.images / 16.0)[:, None], bunch.target, name="digits")
    return data.split(0.25, seed=0)


@pytest.fixture(scope="module")
def trained(digits, one_thread):
    train, _ = digits
    torch.manual_seed(0)
    return ll.finetune(digits_cnn(), train, epochs=8.0, lr=1e-2, batch_size=64)


@pytest.fixture(scope="module")
def compressed(trained, digits, one_thread):
    train, test = digits
    before = {k: v.clone() for k, v in trained.module.state_dict().items()}
    steps = []
    results = {share: ll.compress(trained, train, budget=f"macs={share}", max_drop=1.0, validation=test,
                                  on_step=lambda step, total: steps.append((step.step, total)), **RECOVERY)
               for share in (0.5, 0.3)}
    return results, before, steps


@pytest.mark.parametrize("share", [0.5, 0.3])
def test_compress_meets_the_budget_and_keeps_accuracy(compressed, trained, digits, share):
    _, test = digits
    assert_budget_and_accuracy_held(trained, compressed[0][share], test, share, least=0.97)


def test_compress_narrows_hidden_layers_only_in_rounded_widths(compressed, trained):
    result = compressed[0][0.3]
    convs = {name: m.out_channels for name, m in result.model.module.named_modules() if isinstance(m, nn.Conv2d)}
    dense = {name: m.out_channels for name, m in trained.module.named_modules() if isinstance(m, nn.Conv2d)}
    assert all(w % 8 == 0 and w < dense[name] for name, w in convs.items())
    assert result.model.module[-1].out_features == 10
    assert dict(result.trajectory[-1].widths) == {k: v for k, v in convs.items()}


def test_trajectory_goes_down_in_steps_and_reports_each(compressed):
    result = compressed[0][0.3]
    macs = [step.macs for step in result.trajectory]
    assert len(macs) >= 3 and all(a > b for a, b in itertools.pairwise(macs))  # more than one step, each smaller
    assert result.trajectory[0].similarity == 1.0 and all(-1 <= s.similarity <= 1 for s in result.trajectory)
    assert all(0 < s.ratio < 1 for s in result.trajectory[1:])
    reported = compressed[2]
    assert [s for s, _ in reported] == [s.step for r in compressed[0].values() for s in r.trajectory[1:]]


def test_compress_leaves_the_input_model_unchanged(compressed, trained):
    before = compressed[1]
    after = trained.module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def refused(error_type, call, match: str):
    with pytest.raises(error_type, match=match) as caught:
        call()
    assert isinstance(caught.value, LeanlensError) and "\n" not in str(caught.value) and "hint:" in str(caught.value)
    return caught.value


def test_an_impossible_budget_says_the_least_reachable(trained, digits):
    train, _ = digits
    refused(BadOption, lambda: ll.compress(trained, train, budget="macs=0.0001"),
            r"cannot be met.*narrowest \(8 channels\).*keeps 0\.0\d+ of its macs")


def test_a_guard_no_step_meets_reports_the_best_reached(trained, digits, one_thread):
    train, test = digits
    error = refused(BadOption, lambda: ll.compress(trained, train, budget="macs=0.3", max_drop=0.0, validation=test,
                                                   criterion="random", epochs_per_step=0.05, patience=0, steps=2),
                    r"max_drop=0: step \d of 2 .* reached \d+\.\d% against \d+\.\d% originally")
    assert len(error.trajectory) >= 2 and error.trajectory[0].step == 0


def test_a_model_with_nothing_to_prune_is_refused(digits):
    train, _ = digits
    head_only = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    refused(BadInput, lambda: ll.compress(head_only, train, budget="params=0.5"), "no conv or linear layer to prune")


@pytest.mark.parametrize(("budget", "match"), [
    ("flops=0.5", "unknown budget key 'flops'"), ("macs=1.5", "macs=1.5"), ("macs=half", "key=fraction"),
    ("latency=1", "latency=1"), ({}, "sets no limit"), (0.5, "budget=0.5"),
])
def test_bad_budgets_are_one_line(trained, digits, budget, match):
    train, _ = digits
    refused(BadOption, lambda: ll.compress(trained, train, budget=budget), match)


def test_bad_options_and_data_are_one_line(trained, digits):
    train, test = digits
    refused(UnknownMethod, lambda: ll.compress(trained, train, budget="macs=0.5", criterion="atribution"),
            "did you mean 'attribution'")
    refused(BadOption, lambda: ll.compress(trained, train, budget="macs=0.5", max_drop=-1), "max_drop")
    refused(BadInput, lambda: ll.compress(trained, (np.repeat(train.x, 3, axis=1), train.y), budget="macs=0.5"),
            "cannot take a batch of shape")
    wrong_labels = (test.x, test.y + 5)
    refused(BadInput, lambda: ll.compress(trained, train, budget="macs=0.5", validation=wrong_labels), "labels run")


def test_budget_forms_agree():
    assert ll.Budget(macs=0.3) == ll.compression.budget.as_budget("macs=0.3") == \
        ll.compression.budget.as_budget({"macs": 0.3})
    assert str(ll.compression.budget.as_budget(" macs=0.3 , params=0.5")) == "macs=0.3,params=0.5"


def test_distillation_loss_is_hintons(digits):
    # T² · KL(teacher ‖ student) on temperature-softened scores, mixed with the hard loss.
    torch.manual_seed(0)
    teacher = nn.Linear(64, 10)
    distill = Distillation.of(teacher, 2.0, 0.25)
    x = torch.randn(5, 64)
    student, y = torch.randn(5, 10), torch.tensor([0, 3, 9, 2, 2])
    p = torch.softmax(teacher(x) / 2.0, 1)
    kl = (p * (p.log() - torch.log_softmax(student / 2.0, 1))).sum(1).mean()
    expected = 0.25 * F.cross_entropy(student, y) + 0.75 * 4.0 * kl
    torch.testing.assert_close(distill.loss(student, x, y), expected.detach())


def test_distillation_follows_the_teacher_not_the_labels(trained, digits, one_thread):
    # Labels shuffled, so only the teacher says anything true: a student trained on the
    # distillation loss alone learns the digits, one trained on the labels cannot.
    train, test = digits
    shuffled = (train.x, np.random.default_rng(0).permutation(train.y))
    torch.manual_seed(1)
    student = ll.finetune(digits_cnn(), shuffled, epochs=3.0, lr=1e-2, batch_size=64, teacher=trained,
                          student_loss_weight=0.0)
    assert accuracy(student, test) >= 0.9
    refused(BadOption, lambda: ll.finetune(digits_cnn(), train, teacher=trained, student_loss_weight=1.5),
            "student_loss_weight")
    five_classes = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    refused(BadInput, lambda: ll.finetune(digits_cnn(), train, teacher=five_classes), r"teacher returns scores of shape \(1, 5\)")


def test_an_allocation_hook_decides_which_layers_shrink(trained, digits, one_thread):
    # The hook slice of a latency-aware allocation plugs into: here it spares the first two
    # convs, so the budget must be met by the third alone.
    train, test = digits
    seen = []

    def last_conv_only(module, strength):
        seen.append(strength)
        return {"0": 0.0, "3": 0.0}

    result = ll.compress(trained, train, budget="macs=0.8", max_drop=100.0, validation=test, steps=1,
                         allocation=last_conv_only, epochs_per_step=0.1)
    widths = dict(result.trajectory[-1].widths)
    assert widths["0"] == 32 and widths["3"] == 64 and widths["7"] < 64
    assert result.share("macs") <= 0.8 and seen
    refused(BadOption, lambda: ll.compress(trained, train, budget="macs=0.8", allocation=lambda m, s: {"fc": 0.5}),
            "allocation names 'fc'")
    refused(BadOption, lambda: ll.compress(trained, train, budget="macs=0.1", max_drop=100.0, steps=1, epochs_per_step=0.1,
                                           allocation=last_conv_only), r"not reached.*keep 0\.\d+ of the macs")


def test_the_criterion_is_rescored_on_each_step_s_model(trained, digits, monkeypatch, one_thread):
    train, test = digits
    seen = []

    def spy(module, batches, seed):
        seen.append((module[0].out_channels, module[0].weight.detach().clone()))
        return CRITERIA["magnitude"](module, batches, seed)

    monkeypatch.setitem(CRITERIA, "spy", spy)
    result = ll.compress(trained, train, budget="macs=0.3", criterion="spy", steps=3, max_drop=100.0,
                         validation=test, epochs_per_step=0.1)
    widths = [w for w, _ in seen]
    assert len(seen) == len(result.trajectory) - 1 >= 2
    assert widths[0] == 32 and all(a > b for a, b in itertools.pairwise(widths))  # each call sees the last cut
    original = trained.module[0].weight.detach()
    assert not any(torch.equal(row, kept) for row in seen[1][1] for kept in original)  # and fine-tuned weights


class ConvHeadNet(nn.Module):
    """Scores from a 1x1 conv before global pooling: no Linear marks the head."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.classify = nn.Conv2d(32, 10, 1)

    def forward(self, x):
        return self.classify(self.body(x)).mean((2, 3))


def test_compress_keeps_a_one_by_one_conv_head_and_the_protected_layers(digits, one_thread):
    train, test = digits
    torch.manual_seed(0)
    result = ll.compress(ConvHeadNet(), train, budget="macs=0.6", protect=["body.0"], criterion="magnitude", steps=1,
                         max_drop=100.0, validation=test, epochs_per_step=0.1)
    small = result.model.module
    assert (small.classify.out_channels, small.body[0].out_channels) == (10, 16)
    assert small.body[2].out_channels < 32 and result.share("macs") <= 0.6  # the one layer left took the cut
    assert result.model.predict(test.x[:3]).shape == (3, 10)
