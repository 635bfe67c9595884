"""Pictures for the report, as PNG bytes ready to embed as data URIs.

Matplotlib is driven through its object API with an explicit Agg canvas: the
report must not switch the global pyplot backend of whoever calls it (a
notebook, say), and pyplot's global figure registry would leak memory.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib
import matplotlib.colors
import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leanlens.report import arrays

HEAT_CMAP = "inferno"
# cyan is absent from inferno and stands out on gray, so the outline stays visible
OUTLINE_RGB = np.array([0.0, 0.9, 1.0])
OUTLINE_HEX = matplotlib.colors.to_hex(OUTLINE_RGB)
ACCENT = "#2563eb"


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so the page needs no side files and no network."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _rgb_png(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) float image in [0, 1] encoded as PNG."""
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, np.clip(rgb, 0.0, 1.0), format="png")
    return buf.getvalue()


def _as_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


def _zoomed(img: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Image and mask zoomed together; the mask is resampled to the image first."""
    factor = arrays.upscale_factor(img.shape)
    if mask is not None:
        mask = arrays.upscale(arrays.resize_nearest(np.asarray(mask, bool), img.shape[:2]), factor)
    return arrays.upscale(img, factor), mask, factor


def _draw_outline(rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return rgb
    # about 2 px at display size whatever the zoom, thin enough to see the pixels under it
    edge = arrays.outline(mask, thickness=max(1, rgb.shape[0] // 64))
    rgb = rgb.copy()
    rgb[edge] = OUTLINE_RGB
    return rgb


def probe_png(image: np.ndarray, mask: np.ndarray | None) -> bytes:
    """The probe image itself, with its object mask outlined."""
    img, mask, _ = _zoomed(image, mask)
    return _rgb_png(_draw_outline(_as_rgb(img), mask))


def heatmap_png(image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None) -> bytes:
    """An explanation map over the (gray) image, with the same mask outline.

    `heat` is min-max normalised here, per map, for display only. Opacity grows
    with importance so unimportant regions still show the image underneath.
    """
    gray = arrays.to_gray(image)
    heat = arrays.minmax(arrays.resize_nearest(np.asarray(heat, float), gray.shape))
    gray, mask, factor = _zoomed(gray, mask)
    heat = arrays.upscale(heat, factor)
    colors = matplotlib.colormaps[HEAT_CMAP](heat)[..., :3]
    alpha = (0.25 + 0.6 * heat)[..., None]
    # dim the image a little so the colors, not the image, dominate the cell
    base = _as_rgb(0.15 + 0.7 * gray)
    return _rgb_png(_draw_outline((1 - alpha) * base + alpha * colors, mask))


def colorbar_css(steps: int = 8) -> str:
    """A CSS linear-gradient matching HEAT_CMAP, for a legend that needs no image."""
    cmap = matplotlib.colormaps[HEAT_CMAP]
    stops = [matplotlib.colors.to_hex(cmap(i / (steps - 1))) for i in range(steps)]
    return "linear-gradient(to right, " + ", ".join(stops) + ")"


@dataclass(frozen=True)
class Point:
    """One version on the trade-off plot."""

    name: str
    latency_ms: float
    accuracy_pct: float
    parent: str | None = None


def _figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9ca3af")
    ax.tick_params(colors="#374151", labelsize=9)
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)


def _lineage(ax, points: list[Point]) -> None:
    """Faint arrows from each parent to its child: how the compression went."""
    where = {p.name: p for p in points}
    for p in points:
        src = where.get(p.parent)
        if src is not None:
            ax.annotate("", xy=(p.latency_ms, p.accuracy_pct),
                        xytext=(src.latency_ms, src.accuracy_pct),
                        arrowprops={"arrowstyle": "->", "color": "#cbd5e1", "lw": 1,
                                        "shrinkA": 6, "shrinkB": 6})


def tradeoff_png(points: list[Point]) -> bytes:
    """Accuracy (%) against latency (ms), one labelled point per version."""
    return _figure_png(tradeoff_figure(points))


def tradeoff_figure(points: list[Point]) -> Figure:
    fig = Figure(figsize=(6.4, 3.8), dpi=110)
    ax = fig.add_subplot()
    _style(ax)
    _lineage(ax, points)
    xs = [p.latency_ms for p in points]
    ys = [p.accuracy_pct for p in points]
    ax.scatter(xs, ys, s=36, color=ACCENT, zorder=3)
    for i, p in enumerate(points):
        # alternate above/below so neighbours with close values do not overprint
        dy = 7 if i % 2 == 0 else -13
        # a version name is user text: "$x$" must read as typed, not as mathtext (which can crash)
        ax.annotate(p.name, (p.latency_ms, p.accuracy_pct), xytext=(6, dy), parse_math=False,
                    textcoords="offset points", fontsize=9, color="#111827")
    ax.set_xlabel("latency (ms) — lower is faster", fontsize=9, color="#374151")
    ax.set_ylabel("accuracy (%)", fontsize=9, color="#374151")
    ax.margins(x=0.15, y=0.2)
    return fig
