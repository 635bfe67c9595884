"""Profiles count what is really there; audit compares like with like, on hand-built models."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.audit import fingerprint, interleaved, latencies, probe_set, profile
from leanlens.audit.timing import BURST
from leanlens.data import Dataset
from leanlens.errors import BadInput
from leanlens.models import SmallResNet
from leanlens.models.onnx_model import OnnxModel


class StepClock:
    """A fake clock: timed turn k lasts durations[k mod len] ms in each of its `burst` calls
    (start and stop reads alternate)."""

    def __init__(self, durations_ms, burst=BURST):
        self.durations = itertools.cycle(d / 1e3 for d in durations_ms for _ in range(burst))
        self.now, self.reads = 100.0, 0

    def __call__(self) -> float:
        if self.reads % 2:
            self.now += next(self.durations)
        self.reads += 1
        return self.now


def test_interleaved_takes_turns_and_keeps_median_and_min_after_warmup():
    calls = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    # round by round: warmup (a 50, b 50), then a: 3, 1, 2 and b: 10, 30, 20
    clock = StepClock([50, 50, 3, 10, 1, 30, 2, 20], burst=1)
    timings = interleaved(contenders, repeats=3, warmup=1, clock=clock, burst=1)
    assert calls == ["a", "b"] * 4
    assert (timings["a"].median_ms, timings["a"].min_ms) == pytest.approx((2.0, 1.0))
    assert (timings["b"].median_ms, timings["b"].min_ms) == pytest.approx((20.0, 10.0))


def test_a_turn_counts_its_fastest_call_not_the_one_its_predecessor_slowed():
    calls = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    # every turn's first call is slowed (9 ms) by the turn before; then a takes 2 ms, b 4 ms
    clock = StepClock([9, 2, 2, 9, 4, 4], burst=1)
    timings = interleaved(contenders, repeats=4, warmup=0, clock=clock, burst=3)
    assert calls == (["a"] * 3 + ["b"] * 3) * 4
    assert (timings["a"].median_ms, timings["b"].median_ms) == pytest.approx((2.0, 4.0))


def _conv_net(classes=3):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, classes))


def test_profile_counts_params_and_macs_of_a_known_model_and_times_it_on_both_fp32_paths():
    x = np.zeros((5, 1, 8, 8), dtype=np.float32)
    # contenders in order: eager torch 4 ms, then ONNX Runtime on its export 3 ms
    p = profile(_conv_net(), x, batch=5, repeats=3, warmup=1, clock=StepClock([4, 3]))
    assert p.cost.params == 4 * 9 + 256 * 3 + 3
    # conv: 9 MACs per output pixel and channel; linear: one per weight, plus its bias additions
    assert p.cost.macs == 4 * 9 * 64 + (256 * 3 + 3)
    assert p.cost.bytes > 4 * p.cost.params  # float32 weights plus the safetensors header
    assert p.batch == 5 and p.latency.threads == torch.get_num_threads()
    assert (p.latency.runtime, p.latency_ms) == ("torch", pytest.approx(4.0))
    assert (p.latency.fp32_runtime, p.latency.fp32.median_ms) == ("onnxruntime", pytest.approx(3.0))


def test_int8_is_timed_against_its_own_fp32_graph_in_the_same_run():
    torch.manual_seed(0)
    data = (np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32), np.arange(64) % 3)
    q = ll.quantize(_conv_net(), data)
    # torch reference (torch 9, ORT 6), then the int8 model (int8 2, its fp32 graph 5)
    ref, cand = latencies([ll.wrap(_conv_net()), q], data[0][:8], repeats=3, warmup=1, clock=StepClock([9, 6, 2, 5]))
    assert (ref.runtime, ref.fp32_runtime, ref.fp32.median_ms) == ("torch", "onnxruntime", pytest.approx(6.0))
    assert (cand.runtime, cand.own.median_ms) == ("onnxruntime int8", pytest.approx(2.0))
    assert (cand.fp32_runtime, cand.fp32.median_ms) == ("onnxruntime", pytest.approx(5.0))
    # an int8 file on its own has no known float path; a float graph is its own
    (bare,) = latencies([OnnxModel(q.model_bytes)], data[0][:8], repeats=1, warmup=0, clock=StepClock([1]))
    assert (bare.runtime, bare.fp32_runtime, bare.fp32) == ("onnxruntime int8", None, None)
    (fp32,) = latencies([q.fp32], data[0][:8], repeats=1, warmup=0, clock=StepClock([1]))
    assert fp32.runtime == fp32.fp32_runtime == "onnxruntime"


def test_what_a_model_does_not_say_is_not_counted_as_zero():
    from leanlens.audit.profile import Cost, cost

    x = np.zeros((2, 1, 8, 8), dtype=np.float32)
    graph = OnnxModel(ll.quantize(_conv_net(), (x, np.arange(2) % 3)).fp32.model_bytes)
    assert cost(graph, x) == Cost(params=4 * 9 + 256 * 3 + 3, macs=None, bytes=len(graph.model_bytes))
    assert cost(lambda batch: np.zeros((len(batch), 3)), x) == Cost(None, None, None)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(x) if x.sum() > 0 else -self.head(x)


def test_a_model_that_does_not_export_is_timed_on_torch_with_a_warning():
    with pytest.warns(UserWarning, match="not timed on ONNX Runtime"):
        (latency,) = latencies([ll.wrap(DataDependent())], np.ones((3, 4), np.float32), repeats=1, warmup=0,
                               clock=StepClock([2]))
    assert (latency.runtime, latency.fp32_runtime, latency.fp32.median_ms) == ("torch", "torch", pytest.approx(2.0))


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


def _brightness_model(sign: float = 1.0) -> nn.Module:
    """Class 1 scores the mean brightness, class 0 its negative: the CAM of class 1 is the image itself."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[3].weight.copy_(torch.tensor([[-sign], [sign]]))
        model[3].bias.zero_()
    return model


@pytest.fixture(scope="module")
def bright_spots():
    """One bright pixel an image; the mask holds it in the first 6 images of 8, not in the last 2."""
    x = np.zeros((8, 1, 8, 8), np.float32)
    masks = np.zeros((8, 8, 8), bool)
    masks[:, 2:4, 2:4] = True
    for i in range(8):
        r, c = (2 + i % 2, 3) if i < 6 else (6, 6)
        x[i, 0, r, c] = 1.0 + i
    return Dataset(x, np.ones(8, int), masks)


def test_audit_of_a_model_against_an_equal_copy_agrees_everywhere(bright_spots):
    # durations in order: reference torch 10, its ORT 8; candidate torch 5, its ORT 4 (ms)
    result = ll.audit(_brightness_model(), _brightness_model(), bright_spots, methods=("gradcam++",),
                      probe=bright_spots, clock=StepClock([10, 8, 5, 4]))
    scores = result.scores["gradcam++"]
    assert result.agreement == 1.0 and result.candidate.accuracy == 1.0
    assert (scores.spearman, scores.top_k, scores.cosine) == pytest.approx((1.0, 1.0, 1.0))
    assert scores.pointing_game == pytest.approx(6 / 8)  # the hottest pixel is the bright one
    figures = result.figures()
    assert figures.params == result.reference.profile.cost.params == 1 + 2 + 2
    assert figures.latency_ms == pytest.approx(5.0) and figures.fp32_latency_ms == pytest.approx(4.0)
    # read against the reference's best fp32 path (ORT, 8 ms), not its eager torch (10 ms)
    assert figures.speedup == pytest.approx(8.0 / 5.0)
    # and against its own architecture's best fp32 path (its ORT export, 4 ms)
    assert figures.fp32_speedup == pytest.approx(4.0 / 5.0)


def test_a_candidate_that_flips_the_classes_never_agrees(bright_spots):
    result = ll.audit(_brightness_model(), _brightness_model(-1.0), bright_spots, methods=("gradcam++",),
                      probe=bright_spots, clock=StepClock([1]))
    assert result.agreement == 0.0
    assert (result.reference.accuracy, result.candidate.accuracy) == (1.0, 0.0)
    # the flipped model scores class 1 by darkness: its Grad-CAM++ of class 1 is empty, no ranking shared
    assert result.scores["gradcam++"].spearman == 0.0


def test_audit_refuses_models_with_different_classes(bright_spots):
    with pytest.raises(BadInput, match="3 classes but the candidate scores 5"):
        ll.audit(_conv_net(3), _conv_net(5), bright_spots, probe=bright_spots)


@pytest.fixture(scope="module")
def small_setup():
    train, test = ll.data.load("lesions", n=1200, seed=2).split(0.25, seed=2)
    torch.manual_seed(0)
    return ll.finetune(SmallResNet(width=8), train, epochs=2.0, lr=3e-3), test


def test_audit_sees_a_different_model(small_setup):
    model, test = small_setup
    torch.manual_seed(1)
    untrained = SmallResNet(width=8)
    result = ll.audit(model, untrained, test, methods=("gradcam++",), clock=StepClock([1]))
    assert result.scores["gradcam++"].spearman < 0.9
    assert result.candidate.accuracy < result.reference.accuracy


def test_an_audit_is_recorded_with_what_reproduces_it(small_setup, tmp_path):
    model, test = small_setup
    probe = probe_set(test, n=8)
    result = ll.audit(model, model, test, methods=("gradcam++",), probe=probe, pointing_tolerance=4,
                      clock=StepClock([1]))
    with ll.Store(tmp_path / "s.db") as store:
        store.set_probe(probe.x, probe.y, probe.masks)
        version = store.record_assessment("v1", model, result)
    with ll.Store(tmp_path / "s.db") as store:
        stored = store.version("v1")
        assert stored.fingerprint == fingerprint(model) and stored.scores == result.scores
        assert stored.metrics == result.figures().to_json() and version == stored
        explained = store.explained("v1", "gradcam++")
        np.testing.assert_array_equal(explained.target, probe.y)
        np.testing.assert_array_equal(explained.values, result.explanations["gradcam++"].values)
        assert explained.scores.pointing_tolerance == 4
        assert explained.options == dict(result.explanations["gradcam++"].options)  # layer, batch_size, ...
        np.testing.assert_array_equal(store.predictions("v1"), result.explanations["gradcam++"].predictions)


def test_a_reference_assessment_of_other_probes_or_methods_is_refused(bright_spots):
    model = _brightness_model()
    earlier = ll.assess(model, bright_spots, bright_spots, ("saliency",))
    other_probe = bright_spots.subset(np.arange(4))
    with pytest.raises(ll.BadOption, match="another probe set"):
        ll.audit(model, model, bright_spots, ("saliency",), probe=other_probe, reference_assessment=earlier)
    with pytest.raises(ll.BadOption, match="no 'gradcam' explanations"):
        ll.audit(model, model, bright_spots, ("gradcam",), probe=bright_spots, reference_assessment=earlier)
    reused = ll.audit(model, model, bright_spots, ("saliency",), probe=bright_spots, reference_assessment=earlier)
    assert reused.scores["saliency"].spearman == pytest.approx(1.0)
