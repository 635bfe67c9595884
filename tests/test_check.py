"""`ll.check`, the version gate: its scores, its verdict, what it records and what it refuses."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from check_support import METHODS, images, reference_store, train
from scipy.stats import spearmanr

import leanlens as ll
from leanlens.errors import BadInput, BadOption
from leanlens.store import Store


@pytest.fixture(scope="module")
def models(one_thread):
    reference = train(images(128, seed=0), seed=0)
    drifted = train(images(128, seed=3, moved=True), seed=1)  # decides by the top row, not the square
    return reference, drifted


@pytest.fixture
def store_path(models, tmp_path):
    path = tmp_path / "lens.db"
    reference_store(path, models[0], images(24, seed=1))
    return path


def _rows(path) -> dict[str, list]:
    """Every row of the tables that hold the reference version, as stored."""
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("probe", "versions", "explanations", "predictions")}
    finally:
        conn.close()


def test_an_unchanged_model_holds_and_one_gate_run_is_recorded(models, store_path):
    before = _rows(store_path)
    verdict = ll.check(store_path, models[0], data=images(64, seed=2))
    assert verdict.holds and list(verdict.methods) == list(METHODS)
    for c in verdict.methods.values():
        assert c.score == pytest.approx(1.0, abs=1e-6) and c.threshold == 0.92 and c.passed
    assert verdict.accuracy.score == 1.0 and verdict.accuracy.threshold == pytest.approx(0.99)
    with Store(store_path) as store:
        (run,) = store.gate_runs()
        assert (run.id, run.reference, run.candidate, run.holds) == (verdict.recorded, "v0", verdict.candidate, True)
        assert run.candidate == store.version("v0").fingerprint  # the same weights
        assert run.verdict == verdict.to_json()
    assert _rows(store_path) == before  # the reference version's rows, byte for byte


def test_the_score_is_the_mean_spearman_over_held_out_probes_with_an_object(models, store_path):
    verdict = ll.check(store_path, models[1], dry_run=True)
    with Store(store_path) as store:
        probe = store.probe("held_out")
        with_object = probe.masks.any(axis=(1, 2))
        stored = store.explanation("v0", "saliency")[store.probe().held_out][with_object]
    assert verdict.methods["saliency"].samples == with_object.sum() == 6  # 12 held out, half with a square
    mine = ll.explain(models[1], probe.x[with_object], "saliency", target=probe.y[with_object])
    want = np.mean([spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(stored, mine.values)])
    assert verdict.methods["saliency"].score == pytest.approx(want, abs=1e-6)
    assert not verdict.holds and all(not c.passed for c in verdict.methods.values())
    every = ll.check(store_path, models[1], samples="all", dry_run=True).methods["saliency"]
    assert every.samples == 12 and every.score != verdict.methods["saliency"].score


def test_a_dry_run_records_nothing_and_a_drifted_run_is_recorded_as_drifted(models, store_path):
    ll.check(store_path, models[1], dry_run=True)
    with Store(store_path) as store:
        assert store.gate_runs() == []
    verdict = ll.check(store_path, models[1])
    with Store(store_path) as store:
        (run,) = store.gate_runs()
    assert not run.holds and run.verdict["holds"] is False and verdict.recorded == run.id


def test_accuracy_and_agreement_are_gated_by_their_own_thresholds(models, store_path):
    test = images(64, seed=2)
    strict = ll.check(store_path, models[0], data=test, accuracy_threshold=1.0, agreement_threshold=1.0,
                      dry_run=True)
    assert strict.holds and strict.agreement.score == 1.0 and strict.agreement.samples == 12
    drifted = ll.check(store_path, models[1], data=test, agreement_threshold=0.9, dry_run=True)
    assert drifted.accuracy.score == pytest.approx(0.5) and not drifted.accuracy.passed
    assert drifted.agreement.score == pytest.approx(0.5) and not drifted.agreement.passed
    loose = ll.check(store_path, models[1], data=test, threshold=0.01, methods=["saliency"], dry_run=True)
    assert list(loose.methods) == ["saliency"] and loose.methods["saliency"].passed and not loose.holds


def test_mistakes_are_refused_in_one_line_and_nothing_is_written(models, store_path, tmp_path):
    three = ll.wrap(train(images(32, seed=0), seed=0, num_classes=3, steps=1))
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (a)").connection.commit()
    before = store_path.read_bytes()
    cases = [
        ({"store": tmp_path / "typo.db"}, BadInput, "no store at"),
        ({"store": foreign}, BadInput, "is not a leanlens store"),
        ({"store": str(tmp_path)}, BadInput, "no store at"),
        ({"reference": "v9"}, BadInput, "no version 'v9'"),
        ({"candidate": three}, BadInput, "scores 3 classes but 'v0' scored 2"),
        ({"methods": ["ig"]}, BadInput, "no 'ig' explanation"),
        ({"samples": "some"}, BadOption, "samples='some'"),
        ({"threshold": 1.5}, BadOption, "threshold=1.5"),
        ({"agreement_threshold": True}, BadOption, "agreement_threshold=True"),
    ]
    for change, error, message in cases:
        args = {"store": store_path, "candidate": models[0], **change}
        with pytest.raises(error, match=message) as raised:
            ll.check(args.pop("store"), args.pop("candidate"), **args)
        assert "\n" not in str(raised.value)
    assert store_path.read_bytes() == before and not (tmp_path / "typo.db").exists()


# The gated model sleeps in its first forward pass that needs gradients: it is explaining.
KILLED = textwrap.dedent("""
    import sys, time
    import torch
    import leanlens as ll
    model = ll.load(sys.argv[2])
    def slow(module, inputs, output):
        if inputs[0].requires_grad:
            print("explaining", flush=True)
            time.sleep(120)
    model.module.register_forward_hook(slow)
    ll.check(sys.argv[1], model)
    print("finished", flush=True)
""")


def test_a_gate_run_killed_while_explaining_records_nothing(models, store_path, tmp_path):
    model_file = ll.save(models[0], tmp_path / "v0.leanlens")
    before = _rows(store_path)
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(store_path), str(model_file)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "explaining", child.stderr.read()[-2000:]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with Store(store_path) as store:  # opening runs SQLite's integrity check
        assert store.gate_runs() == []
    assert _rows(store_path) == before
    assert ll.check(store_path, models[0]).holds  # and the store still takes the next run
