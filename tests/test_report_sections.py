"""Report sections for attachments: importance bars with interval whiskers, the surrogate's rules, reason
codes, one registry from kind to renderer, and every piece of user text escaped."""

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

import leanlens as ll
from leanlens.report.importance import BAR_WIDTH, LABEL_WIDTH, importance_html
from leanlens.report.reasons import reasons_html
from leanlens.report.surrogate import surrogate_html
from leanlens.store import Store

HOSTILE = "<script>alert(1)</script>&"
SVG = "{http://www.w3.org/2000/svg}"

IMPORTANCE = {"method": "permutation", "feature_names": ["a", "b", HOSTILE], "mean": [0.4, -0.1, 0.2],
              "std": [0.01, 0.01, 0.01], "ci_low": [0.3, -0.2, 0.1], "ci_high": [0.5, 0.0, 0.3],
              "confidence": 0.95, "repeats": 5, "baseline_score": 0.9}
SURROGATE = {"fidelity": 0.875, "train_fidelity": 0.9, "depth": 2, "leaves": 3, "classes": ["0", "1"],
             "feature_names": ["a"], "rules": f"a <= 0.5\n|   -> {HOSTILE} (90% of 10 rows)"}
REASONS = {"method": "treeshap", "space": "log-odds", "rows": 40, "top": 2, "decisions": {"refused": 10, "granted": 30},
           "summary": {"refused": [["debt", 9, 10], [HOSTILE, 1, 7]], "granted": [["income", 30, 30]]},
           "examples": [{"row": 0, "decision": "refused", "score": 0.75,
                         "reasons": [{"feature": "debt", "value": 0.6, "contribution": 1.25},
                                     {"feature": HOSTILE, "value": HOSTILE, "contribution": -0.5}]}]}


def _svg(html: Markup) -> ET.Element:
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    return ET.fromstring(html[start:end])  # well-formed XML, or this raises


def test_importance_bars_are_proportional_to_the_means_with_whiskers_at_the_intervals():
    svg = _svg(importance_html(IMPORTANCE))
    bars = {rect.get("data-feature"): rect for rect in svg.iter(f"{SVG}rect")}
    assert list(bars) == ["a", HOSTILE, "b"]  # largest first; the name comes back intact from the escaped text
    lo, hi = -0.2, 0.5  # every mean, interval end and zero
    x = lambda v: LABEL_WIDTH + (v - lo) / (hi - lo) * BAR_WIDTH
    for name, mean, low, high in zip(IMPORTANCE["feature_names"], IMPORTANCE["mean"], IMPORTANCE["ci_low"],
                                     IMPORTANCE["ci_high"]):
        bar = bars[name]
        left, width = float(bar.get("x")), float(bar.get("width"))
        assert (left, left + width) == pytest.approx(sorted((x(0), x(mean))), abs=0.02)
        whisker = next(w for w in svg.iter(f"{SVG}line") if w.get("data-feature") == name)
        assert (float(whisker.get("x1")), float(whisker.get("x2"))) == pytest.approx((x(low), x(high)), abs=0.02)
    assert float(bars["b"].get("x")) < x(0) - 1  # a negative importance is drawn left of zero
    assert float(next(svg.iter(f"{SVG}line")).get("x1")) == pytest.approx(x(0), abs=0.02)  # the zero axis


def test_importance_without_intervals_draws_bars_only():
    html = importance_html({**IMPORTANCE, "ci_low": None, "ci_high": None, "repeats": 1})
    assert 'class="whisker"' not in html and html.count('class="bar"') == 3 and "interval" not in html


@pytest.mark.parametrize("render, payload", [(importance_html, IMPORTANCE), (surrogate_html, SURROGATE),
                                             (reasons_html, REASONS)], ids=["importance", "surrogate", "reasons"])
def test_every_renderer_escapes_user_text(render, payload):
    html = render(payload)
    assert isinstance(html, Markup) and HOSTILE not in html and "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in html


def test_surrogate_and_reasons_sections_show_their_figures():
    surrogate = surrogate_html(SURROGATE)
    assert "A depth-2 tree with 3 leaves" in surrogate and "<strong>87.5%</strong>" in surrogate
    assert "90.0% of the rows it was fit to" in surrogate and "a &lt;= 0.5\n|   -&gt; " in surrogate
    reasons = reasons_html(REASONS)
    assert "40 rows explained by treeshap; contributions in log-odds" in reasons
    assert "<caption>decision refused (10 rows): reasons cited</caption>" in reasons
    assert '<tr><th scope="row">debt</th><td>9</td><td>10</td></tr>' in reasons
    assert "debt = 0.6 (+1.25)" in reasons and "(-0.5)" in reasons and "the first 1 of 40 rows" in reasons


TOKENS = {"rows": [{"text": HOSTILE, "target": 1, "score": 0.9, "method": "ig", "level": "token",
                    "tokens": [{"token": HOSTILE, "value": 0.3}, {"token": "fine", "value": -0.15}]}]}


def test_the_report_shows_each_attachment_through_the_registry(tmp_path):
    with Store(tmp_path / "lens.db") as store:
        store.record(HOSTILE, fingerprint="f", metrics={})
        for kind, payload in (("importance", IMPORTANCE), ("surrogate", SURROGATE), ("reasons", REASONS),
                              ("tokens", TOKENS), ("mystery", {}), ("importance", {"mean": 1})):
            store.attach(HOSTILE, kind, payload)
        page = ll.report(store, tmp_path / "report").read_text()
    assert HOSTILE not in page
    kinds = [part.split('"')[0] for part in page.split('class="attachment" data-kind="')[1:]]
    assert kinds == ["importance", "surrogate", "reasons", "tokens", "mystery", "importance"]
    assert page.count('<rect class="bar"') == 3 and "A depth-2 tree" in page and "decision refused" in page
    assert "title='+0.3' style='background:rgba(214,39,40,1.000)'>&lt;script&gt;alert(1)&lt;/script&gt;&amp;</span>" in page
    assert "title='-0.15' style='background:rgba(31,119,180,0.500)'>fine</span>" in page and "<h3>Token attributions &middot; &lt;script&gt;" in page
    assert "No view for attachments of kind mystery" in page
    assert "This importance attachment does not have the form its view reads." in page


def test_a_report_without_attachments_has_no_such_section(tmp_path):
    with Store(tmp_path / "lens.db") as store:
        store.record("v0", fingerprint="f", metrics={})
        page = ll.report(store, tmp_path / "report").read_text()
    assert 'id="attachments"' not in page
