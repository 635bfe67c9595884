"""The reason-code section: which features each decision cites most, and the first rows with their reasons."""

from __future__ import annotations

from markupsafe import Markup

CITED_ROWS = 5  # features a decision in the summary table


def reasons_html(payload: dict) -> Markup:
    """A summary table a decision (first reason / in the top k) and a table of example rows."""
    intro = Markup("<p>{} rows explained by {}; contributions in {}, toward each row's decision.</p>").format(
        int(payload["rows"]), payload["method"], payload["space"])
    summaries = [_summary(decision, int(payload["decisions"].get(decision, 0)), cited, int(payload["top"]))
                 for decision, cited in payload["summary"].items()]
    return intro + Markup("").join(summaries) + _examples(payload["examples"], int(payload["rows"]))


def _summary(decision: str, count: int, cited: list, top: int) -> Markup:
    rows = Markup("").join(
        Markup('<tr><th scope="row">{}</th><td>{}</td><td>{}</td></tr>').format(feature, int(first), int(anywhere))
        for feature, first, anywhere in cited[:CITED_ROWS])
    return Markup('<table class="figures reasons-summary"><caption>decision {} ({} rows): reasons cited</caption>'
                  '<thead><tr><th scope="col">feature</th><th scope="col">first reason</th>'
                  '<th scope="col">in the top {}</th></tr></thead><tbody>{}</tbody></table>').format(
        decision, count, top, rows)


def _examples(records: list, total: int) -> Markup:
    rows = Markup("").join(
        Markup('<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>').format(
            int(r["row"]), r["decision"], f"{float(r['score']):.3f}",
            Markup("; ").join(Markup("{} = {} ({})").format(c["feature"], c["value"], f"{float(c['contribution']):+.3g}")
                              for c in r["reasons"]))
        for r in records)
    return Markup('<table class="figures reasons-rows"><caption>the first {} of {} rows</caption><thead><tr>'
                  '<th scope="col">row</th><th scope="col">decision</th><th scope="col">score</th>'
                  '<th scope="col">reasons (feature = value (contribution))</th></tr></thead><tbody>{}</tbody></table>'
                  ).format(len(records), total, rows)
