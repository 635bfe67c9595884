"""Highlighted tokens: a text explanation as coloured text, one sentence a line.

Two steps, so a store can keep the middle one: `token_rows(explanation)` makes plain JSON-able
dicts, and `tokens_html(rows)` draws them (pure: rows in, an HTML fragment out). Red marks a
token that raises the explained class's score, blue one that lowers it (shap's colours);
the shade is |value| over the largest |value| in the same sentence, so every sentence uses
the whole scale and its own strongest token is fully coloured.
"""

from __future__ import annotations

import html
import math

RAISES, LOWERS = (214, 39, 40), (31, 119, 180)  # red, blue
LEGEND = ("<p class='token-legend'><span style='background:rgba(214,39,40,0.8)'>red</span> raises the "
          "explained class's score, <span style='background:rgba(31,119,180,0.8)'>blue</span> lowers it; "
          "the shade is the token's |value| over the largest in its sentence.</p>")


def token_rows(explanation) -> list[dict]:
    """One dict a text: its class, score, method and level, and (token, value) pairs, JSON-able."""
    rows = []
    for i, text in enumerate(explanation.texts):
        target = int(explanation.target[i])
        rows.append({"text": text, "target": target, "score": float(explanation.predictions[i][target]),
                     "method": explanation.method, "level": explanation.level,
                     "tokens": [{"token": token, "value": value} for token, value in explanation.pairs(i)]})
    return rows


def tokens_html(rows: list[dict]) -> str:
    """The rows as an HTML fragment: a legend, then one line of highlighted tokens a text."""
    lines = [LEGEND]
    for row in rows:
        tokens = row["tokens"]
        largest = max((abs(t["value"]) for t in tokens if math.isfinite(t["value"])), default=0.0)
        cells = " ".join(_token(t["token"], t["value"], largest) for t in tokens)
        caption = html.escape(f"class {row['target']}, score {row['score']:.3g} ({row['method']}, {row['level']}s)")
        lines.append(f"<p class='token-row'><span class='token-caption'>{caption}</span><br>{cells}</p>")
    return "\n".join(lines)


def shade(value: float, largest: float) -> tuple[tuple[int, int, int], float]:
    """The colour and opacity (0..1) of a value in a sentence whose largest |value| is `largest`."""
    if not math.isfinite(value) or largest <= 0:
        return RAISES, 0.0
    return (RAISES if value > 0 else LOWERS), min(abs(value) / largest, 1.0)


def _token(token: str, value: float, largest: float) -> str:
    (r, g, b), alpha = shade(value, largest)
    return (f"<span class='token' title='{value:+.4g}' style='background:rgba({r},{g},{b},{alpha:.3f})'>"
            f"{html.escape(token)}</span>")
