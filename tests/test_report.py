"""The HTML report: built from a real store, parsed back and checked."""

import base64
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from check_support import images

import leanlens as ll
from leanlens.audit import ModelFigures
from leanlens.audit.check import Check, Verdict
from leanlens.audit.profile import fingerprint
from leanlens.errors import BadInput, BadOption
from leanlens.metrics import ExplanationScores
from leanlens.models import SmallResNet
from leanlens.report import history, lineplot, report
from leanlens.store import Store, held_out_split

N, H = 8, 16
METHOD = "gradcam++"
GATE_METHODS = ("saliency", "gradcam")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = {
    "v0": ModelFigures(accuracy=0.9312, params=1_234_567, macs=45_600_000, bytes=4_900_000, runtime="torch",
                       latency_ms=3.41, fp32_runtime="onnxruntime", fp32_latency_ms=2.5, speedup=2.5 / 3.41,
                       fp32_speedup=2.5 / 3.41),
    "v1": ModelFigures(accuracy=0.9205, params=617_000, macs=22_800_000, bytes=2_450_000,
                       latency_ms=1.9, speedup=1.79, agreement=0.97),
    "v2": ModelFigures(accuracy=0.915, bytes=640_000, runtime="onnxruntime int8", latency_ms=0.88, speedup=3.875),
}
METRICS = {name: figures.to_json() for name, figures in FIGURES.items()}
SCORES = {
    "v0": ExplanationScores(pointing_game=0.875, pointing_tolerance=3),
    "v1": ExplanationScores(spearman=0.912, top_k=0.81, pointing_game=0.75, pointing_tolerance=3),
    "v2": ExplanationScores(spearman=0.85),
}
ROW_KEYS = ("data-version", "data-step", "data-run")  # versions, history and gate runs tables
# cell index of each displayed field: the version's name comes first
COL = {name: i + 1 for i, (name, _) in enumerate(ModelFigures.shown_fields() + ExplanationScores.shown_fields())}
COL["error"] = len(COL) + 1  # the method's numerical error, last


class Page(HTMLParser):
    """Collects what the tests look at: table rows, images, links, element ids."""

    def __init__(self):
        super().__init__()
        # per table, its rows' key attribute -> cell texts, the row's header cell first
        self.tables = {key: {} for key in ROW_KEYS}
        self.rows = self.tables["data-version"]  # the versions table
        self.images = []  # (alt, src, ids of the enclosing elements)
        self.links = []  # every src and href value
        self.ids = set()
        self.series = {}  # history plot: data-series -> {"stroke", "lines": [[(x, y)...]], "points": [(x, y)]}
        self._open = []  # ids of the elements we are inside (None for no id)
        self._row = None
        self._cell = None
        self._series = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("img", "meta", "br", "link"):  # void elements never close
            self._open.append((tag, a.get("id")))
        self.ids.add(a.get("id"))
        self.links += [v for k, v in attrs if k in ("src", "href")]
        if tag == "img":
            self.images.append((a.get("alt"), a.get("src"), {i for _, i in self._open}))
        key = next((k for k in ROW_KEYS if k in a), None)
        if tag == "tr" and key:
            self._row = self.tables[key].setdefault(a[key], [])
        self._plot(tag, a)
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def _plot(self, tag, a):
        if tag == "g" and "data-series" in a:
            self._series = self.series.setdefault(a["data-series"], {"stroke": a["stroke"], "lines": [],
                                                                      "points": []})
        if tag == "polyline" and self._series is not None:
            self._series["lines"].append([tuple(map(float, p.split(","))) for p in a["points"].split()])
        if tag == "circle" and self._series is not None:
            self._series["points"].append((float(a["cx"]), float(a["cy"])))

    def handle_endtag(self, tag):
        if tag == "g":
            self._series = None
        if self._open and self._open[-1][0] == tag:
            self._open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _maps(seed):
    return np.random.default_rng(seed).random((N, H, H)).astype(np.float32)


@pytest.fixture
def store_path(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "lens.db"
    with Store(path) as store:
        store.set_probe(rng.normal(size=(N, 1, H, H)).astype(np.float32),
                        y=np.arange(N) % 3, masks=rng.random((N, H, H)) > 0.6)
        parent = None
        for i, (name, metrics) in enumerate(METRICS.items()):
            store.record(name, fingerprint=f"f{i}", metrics=metrics, parent=parent,
                         explanations={METHOD: _maps(i)}, scores={METHOD: SCORES[name]})
            parent = name
    return path


@pytest.fixture
def page(store_path, tmp_path):
    with Store(store_path) as store:
        out = report(store, tmp_path / "out")
    assert out == tmp_path / "out" / "index.html"
    parser = Page()
    parser.feed(out.read_text(encoding="utf-8"))
    return parser


def _png(src):
    assert src.startswith("data:image/png;base64,")
    return base64.b64decode(src.split(",", 1)[1], validate=True)


def test_versions_table_one_row_per_version(page):
    assert list(page.rows) == list(METRICS)
    for name, cells in page.rows.items():
        assert len(cells) == 1 + len(COL)
        assert cells[0] == name
        assert cells[COL["accuracy"]] == f"{100 * METRICS[name]['accuracy']:.1f} %"


def test_missing_metrics_show_a_dash(page):
    v0, v2 = page.rows["v0"], page.rows["v2"]
    for field in ("agreement", "spearman", "top_k", "cosine", "relevance_mass"):
        assert v0[COL[field]] == "—", field  # the reference has no comparison
    for field in ("params", "macs", "fp32_latency_ms", "pointing_game", "error"):
        assert v2[COL[field]] == "—", field
    assert v2[COL["speedup"]] == "3.88×" and v2[COL["spearman"]] == "0.850"


def test_both_latencies_and_the_runtimes_are_shown(page):
    v0 = page.rows["v0"]
    assert (v0[COL["runtime"]], v0[COL["latency_ms"]]) == ("torch", "3.41")
    assert (v0[COL["fp32_runtime"]], v0[COL["fp32_latency_ms"]]) == ("onnxruntime", "2.50")
    assert v0[COL["speedup"]] == "0.73×"  # eager torch is slower than the fastest fp32 path
    assert v0[COL["fp32_speedup"]] == "0.73×"  # the same: v0 is the reference
    assert page.rows["v2"][COL["runtime"]] == "onnxruntime int8"


def test_sizes_are_human_and_relative_to_the_first(page):
    assert page.rows["v0"][COL["params"]].startswith("1.2 M")
    assert page.rows["v1"][COL["bytes"]] == "2.5 MB50 %"  # value, then its share of v0's in a span
    assert page.rows["v2"][COL["bytes"]] == "640 kB13 %"


def test_heatmap_grid_has_an_image_and_a_map_per_version_for_each_probe(page):
    grid = [(alt, src) for alt, src, ids in page.images if "heatmaps" in ids]
    assert len(grid) == N * (1 + len(METRICS))
    assert grid[0][0] == "probe 0, image"
    assert [alt for alt, _ in grid[1:4]] == ["probe 0, v0", "probe 0, v1", "probe 0, v2"]


def test_every_image_is_an_embedded_png_and_nothing_is_fetched(page):
    assert page.images
    for _, src, _ in page.images:
        assert _png(src).startswith(PNG_SIGNATURE)
    assert not [v for v in page.links if v.startswith(("http://", "https://", "//"))]


def test_tradeoff_plot_exists(page):
    assert "tradeoff" in page.ids and "versions" in page.ids
    plots = [src for _, src, ids in page.images if "tradeoff" in ids]
    assert len(plots) == 1 and _png(plots[0]).startswith(PNG_SIGNATURE)


def test_a_path_string_works_and_text_is_escaped(store_path, tmp_path):
    out = report(str(store_path), str(tmp_path / "new" / "folder"), title="<b>run & 3</b>")
    text = out.read_text(encoding="utf-8")
    assert out.name == "index.html" and out.parent.is_dir()
    assert "&lt;b&gt;run &amp; 3&lt;/b&gt;" in text and "<b>run" not in text
    assert str(store_path) in text


def test_a_missing_store_file_is_bad_input_and_not_created(tmp_path):
    with pytest.raises(BadInput, match="no store at"):
        report(tmp_path / "nope.db", tmp_path / "out")
    assert not (tmp_path / "nope.db").exists()


def test_bad_options_are_refused(store_path, tmp_path):
    with pytest.raises(BadOption):
        report(store_path, tmp_path / "out", method="")
    with pytest.raises(BadInput):
        report(42, tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="is a file"):
        report(store_path, tmp_path / "file")


def test_versions_without_the_method_are_skipped_with_a_note(store_path, tmp_path):
    with Store(store_path) as store:
        store.record("v3", fingerprint="f3", metrics={"accuracy": 0.5})
        text = report(store, tmp_path / "out").read_text(encoding="utf-8")
    parser = Page()
    parser.feed(text)
    assert list(parser.rows) == [*METRICS, "v3"]
    grid = [alt for alt, _, ids in parser.images if "heatmaps" in ids]
    assert len(grid) == N * (1 + len(METRICS)) and not any("v3" in a for a in grid)
    assert "has no &#39;gradcam++&#39; explanation" in text


def test_color_images_channel_maps_and_no_masks(tmp_path):
    rng = np.random.default_rng(1)
    with Store(tmp_path / "c.db") as store:
        store.set_probe(rng.random((3, 3, 10, 12)).astype(np.float32))
        store.record("a", fingerprint="a", metrics={},
                     explanations={"ig": rng.normal(size=(3, 3, 10, 12))})
        out = report(store, tmp_path / "out", method="ig")
    parser = Page()
    parser.feed(out.read_text(encoding="utf-8"))
    assert list(parser.rows) == ["a"] and parser.rows["a"][1:] == ["—"] * len(COL)
    grid = [src for _, src, ids in parser.images if "heatmaps" in ids]
    assert len(grid) == 3 * 2 and all(_png(s).startswith(PNG_SIGNATURE) for s in grid)
    assert not [src for _, src, ids in parser.images if "tradeoff" in ids]


# history and gate runs --------------------------------------------------------------------------------

HISTORY = {"accuracy": 1, "speedup": 2, "fp32_speedup": 3, "spearman": 4, "top_k": 5}  # cell index, METHOD's first


def test_history_is_what_store_compare_computes_for_each_version(store_path, page):
    with Store(store_path) as store:  # every probe is held out and holds an object: the gate compares all
        assert store.probe().masks.any(axis=(1, 2)).all() and store.probe().held_out.all()
        past = history.history(store, store.versions())
        compared = {name: store.compare("v0", name, METHOD) for name in METRICS}
    assert past.samples == N and list(page.tables["data-step"]) == list(METRICS)
    for step in past.steps:
        assert step.similarity[METHOD].spearman == pytest.approx(compared[step.name].spearman, abs=1e-12)
        assert step.similarity[METHOD].top_k == pytest.approx(compared[step.name].top_k, abs=1e-12)
        cells = page.tables["data-step"][step.name]
        assert cells[HISTORY["spearman"]] == f"{compared[step.name].spearman:.3f}"
        assert cells[HISTORY["top_k"]] == f"{100 * compared[step.name].top_k:.1f} %"
        figures = FIGURES[step.name]
        assert cells[HISTORY["accuracy"]] == f"{100 * figures.accuracy:.1f} %"
        assert cells[HISTORY["speedup"]] == f"{figures.speedup:.2f}×"
    assert past.steps[0].similarity[METHOD].spearman == 1.0  # the reference against itself
    assert page.tables["data-step"]["v1"][HISTORY["fp32_speedup"]] == "—"  # v1 has no fp32 path recorded


def test_history_plot_has_one_polyline_per_method_and_one_point_per_version(store_path, page):
    with Store(store_path) as store:
        values = {f"{METHOD} Spearman": [store.compare("v0", v, METHOD).spearman for v in METRICS],
                  "accuracy": [FIGURES[v].accuracy for v in METRICS]}
    assert set(page.series) == set(values)
    xs = None
    for series in page.series.values():
        assert len(series["lines"]) == 1 and len(series["points"]) == len(METRICS)
        assert series["lines"][0] == series["points"]  # the line runs through the points, in version order
        assert xs in (None, [x for x, _ in series["points"]])  # every series shares the versions' x positions
        xs = [x for x, _ in series["points"]]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    # one linear y axis for every series, higher values drawn higher (smaller y)
    pairs = [(v, y) for label, s in page.series.items() for v, (_, y) in zip(values[label], s["points"])]
    slope, intercept = np.polyfit(*zip(*pairs), 1)
    assert slope < 0
    assert all(abs(intercept + slope * v - y) < 0.1 for v, y in pairs)  # coordinates are printed to 0.1 px
    assert page.series["accuracy"]["stroke"] == lineplot.ACCURACY_COLOR
    assert page.series[f"{METHOD} Spearman"]["stroke"] == lineplot.PALETTE[0]


def test_a_missing_value_breaks_the_line_and_negative_values_widen_the_axis():
    plot = lineplot.line_plot(["a", "b", "c", "d"], [lineplot.Line("m", [0.5, None, -0.3, 0.2], "#000000")])
    (series,) = plot.series
    assert len(series.runs) == 2 and len(series.points) == 3
    assert [t.text for t in plot.y_ticks] == ["-0.5", "-0.25", "0", "0.25", "0.5", "0.75", "1"]
    assert plot.y_ticks[0].at == plot.bottom and plot.y_ticks[-1].at == plot.top


def test_versions_missing_a_method_or_a_figure_show_dashes_and_notes(store_path, tmp_path):
    with Store(store_path) as store:
        store.record("v3", fingerprint="f3", metrics={"accuracy": 0.5}, explanations={"ig": _maps(7)})
        text = report(store, tmp_path / "out").read_text(encoding="utf-8")
        past = history.history(store, store.versions())
    parser = Page()
    parser.feed(text)
    v3 = parser.tables["data-step"]["v3"]
    assert v3[HISTORY["accuracy"]] == "50.0 %" and v3[HISTORY["spearman"]] == v3[HISTORY["top_k"]] == "—"
    assert past.methods == [METHOD, "ig"] and past.steps[3].similarity == {METHOD: None, "ig": None}
    assert "No &#39;gradcam++&#39; explanation: &#39;v3&#39;." in text
    assert "The reference &#39;v0&#39; has no &#39;ig&#39; explanation" in text
    assert "No speed-up vs ref. recorded: &#39;v3&#39;." in text
    assert "No gate runs recorded yet." in text


def test_gate_runs_are_listed_newest_first_with_each_score_against_its_threshold(store_path, tmp_path):
    runs = [Verdict("v0", "a" * 40, {METHOD: Check(METHOD, 0.95, 0.92, 4)}),
            Verdict("v0", "b" * 40, {METHOD: Check(METHOD, 0.81, 0.92, 4)},
                    accuracy=Check("accuracy", 0.91, 0.92, 64), agreement=Check("agreement", 0.875, None, 8)),
            Verdict("v1", "c" * 40, {METHOD: Check(METHOD, 0.97, 0.9, 4)}, accuracy=Check("accuracy", 0.93, 0.92, 64))]
    with Store(store_path) as store:
        for v in runs:
            store.record_gate_run(reference=v.reference, candidate=v.candidate, holds=v.holds, verdict=v.to_json())
        text = report(store, tmp_path / "out").read_text(encoding="utf-8")
    parser = Page()
    parser.feed(text)
    rows = parser.tables["data-run"]
    assert list(rows) == ["3", "2", "1"]
    # run, recorded, reference, candidate, verdict, then the method, accuracy and agreement
    assert [r[2:] for r in rows.values()] == [
        ["v1", "c" * 12, "holds", "0.970 ≥ 0.900", "93.0 % ≥ 92.0 %", "—"],
        ["v0", "b" * 12, "drifted", "0.810 < 0.920", "91.0 % < 92.0 %", "87.5 % (not gated)"],
        ["v0", "a" * 12, "holds", "0.950 ≥ 0.920", "—", "—"],
    ]


def test_history_similarity_is_the_score_the_gate_gives_the_same_model(tmp_path, one_thread):
    """The gate explains a candidate afresh; the history reads the maps recorded for it. Same model, same score."""
    probe = images(12, seed=1)  # half the images hold an object: the gate compares only those
    torch.manual_seed(0)
    reference, candidate = (SmallResNet(width=4, num_classes=2).eval() for _ in range(2))
    path = tmp_path / "lens.db"
    with Store(path) as store:
        store.set_probe(probe.x, probe.y, probe.masks, held_out=held_out_split(probe.y, 0.5))
        for name, model in (("v0", reference), ("v1", candidate)):
            explained = {m: ll.explain(model, probe.x, method=m, target=probe.y) for m in GATE_METHODS}
            store.record(name, fingerprint=fingerprint(ll.wrap(model)), metrics={}, explanations=explained,
                         predictions=explained[GATE_METHODS[0]].predictions)
    verdict = ll.check(path, candidate)
    with Store(path) as store:
        past = history.history(store, store.versions())
        everything = store.compare("v0", "v1", GATE_METHODS[0])  # every held-out probe, objects or not
        text = report(store, tmp_path / "out", method=GATE_METHODS[0]).read_text(encoding="utf-8")
    assert past.samples == verdict.methods[GATE_METHODS[0]].samples == 3
    for method in GATE_METHODS:
        assert past.steps[1].similarity[method].spearman == pytest.approx(verdict.methods[method].score, abs=1e-6)
    assert everything.spearman != pytest.approx(past.steps[1].similarity[GATE_METHODS[0]].spearman, abs=1e-3)
    parser = Page()
    parser.feed(text)
    (row,) = parser.tables["data-run"].values()
    gated = [f"{verdict.methods[m].score:.3f} < 0.920" for m in GATE_METHODS]
    agreement = f"{100 * verdict.agreement.score:.1f} % (not gated)"
    assert row[4:] == ["drifted", *gated, agreement] and not verdict.holds
