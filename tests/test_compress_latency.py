"""ll.compress under latency budgets and with the latency-aware allocation: the table decides what goes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from errors_support import one_line
from latency_support import fake_ms, fake_table
from sklearn.datasets import load_digits
from torch import nn

import leanlens as ll
from leanlens.audit.profile import cost
from leanlens.compression.latency import predicted_ms
from leanlens.errors import BadInput, BadOption

QUICK = {"max_drop": 100.0, "epochs_per_step": 0.1, "steps": 1, "probes": 4, "criterion": "magnitude"}


def three_convs() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    data = ll.data.Dataset((bunch.images / 16.0)[:, None].astype(np.float32), bunch.target, name="digits")
    return data.subset(np.arange(300)).split(0.3, seed=0)


def table_for(expensive: str, data):
    return fake_table(three_convs(), torch.as_tensor(data.x[:1]), expensive)


def kept_shares(result) -> dict[str, float]:
    full = {"0": 16, "3": 32, "6": 32}
    return {name: width / full[name] for name, width in result.trajectory[-1].widths.items()}


@pytest.mark.parametrize("expensive", ["3", "6"])
def test_the_layer_a_fake_table_makes_expensive_is_pruned_hardest_through_compress(digits, expensive, one_thread):
    train, test = digits
    model = three_convs()
    result = ll.compress(model, train, budget="latency=0.5", allocation="latency", table=table_for(expensive, train),
                         validation=test, **QUICK)
    kept = kept_shares(result)
    assert min(kept, key=kept.get) == expensive and kept[expensive] <= 0.5
    assert all(kept[name] == 1.0 for name in kept if name != expensive)  # 50x cheaper a channel: untouched
    # the budget holds on the table's figures, counted by hand on the model handed back
    assert fake_ms(result.model.module, expensive) <= 0.5 * fake_ms(model, expensive)
    assert result.trajectory[-1].predicted_ms == fake_ms(result.model.module, expensive)


def test_a_macs_budget_with_the_latency_allocation_also_cuts_where_the_table_says_time_goes(digits, one_thread):
    train, test = digits
    model = three_convs()
    by_time = {expensive: kept_shares(ll.compress(model, train, budget="macs=0.7", allocation="latency", validation=test,
                                                  table=table_for(expensive, train), **QUICK))
               for expensive in ("3", "6")}
    assert by_time["3"]["3"] < by_time["3"]["6"] and by_time["6"]["6"] < by_time["6"]["3"]


def test_a_latency_budget_with_uniform_widths_is_read_from_the_table(digits, one_thread):
    train, test = digits
    model = three_convs()
    result = ll.compress(model, train, budget="latency=0.6", table=table_for("3", train), validation=test, **QUICK)
    assert fake_ms(result.model.module, "3") <= 0.6 * fake_ms(model, "3")
    assert result.share("predicted_ms") == fake_ms(result.model.module, "3") / fake_ms(model, "3")
    assert len(set(kept_shares(result).values())) == 1  # every layer loses the same share


def test_without_a_table_one_is_measured_here_cached_and_every_step_is_timed(digits, tmp_path, monkeypatch, one_thread):
    train, test = digits
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = ll.compress(three_convs(), train, budget="macs=0.5", allocation="latency", validation=test,
                         latency_batch=8, **QUICK)
    assert len(list((tmp_path / "leanlens" / "latency").glob("*.json"))) == 1
    assert all(step.latency_ms > 0 and step.predicted_ms > 0 for step in result.trajectory)
    assert result.trajectory[-1].predicted_ms < result.trajectory[0].predicted_ms
    assert cost(result.model, test.x[:1]).macs <= 0.5 * cost(three_convs(), test.x[:1]).macs


def test_predicted_ms_sums_the_table_at_the_model_s_widths(digits):
    train, _ = digits
    model = three_convs()
    assert predicted_ms(table_for("6", train), model) == 16 + 32 + 50 * 32 + 10


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"allocation": "fastest"}, BadOption, "allocation='fastest'"),
    ({"table": "table.json"}, BadOption, "table is a str"),
    ({"latency_batch": 0}, BadOption, "latency_batch"),
])
def test_bad_latency_options_are_one_line(digits, options, error, match):
    train, _ = digits
    with pytest.raises(error, match=match) as caught:
        ll.compress(three_convs(), train, budget="latency=0.5", **options)
    one_line(caught)


def test_a_table_of_another_model_is_one_line(digits):
    train, _ = digits
    other = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10))
    table = fake_table(other, torch.as_tensor(train.x[:1]), "0")
    with pytest.raises(BadInput, match="another model") as caught:
        ll.compress(three_convs(), train, budget="latency=0.5", table=table)
    one_line(caught)
