"""Latency tables and latency-aware widths: the table decides, budgets hold, the cache is reused."""

from __future__ import annotations

import latency_support
import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from leanlens.audit.timing import Timing
from leanlens.compression import latency
from leanlens.compression.allocation import allocate, cost
from leanlens.compression.latency import LatencyTable, latency_table
from leanlens.compression.widths import (
    channel_scores,
    layout,
    output_layers,
    prune_to_widths,
)
from leanlens.errors import BadInput, BadOption


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()


class Residual(nn.Module):
    """conv a and conv c add their outputs: one group; the head is a 1×1 conv."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 24, 1), nn.Conv2d(24, 16, 1)
        self.head = nn.Conv2d(16, 5, 1)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = h + self.c(torch.relu(self.b(h)))
        return self.head(h).mean((2, 3))


EXAMPLE = torch.randn(2, 3, 8, 8)
UNIFORM = {"0": np.ones(32), "3": np.ones(64), "6": np.ones(64)}


def fake_table(expensive: str) -> LatencyTable:
    return latency_support.fake_table(tiny_cnn(), EXAMPLE, expensive)


@pytest.mark.parametrize("expensive", ["3", "6"])
def test_the_layer_the_table_makes_expensive_is_pruned_hardest(expensive):
    table = fake_table(expensive)
    widths = allocate(tiny_cnn(), EXAMPLE, {"latency": 0.5}, UNIFORM, table)
    full = layout(tiny_cnn(), EXAMPLE).groups
    kept = {group: widths[group] / full[group] for group in full}
    assert min(kept, key=kept.get) == expensive
    assert all(kept[g] == 1.0 for g in kept if g != expensive)  # 50× cheaper per channel: untouched


def test_max_pruning_ratio_bounds_what_a_group_loses():
    widths = allocate(tiny_cnn(), EXAMPLE, {"latency": 0.6}, UNIFORM, fake_table("3"), max_pruning_ratio=0.5)
    assert widths == {"0": 32, "3": 32, "6": 64}  # half of the costly group, not the 8 it would lose unbounded


def test_with_a_table_a_params_budget_also_removes_the_costly_channels_first():
    plan = layout(tiny_cnn(), EXAMPLE)
    without = allocate(tiny_cnn(), EXAMPLE, {"params": 0.6}, UNIFORM)
    with_table = allocate(tiny_cnn(), EXAMPLE, {"params": 0.6}, UNIFORM, fake_table("6"))
    assert with_table["6"] < without["6"]
    assert cost(plan, with_table, "params") <= 0.6 * cost(plan, plan.groups, "params")


def test_the_latency_budget_is_met_on_the_tables_own_numbers_with_widths_multiples_of_round_to():
    plan, table = layout(tiny_cnn(), EXAMPLE), fake_table("3")
    for round_to in (8, 16):
        widths = allocate(tiny_cnn(), EXAMPLE, {"latency": 0.4}, UNIFORM, table, round_to=round_to)
        assert all(w % round_to == 0 for w in widths.values())
        assert cost(plan, widths, "latency", table) <= 0.4 * cost(plan, plan.groups, "latency", table)


def test_pruned_to_the_widths_the_model_has_those_channels_and_the_predicted_params():
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = channel_scores(model, EXAMPLE, tp.importance.MagnitudeImportance(p=1))
    widths = allocate(model, EXAMPLE, {"params": 0.5}, scores, round_to=8)
    pruned = prune_to_widths(model, EXAMPLE, widths, scores)
    plan = layout(model, EXAMPLE)
    # 3×3 convs on 8×8, then 4×4 after the stride: 32·3·9·64 + 64·32·9·16 + 64·64·9·16, and 64·10
    assert cost(plan, plan.groups, "macs") == 55296 + 294912 + 589824 + 640
    assert [pruned[i].out_channels for i in (0, 3, 6)] == [widths["0"], widths["3"], widths["6"]]
    assert pruned[10].out_features == 10  # the head keeps its classes
    params = sum(p.numel() for p in pruned.parameters())
    assert params == cost(plan, widths, "params") <= 0.5 * sum(p.numel() for p in model.parameters())
    kept = np.sort(np.argsort(-scores["3"], kind="stable")[: widths["3"]])  # the highest-scored channels stay
    torch.testing.assert_close(pruned[3].bias, model[3].bias[torch.as_tensor(kept)])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched


def test_scoring_a_model_in_training_moves_no_batch_norm_statistics():
    model = tiny_cnn().train()
    stats = model[1].running_mean.clone()
    channel_scores(model, EXAMPLE, tp.importance.MagnitudeImportance(p=1))
    assert torch.equal(model[1].running_mean, stats) and model.training and model[1].training


def test_protected_layers_and_a_one_by_one_conv_head_keep_their_width():
    model = Residual()
    plan = layout(model, EXAMPLE)
    assert output_layers(model, EXAMPLE) == ["head"]
    assert plan.groups == {"c": 16, "b": 24}  # a and c add: one group, named after its root
    residual = plan.layers["a"].out_group
    assert plan.layers["c"].out_group == residual == plan.layers["head"].in_group
    scores = {g: np.arange(w, dtype=float) for g, w in plan.groups.items()}
    widths = allocate(model, EXAMPLE, {"params": 0.7}, {g: scores[g] for g in plan.groups}, round_to=4,
                      protect=["b"])
    assert set(widths) == {residual}
    pruned = prune_to_widths(model, EXAMPLE, widths, scores)
    assert (pruned.b.out_channels, pruned.head.out_channels) == (24, 5)
    assert pruned.a.out_channels == pruned.c.out_channels == pruned.head.in_channels == widths[residual] < 16


def counting_timer(calls: list):
    def fake(contenders, **_):
        calls.append(len(contenders))
        return {point: Timing(float(np.prod(point)), float(np.prod(point))) for point in contenders}

    return fake


def test_the_cache_is_reused_and_measured_again_when_the_input_shape_or_threads_change(monkeypatch, tmp_path):
    calls: list[int] = []
    monkeypatch.setattr(latency, "interleaved", counting_timer(calls))
    steps = []
    first = latency_table(tiny_cnn(), EXAMPLE, cache_dir=tmp_path, threads=1, on_step=lambda *s: steps.append(s))
    assert len(calls) == first.measured == 4 and steps[-1] == (4, 4)  # 3 convs and the head's inputs
    assert first.entries["3"].cout == (8, 16, 32, 48, 64) and first.entries["0"].cin == (3,)
    assert first.ms("3", 32, 64) == 32 * 64  # a measured point is read back as measured
    assert first.ms("3", 32, 40) == 32 * 40  # between points: linear, exact for this fake
    again = latency_table(tiny_cnn(), EXAMPLE, cache_dir=tmp_path, threads=1)
    assert len(calls) == 4 and again.measured == 0 and again.entries == first.entries
    latency_table(tiny_cnn(), torch.randn(2, 3, 12, 12), cache_dir=tmp_path, threads=1)
    latency_table(tiny_cnn(), EXAMPLE, cache_dir=tmp_path, threads=2)
    assert len(calls) == 12


def test_a_table_cached_on_another_processor_is_measured_again(monkeypatch, tmp_path):
    calls: list[int] = []
    monkeypatch.setattr(latency, "interleaved", counting_timer(calls))
    latency_table(tiny_cnn(), EXAMPLE, cache_dir=tmp_path, threads=1)
    assert latency_table(tiny_cnn(), EXAMPLE, cache_dir=tmp_path, threads=1).measured == 0
    monkeypatch.setattr(latency, "hardware", lambda device: "another CPU avx2")  # a shared home directory
    assert latency_table(tiny_cnn(), EXAMPLE, cache_dir=tmp_path, threads=1).measured == 4


def test_layers_of_one_shape_are_timed_once(monkeypatch, tmp_path):
    calls: list[int] = []
    monkeypatch.setattr(latency, "interleaved", counting_timer(calls))
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1),
                          nn.Conv2d(16, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 64, 4))
    table = latency_table(model, EXAMPLE, cache_dir=tmp_path, threads=1)
    assert len(table.entries) == 4 and len(calls) == table.measured == 3  # convs 1 and 2 share one shape
    assert table.entries["1"] == table.entries["2"]


def test_a_real_table_is_positive_and_never_slower_when_narrower(tmp_path):
    table = latency_table(tiny_cnn(), EXAMPLE, widths=(1.0, 0.5), cache_dir=tmp_path, threads=1, repeats=1)
    grid = np.array(table.entries["3"].ms)
    assert grid.shape == (2, 2) and np.all(grid > 0)
    assert np.all(np.diff(grid, axis=0) >= 0) and np.all(np.diff(grid, axis=1) >= 0)


@pytest.mark.parametrize("budget, match", [
    ({"flops": 0.3}, "unknown budget"), ({"macs": 0.0}, "fraction"), ({"macs": 1.5}, "fraction"),
    ("macs=0.3", "one target"), ({"latency": 0.5}, "needs a latency table"), ({"params": 0.01}, "cannot be met"),
])
def test_bad_budgets_are_one_line(budget, match):
    with pytest.raises(BadOption, match=match) as error:
        allocate(tiny_cnn(), EXAMPLE, budget, UNIFORM)
    assert "\n" not in str(error.value) and "hint:" in str(error.value)


def test_bad_scores_tables_and_options_are_one_line(tmp_path):
    other = fake_table("3")
    other = LatencyTable("other", "cpu", 1, {k: v for k, v in other.entries.items() if k != "6"})
    cases = [
        (BadInput, "no entry for group", lambda: allocate(tiny_cnn(), EXAMPLE, {"params": 0.5}, {"0": np.ones(32)})),
        (BadInput, "must be 64 finite", lambda: allocate(tiny_cnn(), EXAMPLE, {"params": 0.5}, {**UNIFORM, "3": np.ones(3)})),
        (BadInput, "another model", lambda: allocate(tiny_cnn(), EXAMPLE, {"latency": 0.5}, UNIFORM, other)),
        (BadOption, "protect", lambda: allocate(tiny_cnn(), EXAMPLE, {"params": 0.5}, UNIFORM, protect=["conv9"])),
        (BadOption, "round_to", lambda: allocate(tiny_cnn(), EXAMPLE, {"params": 0.5}, UNIFORM, round_to=0)),
        (BadOption, "max_pruning_ratio",
         lambda: allocate(tiny_cnn(), EXAMPLE, {"params": 0.5}, UNIFORM, max_pruning_ratio=1.5)),
        (BadOption, "widths", lambda: latency_table(tiny_cnn(), EXAMPLE, widths=(0.0, 1.0), cache_dir=tmp_path)),
        (BadInput, "does not have", lambda: prune_to_widths(tiny_cnn(), EXAMPLE, {"9": 4}, UNIFORM)),
        (BadInput, "channel", lambda: allocate(tiny_cnn(), np.zeros((2, 1, 8, 8)), {"params": 0.5}, UNIFORM)),
        (BadOption, "threads", lambda: latency_table(tiny_cnn(), EXAMPLE, threads=0, cache_dir=tmp_path)),
    ]
    if not torch.cuda.is_available():
        cases.append((BadOption, "no CUDA", lambda: latency_table(tiny_cnn(), EXAMPLE, device="cuda", cache_dir=tmp_path)))
    for kind, match, call in cases:
        with pytest.raises(kind, match=match) as error:
            call()
        assert "\n" not in str(error.value) and "hint:" in str(error.value)
