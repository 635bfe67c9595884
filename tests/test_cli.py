"""The demo through the real command line, and the files it leaves behind."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from leanlens.store import Store


def test_demo_quick_runs_through_the_cli(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "leanlens", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "v2-int8" in run.stdout and "report:" in run.stdout
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


def test_cli_reports_a_user_error_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = subprocess.run(
        [sys.executable, "-m", "leanlens", "demo", "--quick", "--out", str(blocker)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stdout + run.stderr


def test_methods_lists_every_registered_method_with_its_options():
    import leanlens as ll

    run = subprocess.run([sys.executable, "-m", "leanlens", "methods"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = run.stdout.splitlines()
    for name, spec in ll.methods().items():  # each on a row of its own, with its family
        assert any(row.startswith(f"│ {name} ") and f"│ {spec.family} " in row for row in rows), name
    assert "window=None" in run.stdout and "steps=64" in run.stdout
