"""`leanlens audit REFERENCE CANDIDATE DATA`: the API's figures on the command line, recorded in a store
that `check` can gate, and one-line refusals that write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from check_support import images, reference_store, train
from typer.testing import CliRunner

import leanlens as ll
from leanlens.audit import probe_set
from leanlens.cli import app
from leanlens.cli_audit import REFERENCE_NAME, destination, record
from leanlens.store import Store

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the children explain a few tiny images and share 2 cores


@pytest.fixture(scope="module")
def files(tmp_path_factory, one_thread):
    """A reference, a pruned candidate, a 3-class model, test data, and the API's audit of the pair."""
    folder = tmp_path_factory.mktemp("audit")
    reference = train(images(128, seed=0), seed=0)
    candidate = ll.prune(reference, images(64, seed=5), ratio=0.5, criterion="magnitude", round_to=2)
    test = images(40, seed=2)
    np.savez(folder / "test.npz", x=test.x, y=test.y, masks=test.masks)
    paths = {"ref": ll.save(reference, folder / "ref.leanlens"), "cand": ll.save(candidate, folder / "cand.leanlens"),
             "three": ll.save(train(images(32, seed=0), seed=0, num_classes=3, steps=1), folder / "three.leanlens"),
             "data": folder / "test.npz"}
    api = ll.audit(reference, candidate, test, ("saliency",), probe=probe_set(test))
    return folder, paths, {"reference": reference, "candidate": candidate, "test": test, "api": api}


def _command(*args):
    return [sys.executable, "-m", "leanlens", "audit", *map(str, args)]


def _one_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "hint:" in lines[0], lines
    return lines[0]


def test_exit_codes_from_a_real_command_line(files, tmp_path):
    """0 with the tables and a new store (reference as v0); 2 in one line, writing nothing, otherwise."""
    _, paths, models = files
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\0" + b"\x07" * 600)
    cases = {
        "ok": (paths["ref"], paths["cand"], paths["data"], "--method", "saliency", "--store", tmp_path / "new.db",
               "--name", "v1-pruned"),
        "candidate scores 3": (paths["ref"], paths["three"], paths["data"], "--store", tmp_path / "no.db", "--name", "v1"),
        "damaged.db": (paths["ref"], paths["cand"], paths["data"], "--store", damaged, "--name", "v1"),
    }
    # started together: each child spends most of its time importing torch
    children = {case: subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=ENV) for case, args in cases.items()}
    runs = {case: (child.wait(timeout=600), *child.communicate()) for case, child in children.items()}
    for case in ("candidate scores 3", "damaged.db"):
        code, out, err = runs[case]
        assert code == 2 and case in _one_line(out + err), (case, out, err)
    assert not (tmp_path / "no.db").exists() and damaged.read_bytes()[16:] == b"\x07" * 600
    code, out, err = runs["ok"]
    assert code == 0, out[-2000:] + err[-2000:]
    rows = {line.split("│")[1].split()[0]: line for line in out.splitlines() if line.count("│") > 2}
    assert {"reference", "candidate", "saliency"} <= set(rows)
    assert f"{100 * models['api'].candidate.accuracy:.1f} %" in rows["candidate"]
    assert f"recorded in {tmp_path / 'new.db'}: v0, v1-pruned" in out
    with Store(tmp_path / "new.db") as store:
        assert [(v.name, v.parent) for v in store.versions()] == [("v0", None), ("v1-pruned", "v0")]
        assert store.version("v1-pruned").metrics["params"] == models["api"].figures().params
    # what audit recorded is what the gate reads: the reference gated against itself holds exactly
    verdict = ll.check(tmp_path / "new.db", models["reference"], dry_run=True)
    assert verdict.holds and verdict.methods["saliency"].score == pytest.approx(1.0)


def test_json_has_the_apis_figures_and_an_existing_store_gains_one_version(files, tmp_path):
    _, paths, models = files
    api, test = models["api"], models["test"]
    reference_store(tmp_path / "lens.db", models["reference"], images(24, seed=1))  # v0, a 24-sample probe set
    run = CliRunner().invoke(app, ["audit", str(paths["ref"]), str(paths["cand"]), str(paths["data"]), "--method",
                                   "saliency", "--store", str(tmp_path / "lens.db"), "--name", "v1", "--json"])
    assert run.exit_code == 0, run.output
    shown = json.loads(run.output)
    hand_accuracy = float(np.mean(models["candidate"].module(torch.as_tensor(test.x)).argmax(1).numpy() == test.y))
    assert shown["candidate"]["accuracy"] == pytest.approx(hand_accuracy) == api.candidate.accuracy
    for figure in ("accuracy", "agreement", "params", "macs", "bytes", "batch"):
        assert shown["candidate"][figure] == getattr(api.figures(), figure), figure
    assert shown["reference"]["params"] == api.reference.profile.cost.params
    assert shown["recorded"] == {"store": str(tmp_path / "lens.db"), "versions": ["v1"]}
    with Store(tmp_path / "lens.db") as store:
        # no second reference, the parent found by the reference's weights, the store's own probes explained
        assert [(v.name, v.parent) for v in store.versions()] == [("v0", None), ("v1", "v0")]
        assert store.explanation("v1", "saliency").shape == (24, 1, 16, 16)
        similarity = store.version("v1").scores["saliency"]
    assert shown["methods"]["saliency"]["candidate"]["spearman"] == pytest.approx(similarity.spearman)


@pytest.mark.parametrize(("args", "expected"), [
    (["--store", "{tmp}/a.db"], "--store needs --name"),
    (["--name", "v1"], "--name and --parent go with --store"),
    (["--store", "{tmp}/a.db", "--name", "v0"], "--name v0 is what the reference is recorded as"),
    (["--store", "{tmp}/a.db", "--name", "v1", "--parent", "v3"], "--parent 'v3' is not a version"),
    (["--store", "{tmp}/nowhere/a.db", "--name", "v1"], "not a folder you can write to"),
    (["--method", "gradcam+"], "unknown method 'gradcam+'"),
    (["--n", "0"], "--n 0"),
])
def test_mistakes_are_one_line_exit_2_and_write_nothing(files, tmp_path, args, expected):
    _, paths, _ = files
    args = [a.format(tmp=tmp_path) for a in args]
    run = CliRunner().invoke(app, ["audit", str(paths["ref"]), str(paths["cand"]), str(paths["data"]), *args])
    assert run.exit_code == 2 and expected in _one_line(run.output)
    assert list(tmp_path.iterdir()) == []


def test_data_and_models_that_do_not_fit_are_refused(files, tmp_path):
    folder, paths, _ = files
    pickled = folder / "module.pt"
    torch.save(train(images(8, seed=0), seed=0, steps=1), pickled)
    np.savez(tmp_path / "five.npz", x=images(10, seed=3).x, y=np.arange(10) % 5)
    reference_store(tmp_path / "small.db", train(images(8, seed=0), seed=0, steps=1), images(8, seed=1))
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 1, 20, 20), np.float32), y=np.arange(4) % 2)
    cases = {
        "is a pickle": [paths["ref"], pickled, paths["data"]],
        "labels up to 4 but the reference scores 2": [paths["ref"], paths["cand"], tmp_path / "five.npz"],
        "the store's probes have shape (1, 16, 16)": [paths["ref"], paths["cand"], tmp_path / "big.npz", "--store",
                                                     tmp_path / "small.db", "--name", "v1"],
    }
    before = (tmp_path / "small.db").read_bytes()
    for expected, args in cases.items():
        run = CliRunner().invoke(app, ["audit", *map(str, args)])
        assert run.exit_code == 2 and expected in _one_line(run.output), run.output
    assert (tmp_path / "small.db").read_bytes() == before


def test_a_new_store_that_fails_half_way_is_removed(files, tmp_path, monkeypatch):
    _, _, models = files
    where = destination(tmp_path / "new.db", "v1", None)
    assert where.records_reference and where.probe is None

    def refuse(store, name, *args, **kwargs):
        if name != REFERENCE_NAME:
            raise ll.BadInput("disk full", "free some space")
        return real(store, name, *args, **kwargs)

    real = Store.record_assessment
    monkeypatch.setattr(Store, "record_assessment", refuse)
    with pytest.raises(ll.BadInput, match="disk full"):
        record(where, models["reference"], models["candidate"], models["api"], probe_set(models["test"]))
    assert list(tmp_path.iterdir()) == []  # v0 was written, then the whole new file went
