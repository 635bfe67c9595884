"""The probe set's held-out and replay parts, and the gate runs a store keeps."""

import numpy as np
import pytest

from leanlens.errors import BadInput
from leanlens.store import Store, held_out_split

N = 8
X = np.arange(N * 2, dtype=np.float32).reshape(N, 2)
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
MASKS = np.arange(N * 4).reshape(N, 2, 2) % 3 == 0
HELD_OUT = np.array([True, False, True, False, False, True, True, False])


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lens.db") as s:
        s.set_probe(X, Y, MASKS, held_out=HELD_OUT)
        yield s


def test_each_part_holds_exactly_its_samples(store):
    for part, keep in (("held_out", HELD_OUT), ("replay", ~HELD_OUT), ("all", np.ones(N, bool))):
        probe = store.probe(part)
        np.testing.assert_array_equal(probe.x, X[keep])
        np.testing.assert_array_equal(probe.y, Y[keep])
        np.testing.assert_array_equal(probe.masks, MASKS[keep])
        np.testing.assert_array_equal(probe.held_out, HELD_OUT[keep])
    assert len(store.probe()) == N  # 'all' by default: explanations are recorded on every probe


def test_the_split_is_part_of_the_probe_set(store):
    store.set_probe(X, Y, MASKS, held_out=HELD_OUT.copy())  # the same: nothing to do
    with pytest.raises(BadInput, match="different probe set"):
        store.set_probe(X, Y, MASKS, held_out=~HELD_OUT)
    with pytest.raises(BadInput, match="probe part 'test'") as error:
        store.probe("test")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("held_out", [np.ones(N - 1, bool), np.ones(N), np.ones((N, 1), bool)])
def test_a_held_out_mask_that_is_not_one_bool_a_sample_is_refused(tmp_path, held_out):
    with Store(tmp_path / "lens.db") as s, pytest.raises(BadInput, match="held_out|length"):
        s.set_probe(X, Y, held_out=held_out)


def test_held_out_split_takes_the_share_of_each_class():
    y = np.array([0] * 6 + [1] * 4 + [2])
    held = held_out_split(y, fraction=0.5, seed=3)
    assert held.dtype == bool and held.shape == y.shape
    assert [int(held[y == c].sum()) for c in (0, 1, 2)] == [3, 2, 1]  # at least one of the lone class
    np.testing.assert_array_equal(held, held_out_split(y, fraction=0.5, seed=3))
    assert not np.array_equal(held, held_out_split(y, fraction=0.5, seed=4))
    with pytest.raises(BadInput, match="between 0 and 1"):
        held_out_split(y, fraction=1.0)


def test_a_gate_run_round_trips_and_names_a_recorded_reference(store):
    store.record("v0", fingerprint="f0", metrics={"accuracy": 0.9})
    verdict = {"methods": {"ig": {"score": 0.97, "threshold": 0.92, "passed": True}}, "accuracy": None}
    run = store.record_gate_run(reference="v0", candidate="abc", holds=True, verdict=verdict)
    assert (run.id, run.reference, run.candidate, run.holds, run.verdict) == (1, "v0", "abc", True, verdict)
    assert store.gate_runs() == [run]
    with pytest.raises(BadInput, match="no version 'v9'"):
        store.record_gate_run(reference="v9", candidate="abc", holds=False, verdict={})
    with pytest.raises(TypeError):
        store.record_gate_run(reference="v0", candidate="abc", holds=False, verdict={"x": object()})
    assert store.gate_runs() == [run]


def test_compare_reads_only_the_held_out_probes(store):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(N, 4, 4)).astype(np.float32)
    b = a.copy()
    b[~HELD_OUT] = -b[~HELD_OUT]  # the replay probes disagree completely, the held-out ones not at all
    store.record("a", fingerprint="f", metrics={}, explanations={"g": a})
    store.record("b", fingerprint="f", metrics={}, explanations={"g": b})
    assert store.compare("a", "b", "g").spearman == pytest.approx(1.0)
