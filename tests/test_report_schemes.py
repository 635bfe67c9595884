"""The scheme column and the PTQ-against-QAT view: a real quantized model's scheme reaches the page."""

from html.parser import HTMLParser

import numpy as np
import pytest
from check_support import images, train
from test_audit import StepClock

import leanlens as ll
from leanlens.audit import ModelFigures
from leanlens.audit.profile import cost
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.scheme import scheme_of, tagged
from leanlens.report import report
from leanlens.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")
SCHEME_COLUMN = 1 + [name for name, _ in ModelFigures.shown_fields()].index("scheme")


class Tables(HTMLParser):
    """Cell texts of every row keyed by `data-version` (versions table) or `data-compared` (schemes view),
    and the parent each schemes table compares against."""

    def __init__(self):
        super().__init__()
        self.versions, self.compared, self.parents = {}, {}, []
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-parent" in a:
            self.parents.append(a["data-parent"])
        if tag == "tr" and ("data-version" in a or "data-compared" in a):
            table, key = (self.versions, "data-version") if "data-version" in a else (self.compared, "data-compared")
            self._row = table.setdefault(a[key], [])
        if tag in ("td", "th") and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None and self._row:
            self._row[-1] += data.strip()


def parsed(store_path, tmp_path) -> Tables:
    page = Tables()
    page.feed(report(store_path, tmp_path / "out", method="saliency").read_text())
    return page


@pytest.fixture(scope="module")
def quantized():
    """A small CNN on 16×16 images, its PTQ int8 and its QAT int8 copies."""
    data = images(64, seed=0)
    model = ll.wrap(train(data, seed=0))
    ptq = ll.quantize(model, data, calibration_samples=32)
    qat = ll.quantize(model, data, "int8-qat", calibration_samples=32, epochs=0.5, lr=1e-3)
    return model, data, {"int8": ptq, "int8-qat": qat}


def test_the_scheme_travels_with_the_graph(quantized, tmp_path):
    model, data, made = quantized
    assert scheme_of(model) is None and cost(model, data.x).scheme is None
    for scheme, q in made.items():
        assert scheme_of(q) == scheme and cost(q, data.x).scheme == scheme
        assert scheme_of(ll.load(ll.save(q, tmp_path / f"{scheme}.leanlens"))) == scheme
        assert scheme_of(OnnxModel(q.save(tmp_path / f"{scheme}.onnx"))) == scheme
    retagged = tagged(made["int8"].model_bytes, "int8-qat")  # a second tag replaces the first
    assert scheme_of(OnnxModel(retagged)) == "int8-qat"
    np.testing.assert_array_equal(OnnxModel(retagged).predict(data.x), made["int8"].predict(data.x))


def test_recorded_audits_keep_the_scheme_and_the_report_compares_them(quantized, tmp_path):
    model, data, made = quantized
    path = tmp_path / "store.db"
    probe = data.subset(np.arange(4))
    with Store(path) as store:
        store.set_probe(probe.x, probe.y)
        for name, candidate in {"v0": model, **made}.items():
            result = ll.audit(model, candidate, data, methods=("saliency",), probe=probe,
                              clock=StepClock([2.0 if name == "v0" else 1.0]))
            store.record_assessment(name, candidate, result, parent=None if name == "v0" else "v0")
        store.record("pruned", fingerprint="f", metrics={"accuracy": 0.5}, parent="v0")  # a float child: not compared
    page = parsed(path, tmp_path)
    assert [page.versions[name][SCHEME_COLUMN] for name in ("v0", "int8", "int8-qat", "pruned")] == \
           ["—", "int8", "int8-qat", "—"]
    assert page.parents == ["v0"] and list(page.compared) == ["v0", "int8", "int8-qat"]
    base = (model.predict(data.x).argmax(1) == data.y).mean()
    for name, q in made.items():
        row = page.compared[name]
        accuracy = (q.predict(data.x).argmax(1) == data.y).mean()
        assert row[1:4] == [name, f"{100 * accuracy:.1f} %", f"{100 * (accuracy - base):+.2f}"]
        assert row[4] == f"{100 * (q.predict(data.x).argmax(1) == model.predict(data.x).argmax(1)).mean():.1f} %"
    assert page.compared["v0"][1:4] == ["—", f"{100 * base:.1f} %", "+0.00"]


def test_one_scheme_per_parent_has_nothing_to_compare(tmp_path):
    path = tmp_path / "store.db"
    with Store(path) as store:
        store.record("v0", fingerprint="a", metrics={"accuracy": 0.9})
        store.record("q1", fingerprint="b", metrics={"accuracy": 0.89, "scheme": "int8"}, parent="v0")
        store.record("q2", fingerprint="c", metrics={"accuracy": 0.88, "scheme": "int8"}, parent="v0")
        store.record("r1", fingerprint="d", metrics={"accuracy": 0.87, "scheme": "int8-qat"})  # no parent
    page = parsed(path, tmp_path)
    assert page.parents == [] and page.compared == {}
    assert page.versions["q1"][SCHEME_COLUMN] == "int8" and page.versions["r1"][SCHEME_COLUMN] == "int8-qat"
