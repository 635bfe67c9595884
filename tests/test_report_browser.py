"""The report as a browser shows it: headless Chromium builds the page, and its pixels are checked.

Two runs of the browser on the same page at the same window size, so the layout is the same:
one dumps the DOM after a small script (added to a copy of the page by this test, never by the
report) has written what the page built into it: rows, decoded image sizes, element boxes; the
other takes a screenshot, whose pixels are then read at those boxes.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import re
import shutil
import subprocess

import matplotlib.image
import numpy as np
import pytest

from leanlens.audit.check import Check, Verdict
from leanlens.report import lineplot, report
from leanlens.store import Store

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless browser on PATH (apt-get install chromium)")

N, H = 4, 16
METHODS = ("gradcam++", "ig")
# if this name were not escaped, its script would run and mark the page, and <b> would become an element
HOSTILE = "<script>document.body.dataset.pwned = 'yes'</script><b>v2</b>"
NAMES = ("v0", "v1", HOSTILE)
WINDOW = (1280, 5000)  # tall enough for the whole page: one screenshot, no scrolling

# Added before </body> of a copy of the page: once everything has loaded, write what the browser
# built into a <pre> at the end of the page, where it moves nothing above it.
PROBE = """<script>
addEventListener("load", () => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  const cells = sel => [...document.querySelectorAll(sel)].map(tr => [...tr.children].map(c => c.textContent.trim()));
  const onTop = e => { const [x, y, w, h] = box(e); return document.elementFromPoint(x + w / 2, y + h / 2) === e; };
  const found = {
    height: document.documentElement.scrollHeight,
    scripts: document.scripts.length,
    bold: document.querySelectorAll("b").length,
    pwned: document.body.dataset.pwned || null,
    versions: cells("#versions tbody tr"),
    history: cells("#history-table tbody tr"),
    gate: cells("#gate-table tbody tr"),
    images: [...document.querySelectorAll("#heatmap-grid img")].map(i => (
      {alt: i.alt, src: i.src, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight, box: box(i)})),
    series: [...document.querySelectorAll("#history-plot g.series")].map(g => ({
      label: g.dataset.series, stroke: getComputedStyle(g).stroke,
      lines: [...g.querySelectorAll("polyline")].map(p => [...p.points].map(q => {
        const m = p.getScreenCTM(); return [m.a * q.x + m.c * q.y + m.e, m.b * q.x + m.d * q.y + m.f]; })),
      points: [...g.querySelectorAll("circle")].map(c => ({box: box(c), top: onTop(c),
                                                          tip: c.querySelector("title").textContent}))})),
    ticks: [...document.querySelectorAll("#history-plot text.tick title")].map(t => t.textContent),
  };
  const pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(found);
  document.body.append(pre);
});
</script>
"""


def _maps(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((N, H, H))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(0)
    with Store(folder / "lens.db") as store:
        store.set_probe(rng.normal(size=(N, 1, H, H)).astype(np.float32), y=np.arange(N) % 2,
                        masks=rng.random((N, H, H)) > 0.7)
        base = {m: _maps(i) for i, m in enumerate(METHODS)}
        for i, name in enumerate(NAMES):  # each version drifts further from v0, ig faster than gradcam++
            maps = {m: base[m] + (j + 1) * i * _maps(10 * i + j) for j, m in enumerate(METHODS)}
            store.record(name, fingerprint=f"f{i}", metrics={"accuracy": 0.9 - i / 20, "speedup": 1 + i},
                         explanations=maps)
        for i, spearman in enumerate((0.95, 0.5)):
            v = Verdict("v0", f"f{i + 1}", {m: Check(m, spearman, 0.92, N) for m in METHODS})
            store.record_gate_run(reference="v0", candidate=v.candidate, holds=v.holds, verdict=v.to_json())
    return report(folder / "lens.db", folder / "out")


def _chromium(*args: str, cwd) -> str:
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--force-device-scale-factor=1", f"--window-size={WINDOW[0]},{WINDOW[1]}",
               f"--user-data-dir={cwd / 'profile'}", "--virtual-time-budget=5000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def built(page):
    """What the browser built: the probe's findings from the DOM, and a screenshot as (H, W, 3) uint8."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium("--dump-dom", probed.as_uri(), cwd=page.parent)
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the probe script did not run"
    shot = page.with_name("shot.png")
    _chromium(f"--screenshot={shot}", page.as_uri(), cwd=page.parent)
    pixels = np.round(matplotlib.image.imread(shot)[..., :3] * 255).astype(np.int16)
    return json.loads(html.unescape(found.group(1))), pixels


def test_the_browser_builds_every_table_row_and_keeps_names_as_text(built):
    found, _ = built
    assert [row[0] for row in found["versions"]] == list(NAMES)
    assert [row[0] for row in found["history"]] == list(NAMES)
    assert [row[:5] for row in found["gate"]] == [["2", found["gate"][0][1], "v0", "f2", "drifted"],
                                                  ["1", found["gate"][1][1], "v0", "f1", "holds"]]
    # the hostile name is text everywhere, in tables and in the plot's tooltips; it made no element
    assert found["scripts"] == 1 and found["bold"] == 0 and found["pwned"] is None  # 1: this test's probe
    assert found["ticks"] == list(NAMES)
    assert all(p["tip"].split(": ")[0] in NAMES for s in found["series"] for p in s["points"])
    assert found["height"] <= WINDOW[1]  # the screenshot holds the whole page


def test_every_heatmap_is_decoded_and_drawn_pixel_for_pixel(built):
    found, pixels = built
    images = found["images"]
    assert len(images) == N * (1 + len(NAMES))
    for image in images:
        png = base64.b64decode(image["src"].split(",", 1)[1])
        want = np.round(matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255).astype(int)
        assert image["complete"] and (image["height"], image["width"]) == want.shape[:2] == (128, 128)
        x, y, w, h = map(round, image["box"])
        assert (w, h) == (128, 128)  # shown at its natural size: one screen pixel per image pixel
        # leave out the rounded corners; colour management may move a channel by a level or two
        inner = (slice(y + 4, y + h - 4), slice(x + 4, x + w - 4))
        drawn = pixels[inner]
        assert np.abs(drawn - want[4:-4, 4:-4]).max() <= 3, image["alt"]
    cells = [i for i in images if not i["alt"].endswith("image")]
    assert len({i["src"] for i in cells}) == len(cells)  # every version's map differs, so a mix-up would show


def _hex(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])


def test_the_history_plot_draws_one_coloured_line_per_method(built):
    found, pixels = built
    series = {s["label"]: s for s in found["series"]}
    assert list(series) == ["accuracy", *(f"{m} Spearman" for m in METHODS)]
    colours = {"accuracy": lineplot.ACCURACY_COLOR,
               **{f"{m} Spearman": lineplot.PALETTE[i] for i, m in enumerate(METHODS)}}
    for label, s in series.items():
        assert len(s["lines"]) == 1 and len(s["lines"][0]) == len(s["points"]) == len(NAMES)
        want = _hex(colours[label])
        assert s["stroke"] == "rgb({}, {}, {})".format(*want)
        for point in s["points"]:
            x, y, w, h = point["box"]
            centre = pixels[round(y + h / 2) - 1:round(y + h / 2) + 1, round(x + w / 2) - 1:round(x + w / 2) + 1]
            if point["top"]:  # a point another line's point covers is checked as that one
                assert np.abs(centre - want).max() <= 8, (label, point["tip"])
    # the similarity lines fall from v0 and ig, drifting faster, lies below gradcam++ after it
    ys = {m: [y for _, y in series[f"{m} Spearman"]["lines"][0]] for m in METHODS}
    assert ys["ig"][0] == ys["gradcam++"][0] and all(a > b for a, b in zip(ys["ig"][1:], ys["gradcam++"][1:]))
    for m in METHODS:
        line = series[f"{m} Spearman"]["lines"][0]
        for (x0, y0), (x1, y1) in itertools.pairwise(line):  # between two points the line is drawn in its colour
            xm, ym = round((x0 + x1) / 2), round((y0 + y1) / 2)
            near = pixels[ym - 2:ym + 3, xm - 2:xm + 3].reshape(-1, 3)
            assert np.abs(near - _hex(colours[f"{m} Spearman"])).max(axis=1).min() <= 40, m
