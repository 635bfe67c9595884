"""`leanlens explain MODEL DATA` through the real command line, on every kind of MODEL it takes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import leanlens as ll
from leanlens.explain import Explanation
from leanlens.models import SmallResNet


def _explain(*args):
    run = subprocess.run([sys.executable, "-m", "leanlens", "explain", *map(str, args)],
                         capture_output=True, text=True, timeout=600, check=False)
    return run


def _one_error_line(run) -> str:
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small pruned model in a leanlens model file, and a few lesion images in an .npz."""
    folder = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    data = ll.data.load("lesions", n=64)
    model = ll.prune(SmallResNet(width=8), data, ratio=0.5, criterion="magnitude", round_to=2)
    np.savez(folder / "probes.npz", x=data.x[:4], y=data.y[:4])
    return model, ll.save(model, folder / "v1.leanlens"), folder / "probes.npz", data


def test_explain_writes_what_the_api_computes(saved, tmp_path):
    model, model_file, probes, data = saved
    out = tmp_path / "ig.npz"
    run = _explain(model_file, probes, "--method", "ig", "--option", "steps=8", "--target", "label", "--out", out)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "completeness error" in run.stdout
    got = Explanation.from_npz(out)
    want = ll.explain(model, data.x[:4], "ig", target=data.y[:4], steps=8)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-7)
    assert got.options["steps"] == 8 and list(got.target) == list(data.y[:4])


def test_explain_takes_an_onnx_file_and_a_factory_with_weights(saved, tmp_path):
    from safetensors.torch import save_file

    model, _, probes, data = saved
    onnx_path = tmp_path / "model.ONNX"
    ll.quantize(model, data).fp32.save(onnx_path)
    run = _explain(onnx_path, probes, "--method", "occlusion", "--option", "window=16", "--option", "stride=16",
                   "--out", tmp_path / "occ.npz")
    assert run.returncode == 0, run.stderr[-2000:]
    fresh = SmallResNet()
    save_file(fresh.state_dict(), tmp_path / "w.safetensors")
    run = _explain("leanlens.models.zoo:SmallResNet", probes, "--weights", tmp_path / "w.safetensors",
                   "--method", "saliency", "--out", tmp_path / "sal.npz")
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_allclose(Explanation.from_npz(tmp_path / "sal.npz").values,
                               ll.explain(fresh, np.load(probes)["x"], "saliency").values, rtol=1e-5, atol=1e-7)


def test_a_pickled_model_needs_trust_pickle(saved, tmp_path):
    model, _, probes, _ = saved
    torch.save(model.module, tmp_path / "model.pt")
    out = tmp_path / "sal.npz"
    assert "--trust-pickle" in _one_error_line(_explain(tmp_path / "model.pt", probes, "--out", out))
    assert not out.exists()
    run = _explain(tmp_path / "model.pt", probes, "--method", "saliency", "--trust-pickle", "--out", out)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize("args, expected", [
    (("{model}", "{probes}", "--method", "gradcam+"), "did you mean"),
    (("{model}", "{probes}", "--option", "steps"), "NAME=VALUE"),
    (("{model}", "{probes}", "--option", "stepz=3"), "no option 'stepz'"),
    (("{model}", "{probes}", "--target", "first"), "--target"),
    (("{model}", "no-such-set"), "unknown dataset"),
    (("{folder}/missing.leanlens", "{probes}"), "no model file"),
    (("{model}", "{probes}", "--out", "{probes}"), "--force"),
])
def test_mistakes_are_one_line_and_exit_2(saved, args, expected):
    _, model_file, probes, _ = saved
    values = {"model": model_file, "probes": probes, "folder": probes.parent}
    before = probes.read_bytes()
    line = _one_error_line(_explain(*(a.format(**values) for a in args)))
    assert expected in line, line
    assert probes.read_bytes() == before  # --out onto an existing file changed nothing
