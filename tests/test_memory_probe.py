"""The memory probe behind `batch_size=None` is measured once per network layout and input shape."""

import numpy as np
import torch
from torch import nn

import leanlens as ll
from leanlens.explain import memory


def counting_probes(monkeypatch) -> list:
    calls = []
    probe = memory.saved_bytes
    monkeypatch.setattr(memory, "saved_bytes", lambda *a, **k: calls.append(1) or probe(*a, **k))
    return calls


def test_the_probe_runs_once_per_layout_and_input_shape(monkeypatch):
    calls = counting_probes(monkeypatch)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    x = torch.randn(4, 6)
    first = ll.explain(net, x, "ig", steps=8, memory="64MB", target=0)
    probes = len(calls)
    assert probes == 2  # one and two inputs
    again = ll.explain(net, x, "kernelshap", samples=64, seed=0, memory="64MB", target=0)
    assert len(calls) == probes  # same module, layout and input shape: no new probe
    with torch.no_grad():
        net[0].weight.mul_(3)  # new weights, same layout: the footprint is the same
    ll.explain(net, x, "ig", steps=8, memory="64MB", target=0)
    assert len(calls) == probes
    net[0], net[2] = nn.Linear(6, 64), nn.Linear(64, 2)  # wider: probed again
    ll.explain(net, x, "ig", steps=8, memory="64MB", target=0)
    assert len(calls) == 2 * probes
    ll.explain(net, torch.randn(9, 6), "ig", steps=8, memory="64MB", target=0)  # other inputs, same shape
    assert len(calls) == 2 * probes
    net[1] = nn.SiLU()  # another layer type: probed again
    ll.explain(net, x, "ig", steps=8, memory="64MB", target=0)
    assert len(calls) == 3 * probes
    assert first.values.shape == again.values.shape == x.shape


def test_a_remembered_footprint_is_the_probed_one():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 3))
    net = net.eval()
    model = ll.wrap(net)
    sample = torch.randn(1, 1, 16, 16)
    with model.inference():
        probed = memory.input_footprint(model, sample)
        assert memory.remembered_footprint(model, sample) == probed
        assert memory.remembered_footprint(model, sample) == probed  # from the cache
        wider = memory.remembered_footprint(model, torch.randn(1, 1, 32, 32))
    assert wider[0] > probed[0]  # a larger input costs more: shapes are part of the key
    assert np.isfinite(probed).all()


def test_autocast_has_a_footprint_of_its_own(monkeypatch):
    """bf16 activations take half the bytes: a footprint probed under autocast must not size a float32 run."""
    calls = counting_probes(monkeypatch)
    net = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 2)).eval()
    x = torch.randn(3, 64)
    ll.explain(net, x, "ig", steps=4, autocast=True, memory="64MB", target=0)
    ll.explain(net, x, "ig", steps=4, memory="64MB", target=0)
    assert len(calls) == 4  # two probes each: the second run did not reuse the first's


def test_the_layout_key_tells_trees_with_the_same_layers_apart():
    """The key lists each module with its children's names: the same layers nested otherwise, or a
    parameter renamed, give another key (the dotted names used to tell these apart)."""
    a, b = nn.Linear(4, 4), nn.Linear(4, 2)
    keys = [ll.wrap(net).layout()[1] for net in (nn.Sequential(nn.Sequential(a), b), nn.Sequential(nn.Sequential(a, b)))]
    assert keys[0] != keys[1]
    renamed = nn.Sequential(nn.Sequential(a), nn.Linear(4, 2))
    renamed[1].register_parameter("bias2", renamed[1]._parameters.pop("bias"))
    assert ll.wrap(renamed).layout()[1] != keys[0]
    shared = nn.Sequential(a, a)  # met twice, listed once: the walk ends
    assert len(ll.wrap(shared).layout()[1]) == 2
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    untied = ll.wrap(net).layout()[1]
    net[1].weight = net[0].weight  # tied: autograd saves one weight fewer, so the probe must run again
    assert ll.wrap(net).layout()[1] != untied
