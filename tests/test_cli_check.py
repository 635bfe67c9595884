"""`leanlens check` through the real command line: the exit codes a CI pipeline reads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from check_support import images, reference_store, train

import leanlens as ll
from leanlens.store import Store

# one intra-op thread: the children explain a dozen tiny images, and share 2 cores
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _command(store, *args, command="check"):
    return [sys.executable, "-m", "leanlens", command, str(store), *map(str, args)]


def _check(store, *args, command="check"):
    return subprocess.run(_command(store, *args, command=command), capture_output=True, text=True, timeout=600,
                          env=ENV, check=False)


@pytest.fixture(scope="module")
def gate(tmp_path_factory, one_thread):
    """A store with v0, v0's weights saved again, a drifted model, a 3-class model and test data."""
    folder = tmp_path_factory.mktemp("gate")
    reference = train(images(128, seed=0), seed=0)
    reference_store(folder / "lens.db", reference, images(24, seed=1))
    test = images(64, seed=2)
    np.savez(folder / "test.npz", x=test.x, y=test.y)
    files = {
        "same": ll.save(reference, folder / "same.leanlens"),
        "drifted": ll.save(train(images(128, seed=3, moved=True), seed=1), folder / "drifted.leanlens"),
        "three": ll.save(train(images(32, seed=0), seed=0, num_classes=3, steps=1), folder / "three.leanlens"),
    }
    return folder, files


def _gate_runs(path) -> int:
    with Store(path) as store:
        return len(store.gate_runs())


def test_an_unchanged_model_exits_0_and_records_one_gate_run(gate):
    folder, files = gate
    run = _check(folder / "lens.db", "--candidate", files["same"], "--data", folder / "test.npz")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    table = {line.split("│")[1].strip(): line for line in run.stdout.splitlines() if line.count("│") > 2}
    assert {"saliency", "gradcam", "accuracy", "agreement"} <= set(table)
    assert "1.0000" in table["saliency"] and "0.9200" in table["saliency"] and "yes" in table["saliency"]
    assert "holds (gate run #1 recorded)" in run.stdout
    assert _gate_runs(folder / "lens.db") == 1


def test_a_drifted_model_exits_1_and_a_dry_run_records_nothing(gate):
    folder, files = gate
    before = _gate_runs(folder / "lens.db")
    run = _check(folder / "lens.db", "--candidate", files["drifted"], "--threshold", "0.92", "--dry-run")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "drifted (dry run, nothing recorded)" in run.stdout and "NO" in run.stdout
    assert _gate_runs(folder / "lens.db") == before


def _damaged(folder):
    bad = folder / "damaged.db"
    data = (folder / "lens.db").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return bad


def test_what_cannot_be_checked_exits_2_in_one_line(gate):
    folder, files = gate
    store = folder / "lens.db"
    cases = {
        "no store at": (folder / "missing.db", "--candidate", files["same"]),
        "no version 'v7'": (store, "--candidate", files["same"], "--reference", "v7"),
        "is damaged": (_damaged(folder), "--candidate", files["same"]),
        "scores 3 classes but 'v0' scored 2": (store, "--candidate", files["three"]),
    }
    before = store.read_bytes()
    # started together: each child spends most of its time importing torch
    children = {message: subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=ENV) for message, args in cases.items()}
    for message, child in children.items():
        out, err = child.communicate(timeout=600)
        lines = [line for line in (out + err).splitlines() if line.strip()]
        assert child.returncode == 2 and len(lines) == 1 and message in lines[0], (message, lines)
    assert store.read_bytes() == before and not (folder / "missing.db").exists()


def test_the_gated_store_is_reported_from_the_command_line(gate, tmp_path):
    folder, _ = gate
    run = _check(folder / "lens.db", "--out", tmp_path / "page", "--method", "gradcam", command="report")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    page = (tmp_path / "page" / "index.html").read_text()
    assert "v0" in page and "gradcam" in page and str(tmp_path / "page" / "index.html") in run.stdout
