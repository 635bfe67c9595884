"""The demo through the real command line, and the files it leaves behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from leanlens.audit import ModelFigures
from leanlens.demo import prepare_out
from leanlens.errors import BadInput
from leanlens.store import Store


def _demo(*args, timeout=900):  # generous: the machine may be shared
    return subprocess.run([sys.executable, "-m", "leanlens", "demo", "--quick", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _one_error_line(run) -> str:
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def test_demo_quick_runs_through_the_cli(tmp_path):
    out = tmp_path / "demo"
    run = _demo("--out", out)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "v2-int8" in run.stdout and "report:" in run.stdout
    header = next(line for line in run.stdout.splitlines() if "fp32 path" in line)
    for label in ("runtime", "ms", "fp32 path", "fp32 ms", "vs fp32", "vs ref.", "Spearman", "pointing"):
        assert f" {label} " in header, label
    assert "onnxruntime int8" in run.stdout
    gates = [line for line in run.stdout.splitlines() if line.startswith("gate ")]
    assert [line.split()[1] for line in gates] == ["v1-pruned", "v2-int8"]
    assert all(("holds" in line) != ("drifted" in line) and "gradcam++" in line for line in gates)
    page = (out / "index.html").read_text()
    assert len(re.findall(r'<tr[^>]*data-version="', page)) == 3
    assert page.count("data:image/png;base64,") >= 8 * 4  # 8 probes: image + 3 versions each
    with Store(out / "leanlens.db") as store:
        versions = {v.name: v for v in store.versions()}
        assert list(versions) == ["v0", "v1-pruned", "v2-int8"]
        v0, v1, v2 = versions.values()
        assert v1.metrics["params"] <= 0.5 * v0.metrics["params"]
        assert v2.metrics["bytes"] <= 0.3 * v0.metrics["bytes"]
        maps = store.explanation("v2-int8", "gradcam++")
        assert maps.shape == (len(store.probe().x), 64, 64) and np.isfinite(maps).all()
        int8 = ModelFigures.from_json(v2.metrics)
        assert (int8.runtime, int8.fp32_runtime) == ("onnxruntime int8", "onnxruntime")
        assert int8.latency_ms > 0 and int8.fp32_latency_ms > 0 and int8.batch == 32
        assert int8.fp32_speedup == pytest.approx(int8.fp32_latency_ms / int8.latency_ms)
        assert v2.scores["gradcam++"].pointing_tolerance == 4 and "pointing_tolerance" not in v2.metrics
        assert store.explained("v2-int8", "gradcam++").target.shape == (len(store.probe().x),)
        runs = store.gate_runs()  # one gate run a compressed version, as printed
        assert [run.reference for run in runs] == ["v0", "v0"]
        assert [("holds" if run.holds else "drifted") for run in runs] == [
            "holds" if "holds" in line else "drifted" for line in gates]
    # a second run must not replace the first one's files unless asked
    before = {name: (out / name).read_bytes() for name in ("leanlens.db", "index.html")}
    assert "--force" in _one_error_line(_demo("--out", out))
    assert {name: (out / name).read_bytes() for name in before} == before


def test_cli_reports_a_user_error_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "is a file" in _one_error_line(_demo("--out", blocker))
    assert "cannot create --out" in _one_error_line(_demo("--out", blocker / "sub"))
    assert blocker.read_text() == "not a folder"


def test_demo_refuses_to_replace_an_earlier_run_unless_forced(tmp_path):
    (tmp_path / "index.html").write_text("my page")
    with pytest.raises(BadInput, match="--force"):
        prepare_out(tmp_path, force=False)
    assert (tmp_path / "index.html").read_text() == "my page"
    (tmp_path / "leanlens.db").write_text("my store")
    prepare_out(tmp_path, force=True)
    assert not (tmp_path / "leanlens.db").exists()  # replaced by the new run's store


def test_demo_out_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)  # what a read-only parent does to a non-root user
    with pytest.raises(BadInput, match="cannot create --out .*Permission denied") as error:
        prepare_out(tmp_path / "new", force=False)
    assert "\n" not in str(error.value)
    monkeypatch.undo()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: mode != os.W_OK and real(p, mode, **kw))
    with pytest.raises(BadInput, match="not writable"):
        prepare_out(tmp_path, force=False)


def test_methods_lists_every_registered_method_with_its_options():
    import leanlens as ll

    run = subprocess.run([sys.executable, "-m", "leanlens", "methods"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = run.stdout.splitlines()
    for name, spec in ll.methods().items():  # each on a row of its own, with its family
        assert any(row.startswith(f"│ {name} ") and f"│ {spec.family} " in row for row in rows), name
    assert "window=None" in run.stdout and "tol=None" in run.stdout
