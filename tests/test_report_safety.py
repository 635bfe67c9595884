"""The report writes only its own file, escapes every user string and draws names as typed."""

import os
import re

import numpy as np
import pytest

from leanlens.errors import BadInput
from leanlens.metrics import ExplanationScores
from leanlens.report import figures, report
from leanlens.store import Store

HOSTILE = ['<script>alert(1)</script>', '" onmouseover="x', "a$_$b", "$x^2$", "&amp;", "</td></tr><tr>"]


@pytest.fixture
def store_path(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "lens.db"
    with Store(path) as store:
        store.set_probe(rng.normal(size=(3, 1, 8, 8)).astype(np.float32), y=np.arange(3),
                        masks=rng.random((3, 8, 8)) > 0.5)
        parent = None
        for i, name in enumerate(HOSTILE):
            metrics = {"accuracy": 0.5 + i / 20, "latency_ms": 1.0 + i, "runtime": f"<rt{i}>"}
            store.record(name, fingerprint=name, metrics=metrics, parent=parent,
                         explanations={"<m>": rng.random((3, 8, 8))}, scores={"<m>": ExplanationScores(spearman=0.5)})
            parent = name
            # a gate run names its reference, its candidate's fingerprint and the methods it checked
            store.record_gate_run(reference=name, candidate=f"<c{i}>", holds=False, verdict={
                "checks": [{"name": "<m>", "score": 0.5, "threshold": 0.9, "passed": False}]})
    return path


def test_a_symlink_planted_at_the_old_temporary_name_is_not_written_through(store_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "index.html.tmp").symlink_to(victim)
    page = report(store_path, out, method="<m>")
    assert victim.read_text() == "precious"
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and not page.is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "index.html.tmp"]  # no temporary left


def test_every_user_string_is_escaped_and_nothing_is_fetched(store_path, tmp_path):
    text = report(store_path, tmp_path / "out", method="<m>", title="<h1>t</h1>").read_text(encoding="utf-8")
    assert "<script" not in text and "<rt" not in text and "<m>" not in text and "<h1>t" not in text
    assert "<c0>" not in text and "&lt;c0&gt;" in text and "&lt;c5&gt;" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;rt0&gt;" in text
    assert 'onmouseover="x' not in text and "&#34; onmouseover=&#34;x" in text
    assert "&amp;amp;" in text and "&lt;/td&gt;&lt;/tr&gt;&lt;tr&gt;" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "http://" not in text and "https://" not in text


def test_dollar_signs_in_names_are_drawn_as_typed():
    points = [figures.Point(name, 1.0 + i, 90.0 - i, None) for i, name in enumerate(HOSTILE)]
    fig = figures.tradeoff_figure(points)
    labels = [t for t in fig.axes[0].texts if t.get_text()]
    assert [t.get_text() for t in labels] == HOSTILE
    assert not any(t.get_parse_math() for t in labels)
    assert figures.tradeoff_png(points).startswith(b"\x89PNG")  # "a$_$b" once crashed the renderer


def test_an_output_folder_that_cannot_be_made_is_one_line(store_path, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BadInput, match="cannot create") as error:
        report(store_path, blocker / "sub")
    assert "\n" not in str(error.value)
    assert os.path.isfile(blocker)
