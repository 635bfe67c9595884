"""The HTML report: built from a real store, parsed back and checked."""

import base64
from html.parser import HTMLParser

import numpy as np
import pytest

from leanlens.audit import ModelFigures
from leanlens.errors import BadInput, BadOption
from leanlens.metrics import ExplanationScores
from leanlens.report import report
from leanlens.store import Store

N, H = 8, 16
METHOD = "gradcam++"
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
# cell index of each displayed field: the version's name comes first
COL = {name: i + 1 for i, (name, _) in enumerate(ModelFigures.shown_fields() + ExplanationScores.shown_fields())}


class Page(HTMLParser):
    """Collects what the tests look at: table rows, images, links, element ids."""

    def __init__(self):
        super().__init__()
        self.rows = {}  # data-version -> cell texts, the version cell first
        self.images = []  # (alt, src, ids of the enclosing elements)
        self.links = []  # every src and href value
        self.ids = set()
        self._open = []  # ids of the elements we are inside (None for no id)
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("img", "meta", "br", "link"):  # void elements never close
            self._open.append((tag, a.get("id")))
        self.ids.add(a.get("id"))
        self.links += [v for k, v in attrs if k in ("src", "href")]
        if tag == "img":
            self.images.append((a.get("alt"), a.get("src"), {i for _, i in self._open}))
        if tag == "tr" and "data-version" in a:
            self._row = self.rows.setdefault(a["data-version"], [])
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
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
    for field in ("params", "macs", "fp32_latency_ms", "pointing_game"):
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
