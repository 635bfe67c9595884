"""`leanlens compress MODEL DATA --budget ... --out DIR`: the API's compress, written all or nothing."""

import json

import numpy as np
import pytest
import torch
from errors_support import refused_in_one_line
from typer.testing import CliRunner

import leanlens as ll
from leanlens import cli_compress
from leanlens.audit.profile import cost, fingerprint
from leanlens.cli import app
from leanlens.errors import BadInput
from leanlens.models import SmallResNet
from leanlens.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compress")
    torch.manual_seed(0)
    data = ll.data.load("lesions", n=160, seed=2)
    np.savez(folder / "train.npz", x=data.x, y=data.y)
    return ll.save(SmallResNet(width=8), folder / "v0.leanlens"), folder / "train.npz", data


@pytest.fixture(scope="module")
def compressed(saved, tmp_path_factory, one_thread):
    """One run with --store, read by the tests below."""
    model_file, train, _ = saved
    folder = tmp_path_factory.mktemp("compressed")
    out, store = folder / "small", folder / "versions.db"
    run = runner.invoke(app, ["compress", str(model_file), str(train), "--budget", "macs=0.6", "--out", str(out),
                              "--max-drop", "100", "--epochs-per-step", "0.2", "--store", str(store),
                              "--name", "v1-small"])
    assert run.exit_code == 0, run.output
    return run, out, store


def test_the_compressed_model_and_its_trajectory_are_written(saved, compressed):
    model_file, _, data = saved
    run, out, _ = compressed
    assert sorted(p.name for p in out.iterdir()) == ["model.leanlens", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    small, original = ll.load(out / "model.leanlens"), ll.load(model_file)
    # the file holds what the summary says: MACs counted again on the loaded model
    macs = cost(small, data.x[:1]).macs
    assert macs == summary["trajectory"][-1]["macs"] and macs <= 0.6 * cost(original, data.x[:1]).macs
    assert summary["budget"]["macs"] == 0.6 and summary["trajectory"][0]["step"] == 0
    assert all(step["latency_ms"] > 0 for step in summary["trajectory"])
    assert "Grad-CAM++" in run.output and "written" in run.output


def test_the_store_records_the_original_as_v0_and_the_compressed_model_after_it(saved, compressed):
    model_file, _, _ = saved
    run, out, store = compressed
    summary = json.loads((out / "summary.json").read_text())
    with Store(store) as opened:
        v0, v1 = opened.versions()
        maps = opened.explanations("v1-small")
    assert (v0.name, v1.name, v1.parent) == ("v0", "v1-small", "v0")
    assert v0.fingerprint == fingerprint(ll.load(model_file)) and v1.fingerprint == fingerprint(ll.load(out / "model.leanlens"))
    # audited on the held-out part that guarded the compression: the same accuracies as the trajectory's
    assert v0.metrics["accuracy"] == summary["trajectory"][0]["accuracy"]
    assert v1.metrics["accuracy"] == summary["trajectory"][-1]["accuracy"]
    assert v1.metrics["compress_macs_share"] == summary["macs_share"] and v1.metrics["compress_budget"] == "macs=0.6"
    assert json.loads(v1.metrics["compress_trajectory"]) == summary["trajectory"]
    assert set(maps) == {"gradcam++"} and "recorded in" in run.output and "v1-small" in run.output


@pytest.mark.parametrize("extra, message", [
    (["--budget", "macs=1.5"], "macs=1.5"),
    (["--budget", "flops=0.5"], "flops"),
    (["--budget", "macs=0.5", "--criterion", "taylr"], "taylr"),
])
def test_what_cannot_be_compressed_is_one_line_and_writes_nothing(saved, tmp_path, extra, message):
    model_file, train, _ = saved
    out = tmp_path / "small"
    run = runner.invoke(app, ["compress", str(model_file), str(train), "--out", str(out), *extra])
    refused_in_one_line(run, message)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []  # no staging folder left behind


def test_a_folder_with_files_is_kept_without_force(saved, tmp_path):
    model_file, train, _ = saved
    (tmp_path / "keep.txt").write_text("mine")
    run = runner.invoke(app, ["compress", str(model_file), str(train), "--budget", "macs=0.5", "--out", str(tmp_path)])
    assert run.exit_code == 2 and "pass --force" in run.output and (tmp_path / "keep.txt").read_text() == "mine"


@pytest.fixture()
def files(saved, tmp_path_factory):
    """Every file the cases below name: the good model and data, a pickled module, data of the wrong
    channels, labels past the model's two classes."""
    model_file, train, data = saved
    folder = tmp_path_factory.mktemp("unfit")
    torch.save(SmallResNet(width=8), folder / "model.pt")
    np.savez(folder / "rgb.npz", x=np.repeat(data.x, 3, axis=1), y=data.y)
    np.savez(folder / "labels.npz", x=data.x, y=data.y + 5)
    return {"v0.leanlens": model_file, "train.npz": train, **{p.name: p for p in folder.iterdir()}}


STORE = ["--store", "{store}", "--name", "v1"]


@pytest.mark.parametrize("model, data, extra, message", [
    ("model.pt", "train.npz", STORE, "--trust-pickle"),
    ("nowhere_to_be_found.models:build", "train.npz", ["--weights", "w.safetensors", *STORE], "cannot import"),
    ("v0.leanlens", "rgb.npz", STORE, "cannot take a batch of shape"),
    ("v0.leanlens", "labels.npz", STORE, "classes"),
    ("v0.leanlens", "train.npz", ["--allocation", "fastest", *STORE], "allocation='fastest'"),
    ("v0.leanlens", "train.npz", ["--name", "v1"], "--name and --parent go with --store"),
    ("v0.leanlens", "train.npz", ["--store", "{store}"], "--store needs --name"),
])
def test_models_and_data_that_do_not_fit_are_one_line_and_write_nothing(files, tmp_path, model, data, extra, message):
    options = [part.format(store=tmp_path / "versions.db") for part in extra]
    run = runner.invoke(app, ["compress", str(files.get(model, model)), str(files[data]), "--budget", "macs=0.5",
                              "--out", str(tmp_path / "small"), *options])
    refused_in_one_line(run, message)
    assert [p.name for p in tmp_path.iterdir()] == []  # no --out, no store, no staging folder


def test_a_store_that_fails_to_record_leaves_out_unwritten(saved, tmp_path, monkeypatch, one_thread):
    # the last thing before --out is moved into place: when it fails, the folder never appears
    model_file, train, _ = saved

    def failing(*_):
        raise BadInput("the store is full", "free some space")

    monkeypatch.setattr(cli_compress, "record_in_store", failing)
    run = runner.invoke(app, ["compress", str(model_file), str(train), "--budget", "macs=0.6", "--max-drop", "100",
                              "--epochs-per-step", "0.05", "--out", str(tmp_path / "small"),
                              "--store", str(tmp_path / "v.db"), "--name", "v1"])
    refused_in_one_line(run, "the store is full")
    assert [p.name for p in tmp_path.iterdir()] == []
