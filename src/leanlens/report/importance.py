"""The importance section: one bar a feature (its mean importance) with its confidence interval as a
whisker, drawn as inline SVG so the page stays one file and the numbers stay text."""

from __future__ import annotations

from markupsafe import Markup, escape

LABEL_WIDTH, BAR_WIDTH, VALUE_WIDTH, ROW_HEIGHT = 170, 340, 80, 22
BAR_COLOR, WHISKER_COLOR = "#4c72b0", "#222"


def scale(values: list[float]) -> tuple[float, float]:
    """The range the bars span: every value and zero, never empty."""
    low, high = min(0.0, *values), max(0.0, *values)
    return low, (high if high > low else low + 1.0)


def importance_html(payload: dict) -> Markup:
    """Bars of `payload["mean"]` by feature, largest first, whiskers from `ci_low` to `ci_high` when given."""
    names, means = payload["feature_names"], [float(m) for m in payload["mean"]]
    low, high = payload.get("ci_low"), payload.get("ci_high")
    intervals = list(zip(low, high)) if low is not None and high is not None else None
    order = sorted(range(len(names)), key=lambda j: -means[j])
    lo, hi = scale(means + ([v for pair in intervals for v in pair] if intervals else []))

    def x(value: float) -> float:
        return round(LABEL_WIDTH + (value - lo) / (hi - lo) * BAR_WIDTH, 2)

    rows = [_row(k, names[j], means[j], intervals[j] if intervals else None, x) for k, j in enumerate(order)]
    width, height = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH, ROW_HEIGHT * len(order) + 6
    axis = Markup('<line class="zero" x1="{0}" x2="{0}" y1="0" y2="{1}" stroke="#999"/>').format(x(0.0), height)
    caption = _caption(payload, intervals is not None)
    return Markup('<figure class="importance"><svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
                  'role="img" aria-label="{}">{}{}</svg><figcaption>{}</figcaption></figure>').format(
        width, height, caption, axis, Markup("").join(rows), caption)


def _row(k: int, name: str, mean: float, interval, x) -> Markup:
    middle = k * ROW_HEIGHT + ROW_HEIGHT / 2 + 3
    left, right = sorted((x(0.0), x(mean)))
    parts = [Markup('<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>').format(
                 LABEL_WIDTH - 6, middle, name),
             Markup('<rect class="bar" data-feature="{}" x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    '<title>{}: {}</title></rect>').format(
                 name, left, middle - 7, round(right - left, 2), 14, BAR_COLOR, name, f"{mean:.4g}")]
    if interval is not None:
        a, b = x(float(interval[0])), x(float(interval[1]))
        parts.append(Markup('<line class="whisker" data-feature="{}" x1="{}" x2="{}" y1="{}" y2="{}" '
                            'stroke="{}"/>').format(name, a, b, middle, middle, WHISKER_COLOR))
        parts += [Markup('<line x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="{3}"/>').format(
            end, middle - 4, middle + 4, WHISKER_COLOR) for end in (a, b)]
    parts.append(Markup('<text x="{}" y="{}" dominant-baseline="middle">{}</text>').format(
        LABEL_WIDTH + BAR_WIDTH + 6, middle, f"{mean:.3g}"))
    return Markup("").join(parts)


def _caption(payload: dict, with_intervals: bool) -> str:
    what = f"{payload.get('method', 'importance')} importance: score lost without each feature"
    if with_intervals:
        what += f", whiskers the {float(payload.get('confidence', 0.95)):.0%} interval over {payload.get('repeats')} repeats"
    return escape(what)
