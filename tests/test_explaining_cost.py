"""`explaining_cost()`: serving with explanations changes nothing the model answers, and the
timings are each call's own (checked with a fake clock that the model itself advances)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.errors import BadOption, MissingCapability, UnknownMethod

CLASSES = 2


class Ticking:
    """A black-box model on a fake clock: scoring a batch takes exactly 1 ms a sample."""

    def __init__(self):
        self.now = 0.0
        self.scored = 0  # samples scored since the counter was last read

    def clock(self) -> float:
        return self.now

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.now += 1e-3 * len(x)
        self.scored += len(x)
        return x.reshape(len(x), -1)[:, :CLASSES]  # class c scores feature c

    def take(self) -> int:
        scored, self.scored = self.scored, 0
        return scored


def _data(n: int = 8, seed: int = 0) -> ll.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 4, 4)).astype(np.float32)
    return ll.data.Dataset(x, rng.integers(0, CLASSES, n))


def test_each_timing_is_its_own_call_at_its_own_batch():
    model, data = Ticking(), _data()
    samples_per_explanation = {}
    for b in (1, 8):
        model.take()
        ll.explain(model, data.x[:b], method="occlusion", window=2)
        samples_per_explanation[b] = model.take()  # what one served call scores: its time in ms
    costs = ll.explaining_cost(model, data, ["occlusion"], batch_sizes=(1, 8), options={"occlusion": {"window": 2}},
                               repeats=3, warmup=0, clock=model.clock)
    assert [(r.method, r.batch) for r in costs.rows] == [("occlusion", 1), ("occlusion", 8)]
    for row in costs.rows:
        assert row.forward.median_ms == pytest.approx(row.batch) == pytest.approx(row.forward.min_ms)
        assert row.explained.median_ms == pytest.approx(samples_per_explanation[row.batch])
        assert row.overhead == pytest.approx(samples_per_explanation[row.batch] / row.batch)
        assert row.overhead_percent == pytest.approx(100 * (row.overhead - 1))
        assert row.rounds == 3
    plain = float(np.mean(data.x.reshape(8, -1)[:, :CLASSES].argmax(1) == data.y))  # the hand-computed accuracy
    assert costs.accuracy_samples == 8 and all(r.accuracy == r.explained_accuracy == plain for r in costs.rows)
    assert costs.row("occlusion", 8).accuracy_change == 0.0


def test_a_slow_method_gets_fewer_rounds_one_call_a_turn_and_never_fewer_than_three_rounds():
    model, data = Ticking(), _data()
    occlusion = {"occlusion": {"window": 2}}
    ll.explain(model, data.x, method="occlusion", window=2)
    per_call = model.take()  # samples one explanation of the 8 scores: its milliseconds, well over 10
    # a 30 ms budget: the call that estimates the time, then 3 rounds of one forward and one explanation
    costs = ll.explaining_cost(model, data, ["occlusion"], batch_sizes=(8,), options=occlusion,
                               repeats=5, warmup=2, budget_s=0.03, clock=model.clock)
    assert costs.rows[0].rounds == 3
    assert model.take() == 8 + (1 + 3) * per_call + 3 * 8  # the first 8: the plain accuracy's forward
    # room for every round: bursts of 3 calls a turn, after the warm-up rounds
    roomy = ll.explaining_cost(model, data, ["occlusion"], batch_sizes=(8,), options=occlusion,
                               repeats=5, warmup=1, budget_s=60, clock=model.clock)
    assert roomy.rows[0].rounds == 5
    assert model.take() == 8 + (1 + 6 * 3) * per_call + 6 * 3 * 8


class Mixed(nn.Module):
    """Batch norm, dropout, a frozen layer and a child left in train mode: all that explaining could disturb."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * 8 * 8, CLASSES)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


def _state(module: nn.Module) -> dict:
    return {"tensors": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "training": [m.training for m in module.modules()],
            "requires_grad": [p.requires_grad for p in module.parameters()]}


def test_explaining_leaves_the_model_and_its_answers_bit_identical(one_thread):
    torch.manual_seed(0)
    module = Mixed().eval()
    module.bn.train()  # a child in train mode: a forward in this mode would move its running statistics
    module.conv.bias.requires_grad_(False)
    rng = np.random.default_rng(1)
    data = ll.data.Dataset(rng.normal(size=(12, 1, 8, 8)).astype(np.float32), rng.integers(0, CLASSES, 12))
    model = ll.wrap(module)
    before, predicted = _state(module), model.predict(data.x)
    costs = ll.explaining_cost(model, data, ["saliency", "gradcam++", "occlusion"], batch_sizes=(1, 4),
                               repeats=3, warmup=0, budget_s=0.0)
    after = _state(module)
    assert before["training"] == after["training"] and before["requires_grad"] == after["requires_grad"]
    assert all(torch.equal(before["tensors"][k], after["tensors"][k]) for k in before["tensors"])
    assert np.array_equal(model.predict(data.x), predicted)
    plain = float(np.mean(predicted[:4].argmax(1) == data.y[:4]))
    assert [(r.method, r.batch) for r in costs.rows] == [(m, b) for m in ("saliency", "gradcam++", "occlusion")
                                                         for b in (1, 4)]
    assert all(r.accuracy == r.explained_accuracy == plain and r.accuracy_change == 0 for r in costs.rows)
    assert costs.threads == 1 and all(r.forward.median_ms > 0 and r.explained.median_ms > 0 for r in costs.rows)


def test_the_markdown_table_has_a_row_per_method_and_batch_with_its_options():
    model, data = Ticking(), _data()
    steps = []
    costs = ll.explaining_cost(model, data, ["occlusion", "kernelshap"], batch_sizes=(1, 2), repeats=3, warmup=0,
                               options={"kernelshap": {"samples": 40}}, clock=model.clock,
                               on_step=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    table = costs.to_markdown().splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| method")]
    assert [line.split(" | ")[:2] for line in rows] == [
        ["| occlusion", "1"], ["| occlusion", "2"], ["| kernelshap (samples=40)", "1"], ["| kernelshap (samples=40)", "2"]]
    one = costs.row("kernelshap", 2)
    assert f"{one.overhead:.2f}× ({one.overhead_percent:+.0f} %)" in rows[3] and rows[3].endswith("| +0.0 |")


def _refused(error, call):
    with pytest.raises(error) as caught:
        call()
    assert "\n" not in str(caught.value) and "hint:" in str(caught.value)
    return str(caught.value)


def test_what_cannot_be_measured_is_refused_before_any_timing():
    model, data = Ticking(), _data(4)

    def never():
        raise AssertionError("timed before the arguments were checked")

    def cost(methods=("occlusion",), **kw):
        return lambda: ll.explaining_cost(model, data, methods, clock=never, **kw)

    assert "gradcam+" in _refused(UnknownMethod, cost(("gradcam+",)))
    assert "gradients" in _refused(MissingCapability, cost(("saliency",)))
    assert "more than the 4 samples" in _refused(BadOption, cost(batch_sizes=(1, 64)))
    assert "batch size 0" in _refused(BadOption, cost(batch_sizes=(0,)))
    assert "'ig'" in _refused(UnknownMethod, cost(options={"ig": {"steps": 8}}))
    assert "empty" in _refused(BadOption, cost(()))
    assert "repeats=0" in _refused(BadOption, cost(batch_sizes=(2,), repeats=0))
    assert "budget_s=-1" in _refused(BadOption, cost(batch_sizes=(2,), budget_s=-1))
