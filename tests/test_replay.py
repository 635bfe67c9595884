"""Replay fine-tuning: stored explanations pull a pruned model's explanations back to v0's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.compression.replay import Replay, explanation_distance, rank_distance
from leanlens.errors import BadInput, BadOption, LeanlensError, UnknownMethod
from leanlens.metrics.similarity import spearman
from leanlens.models import SmallResNet, TorchModel


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2),
    )


@pytest.fixture(scope="module")
def tiny():
    """Random 8×8 images with labels, and a Grad-CAM replay of 6 of them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64)
    exp = ll.explain(small_cnn(), x[:6], "gradcam", target=y[:6])
    return (x, y), Replay.from_explanation(exp, x[:6], weight=1.0, batch_size=4)


@pytest.fixture(scope="module")
def pruned_lesions(one_thread):
    """v0 trained on 32 px lesion images, pruned by half; replay and held-out lesion probes apart."""
    train, test = ll.data.lesions(1000, seed=3, size=32).split(0.2, seed=0)
    torch.manual_seed(0)
    v0 = ll.finetune(SmallResNet(width=8), train, epochs=4.0, lr=3e-3)
    probes = test.subset(np.flatnonzero(test.y == 1)[:64])
    replayed, held = probes.subset(np.arange(32)), probes.subset(np.arange(32, 64))
    small = ll.prune(v0, train, ratio=0.5, round_to=None)
    return v0, small, train, replayed, held


def test_replay_keeps_held_out_gradcam_closer_to_v0(pruned_lesions):
    v0, small, train, replayed, held = pruned_lesions
    replay = Replay.from_explanation(ll.explain(v0, replayed.x, "gradcam", target=replayed.y), replayed.x,
                                     weight=1.0, batch_size=8)
    plain = ll.finetune(small, train, epochs=1.0, lr=2e-3, seed=1)
    kept = ll.finetune(small, train, epochs=1.0, lr=2e-3, seed=1, replay=replay)

    def held_out_spearman(model):
        maps = ll.explain(model, held.x, "gradcam", target=held.y).values
        return spearman(maps, ll.explain(v0, held.x, "gradcam", target=held.y).values).mean()

    # Measured: 0.953 without replay, 0.963 with (seeds 1-3 all gain about 0.01).
    assert held_out_spearman(kept) > held_out_spearman(plain) + 0.005
    # The replayed term itself: pruning raised it, plain fine-tuning lowered it, replay lowered it further.
    assert replay.distance(kept) < 0.8 * replay.distance(plain) < replay.distance(small)
    assert replay.distance(v0) == pytest.approx(0.0, abs=1e-6)
    accuracy = [(m.predict(held.x).argmax(1) == held.y).mean() for m in (plain, kept)]
    assert accuracy[1] >= accuracy[0] - 1 / len(held)  # preserving explanations costs no accuracy here


def test_zero_weight_trains_bit_for_bit_as_no_replay(tiny):
    data, replay = tiny
    off = Replay(replay.x, replay.reference, replay.target, weight=0.0)
    steps = []
    plain = ll.finetune(small_cnn(), data, epochs=1.0, lr=1e-2, seed=3)
    zero = ll.finetune(small_cnn(), data, epochs=1.0, lr=1e-2, seed=3, replay=off, on_step=lambda d, t: steps.append((d, t)))
    for (name, a), b in zip(plain.module.state_dict().items(), zero.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert steps == [(1, 2), (2, 2)]


def test_replay_changes_the_update_and_leaves_the_input_alone(tiny):
    data, replay = tiny
    module = small_cnn()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    plain = ll.finetune(module, data, epochs=0.5, lr=1e-2, seed=3)
    replayed = ll.finetune(module, data, epochs=0.5, lr=1e-2, seed=3, replay=replay)
    assert not torch.equal(plain.module[3].weight, replayed.module[3].weight)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())
    assert module.training and all(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("method, metric", [("gradcam", "pearson"), ("input_x_gradient", "pearson"),
                                            ("gradcam++", "pearson"), ("gradcam++", "spearman")])
def test_replay_loss_gradient_reaches_the_weights_exactly(method, metric):
    """d(replay loss)/d(weight) by autograd through the explanation equals central differences."""
    model = small_cnn().double().train()
    x = np.random.default_rng(1).normal(size=(3, 1, 8, 8))
    reference = ll.explain(small_cnn().double(), x, method, target=[0, 1, 1]).values
    # Another net's maps: the distance is well away from its minimum, so the gradient is not ~0.
    reference = np.roll(reference, 2, axis=-1)
    replay = Replay(x, reference, [0, 1, 1], method=method, weight=2.5, metric=metric)
    trainee, weight = TorchModel(model), model[3].weight
    rows = np.arange(3)
    running_mean = model[1].running_mean.clone()
    replay.loss(trainee, rows).backward()
    assert torch.equal(model[1].running_mean, running_mean)  # explained in eval mode: statistics untouched
    analytic = weight.grad[0, 0, 0, 0].item()
    eps = 1e-6
    with torch.no_grad():
        weight[0, 0, 0, 0] += eps
        up = replay.loss(trainee, rows).item()
        weight[0, 0, 0, 0] -= 2 * eps
        down = replay.loss(trainee, rows).item()
        weight[0, 0, 0, 0] += eps
    assert analytic != 0
    assert analytic == pytest.approx((up - down) / (2 * eps), rel=1e-4)
    assert model.training  # attribute() put it back in training mode


def test_distance_is_one_minus_pearson_free_of_scale_and_offset():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 3, 5, 5))
    want = 1 - np.array([np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(3)])
    got = explanation_distance(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    same = explanation_distance(torch.as_tensor(a), torch.as_tensor(7.0 * a - 3.0))
    opposite = explanation_distance(torch.as_tensor(a), torch.as_tensor(-a))
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(opposite.numpy(), 2.0, atol=1e-6)
    np.testing.assert_allclose(explanation_distance(torch.as_tensor(a * 1e-4), torch.as_tensor(b)).numpy(), want, rtol=1e-5)
    current = torch.as_tensor(a).clone()
    current[0] = 0  # a Grad-CAM whose ReLU cut everything
    current.requires_grad_(True)
    distance = explanation_distance(current, torch.as_tensor(b))
    distance.sum().backward()
    np.testing.assert_allclose(distance.detach().numpy(), [1.0, *want[1:]], rtol=1e-5)
    assert torch.isfinite(current.grad).all()
    dead = torch.zeros(3, 5, 5, requires_grad=True)
    explanation_distance(dead, torch.as_tensor(b)).sum().backward()
    assert torch.isfinite(dead.grad).all()


def test_rank_distance_is_one_minus_spearman_of_the_pooled_maps():
    """The soft ranks follow scipy's Spearman on the 16×16 grid a 64 px map is pooled to."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(4, 64, 64))
    b = a + rng.normal(scale=[[[0.3]], [[1.0]], [[3.0]], [[10.0]]], size=a.shape)
    pooled = [x.reshape(4, 16, 4, 16, 4).mean(axis=(2, 4)) for x in (a, b)]
    want = 1 - spearman(*pooled)
    got = rank_distance(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    np.testing.assert_allclose(got, want, atol=0.01)
    assert want[0] < want[1] < want[2] < want[3]  # the noise levels really spread the figures
    # Spearman sees the order, not the values: a monotone transform costs almost nothing,
    # while 1 − Pearson counts it; a ReLU'd map with tied zeros matches itself exactly.
    grid = torch.as_tensor(rng.normal(size=(4, 16, 16)))
    curved = torch.exp(grid)
    assert rank_distance(curved, grid).max() < 0.01
    assert explanation_distance(curved, grid).min() > 0.1
    cut = torch.relu(torch.as_tensor(a) - 1)
    np.testing.assert_allclose(rank_distance(cut, 5 * cut).numpy(), 0.0, atol=1e-6)


def test_from_explanation_carries_method_layer_targets_and_options():
    x = np.random.default_rng(3).normal(size=(4, 1, 8, 8)).astype(np.float32)
    cam = ll.explain(small_cnn(), x, "gradcam++")
    replay = Replay.from_explanation(cam, x, weight=0.5, batch_size=2, metric="spearman")
    assert (replay.method, replay.layer, replay.weight, replay.batch_size) == ("gradcam++", "4", 0.5, 2)
    assert replay.metric == "spearman" and replay.distance(small_cnn()) == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_array_equal(replay.target, cam.target)
    ig = Replay.from_explanation(ll.explain(small_cnn(), x, "ig", steps=8, target=1), x)
    assert ig.options["steps"] == 8 and ig.layer is None and list(ig.target) == [1] * 4
    assert ig.distance(small_cnn()) == pytest.approx(0.0, abs=1e-5)  # the same net explains the same way


def one_line(error_type, call, match: str) -> None:
    with pytest.raises(error_type, match=match) as caught:
        call()
    message = str(caught.value)
    assert isinstance(caught.value, LeanlensError) and "\n" not in message and "hint:" in message


X = np.zeros((4, 1, 8, 8), np.float32)
CAM = np.zeros((4, 8, 8), np.float32)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reference": CAM[:, :4]}, BadInput, r"reference has shape \(4, 4, 8\).*gives \(4, 8, 8\)"),
    ({"reference": CAM, "method": "input_x_gradient"}, BadInput, r"gives \(4, 1, 8, 8\)"),
    ({"method": "gradcam+"}, UnknownMethod, "did you mean"),
    ({"method": "occlusion"}, BadOption, "'occlusion' cannot be differentiated"),
    ({"weight": -0.5}, BadOption, "weight=-0.5"),
    ({"weight": float("nan")}, BadOption, "weight=nan"),
    ({"batch_size": 0}, BadOption, "batch_size=0"),
    ({"target": [0, 1]}, BadInput, "target has shape"),
    ({"target": 0.5}, BadInput, "class indices"),
    ({"x": X * np.nan}, BadInput, "NaN or inf in sample 0"),
    ({"options": {"create_graph": False}}, BadOption, "'create_graph' itself"),
    ({"options": {"stepz": 4}, "method": "ig", "reference": X}, BadOption, "no option 'stepz'"),
    ({"layer": "4", "method": "saliency", "reference": X}, BadOption, "has no layer"),
    ({"metric": "spearmann"}, UnknownMethod, "unknown replay metric 'spearmann'.*did you mean 'spearman'"),
])
def test_bad_replay_is_one_line(kwargs, error, match):
    arguments = {"x": X, "reference": CAM, "target": 0, **kwargs}
    one_line(error, lambda: Replay(**arguments), match)


def test_what_only_the_model_can_refuse_is_one_line(tiny):
    data, replay = tiny
    for wrong, match in (({"layer": "stage9"}, "no layer named 'stage9'"), ({"target": 5}, "target 5 is out of range")):
        bad = Replay(**{**{k: getattr(replay, k) for k in ("x", "reference", "target", "layer")}, **wrong})
        one_line(BadInput, lambda bad=bad: ll.finetune(small_cnn(), data, epochs=0.5, replay=bad), match)
    one_line(BadOption, lambda: ll.finetune(small_cnn(), data, replay={"weight": 1}), "replay=dict")
    one_line(BadInput, lambda: Replay.from_explanation(replay.reference, replay.x), "takes an ll.Explanation")
