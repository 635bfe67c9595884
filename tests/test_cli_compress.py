"""`leanlens compress MODEL DATA --budget ... --out DIR`: the API's compress, written all or nothing."""

import json

import numpy as np
import pytest
import torch
from errors_support import refused_in_one_line
from typer.testing import CliRunner

import leanlens as ll
from leanlens.audit.profile import cost
from leanlens.cli import app
from leanlens.models import SmallResNet

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compress")
    torch.manual_seed(0)
    data = ll.data.load("lesions", n=160, seed=2)
    np.savez(folder / "train.npz", x=data.x, y=data.y)
    return ll.save(SmallResNet(width=8), folder / "v0.leanlens"), folder / "train.npz", data


def test_the_compressed_model_and_its_trajectory_are_written(saved, tmp_path):
    model_file, train, data = saved
    out = tmp_path / "small"
    run = runner.invoke(app, ["compress", str(model_file), str(train), "--budget", "macs=0.6", "--out", str(out),
                              "--max-drop", "100", "--epochs-per-step", "0.2"])
    assert run.exit_code == 0, run.output
    assert sorted(p.name for p in out.iterdir()) == ["model.leanlens", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    small, original = ll.load(out / "model.leanlens"), ll.load(model_file)
    # the file holds what the summary says: MACs counted again on the loaded model
    macs = cost(small, data.x[:1]).macs
    assert macs == summary["trajectory"][-1]["macs"] and macs <= 0.6 * cost(original, data.x[:1]).macs
    assert summary["budget"]["macs"] == 0.6 and summary["trajectory"][0]["step"] == 0
    assert "Grad-CAM++" in run.output and "written" in run.output


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
