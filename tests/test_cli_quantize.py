"""`leanlens quantize MODEL DATA` writes a model file (or a bare .onnx) with real low-bit kernels."""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from errors_support import refused_in_one_line
from typer.testing import CliRunner

import leanlens as ll
from leanlens.cli import app
from leanlens.compression.fakequant import graph_roundings
from leanlens.models import OnnxModel, SmallResNet

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantize")
    torch.manual_seed(0)
    data = ll.data.load("lesions", n=64)
    np.savez(folder / "calib.npz", x=data.x, y=data.y)
    return ll.save(SmallResNet(width=8), folder / "v0.leanlens"), folder / "calib.npz", data


def ops(model_bytes: bytes) -> Counter:
    return Counter(node.op_type for node in onnx.load_from_string(model_bytes).graph.node)


def test_a_model_file_comes_out_with_its_int8_graph_and_twin(saved, tmp_path):
    model_file, calib, data = saved
    out = tmp_path / "v1.leanlens"
    run = runner.invoke(app, ["quantize", str(model_file), str(calib), "--out", str(out),
                              "--calibrate-method", "percentile"])
    assert run.exit_code == 0, run.output
    assert "int8:" in run.output and "predictions changed" in run.output
    loaded = ll.load(out)
    assert isinstance(loaded, OnnxModel) and ops(loaded.model_bytes)["DequantizeLinear"] > 0
    direct = ll.quantize(ll.load(model_file), data, calibrate_method="percentile")
    assert loaded.model_bytes == direct.model_bytes  # the command is the API, nothing more
    explained = runner.invoke(app, ["explain", str(out), str(calib), "--method", "gradcam", "--n", "8",
                                    "--out", str(tmp_path / "cam.npz")])
    assert explained.exit_code == 0 and "stand-in fidelity: top-1 agreement" in explained.output, explained.output


def test_a_bare_onnx_file_is_written_when_asked(saved, tmp_path):
    model_file, calib, _ = saved
    out = tmp_path / "deploy.onnx"
    run = runner.invoke(app, ["quantize", str(model_file), str(calib), "--out", str(out), "--scheme", "int8-dynamic"])
    assert run.exit_code == 0, run.output
    assert ops(out.read_bytes())["MatMulInteger"] == 1


def test_quantization_aware_training_writes_what_the_api_makes(saved, tmp_path):
    model_file, calib, data = saved
    out = tmp_path / "qat.leanlens"
    run = runner.invoke(app, ["quantize", str(model_file), str(calib), "--out", str(out), "--scheme", "int8-qat",
                              "--epochs", "0.5", "--lr", "1e-3"])
    assert run.exit_code == 0, run.output
    assert "int8-qat:" in run.output and "predictions changed" in run.output
    direct = ll.quantize(ll.load(model_file), data, "int8-qat", epochs=0.5, lr=1e-3)
    loaded = ll.load(out)
    # the same training; not byte for byte, since torch's kernels may differ by an ulp between two copies of x
    assert ops(loaded.model_bytes) == ops(direct.model_bytes)
    ours, theirs = graph_roundings(loaded.model_bytes), graph_roundings(direct.model_bytes)
    assert ours.keys() == theirs.keys() and all(np.isclose(ours[k][0], theirs[k][0], rtol=1e-4) for k in ours)
    np.testing.assert_allclose(loaded.predict(data.x), direct.predict(data.x), atol=0.05)


@pytest.mark.parametrize("extra, message", [
    (["--scheme", "int3"], "unknown quantization scheme 'int3'"),
    (["--scheme", "int4-weight"], "no 4-bit convolution kernel"),
    (["--max-drop", "-1"], "max_drop=-1"),
    (["--epochs", "2"], "epochs works with scheme='int8-qat'"),
    (["--scheme", "int8-qat", "--lr", "0"], "lr=0.0"),
])
def test_what_cannot_be_quantized_is_one_line_and_writes_nothing(saved, tmp_path, extra, message):
    model_file, calib, _ = saved
    out = tmp_path / "q.leanlens"
    run = runner.invoke(app, ["quantize", str(model_file), str(calib), "--out", str(out), *extra])
    refused_in_one_line(run, message)
    assert not out.exists()


def test_an_existing_out_file_is_kept_without_force(saved, tmp_path):
    model_file, calib, _ = saved
    out = tmp_path / "q.leanlens"
    out.write_bytes(b"keep me")
    run = runner.invoke(app, ["quantize", str(model_file), str(calib), "--out", str(out)])
    assert run.exit_code == 2 and "pass --force" in run.output and out.read_bytes() == b"keep me"
