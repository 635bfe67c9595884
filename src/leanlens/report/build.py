"""`report()`: one self-contained HTML page summarising a store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from leanlens.errors import BadInput, BadOption
from leanlens.report import figures, html, table
from leanlens.report.grid import heatmap_grid
from leanlens.store import Store, Version


def _text_option(value, name: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadOption(f"{name}={value!r} is not a non-empty string", f"pass e.g. {name}={example!r}")
    return value


@contextmanager
def _opened(source) -> Iterator[Store]:
    """The store to read; one opened here from a path is also closed here."""
    if isinstance(source, Store):
        yield source  # the caller's store: theirs to close
        return
    if not isinstance(source, (str, os.PathLike)):
        raise BadInput(f"source is a {type(source).__name__}, not a Store or a path",
                       "pass leanlens.store.Store(path) or the path of a store file")
    path = Path(source)
    # Store() would silently create a new, empty file, and report on nothing
    if not path.exists():
        raise BadInput(f"no store file at {path}", "check the path; stores are made by "
                       "leanlens.store.Store(path) when versions are recorded")
    with Store(path) as store:
        yield store


def _out_folder(out_dir) -> Path:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise BadInput(f"out_dir is a {type(out_dir).__name__}, not a path",
                       "pass a folder name, e.g. 'runs/report'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"out_dir {out} is a file", "pass a folder; index.html is written in it")
    return out


def _tradeoff(versions: list[Version]) -> tuple[str | None, list[str]]:
    """The accuracy/latency plot as a data URI (None if nothing to plot), and notes."""
    points, left_out = [], []
    for v in versions:
        acc, lat = table.number(v.metrics.get("accuracy")), table.number(v.metrics.get("latency_ms"))
        if acc is None or lat is None:
            left_out.append(v.name)
        else:
            points.append(figures.Point(v.name, lat, 100 * acc, v.parent))
    notes = [f"Not plotted, accuracy or latency missing: {', '.join(left_out)}."] if left_out else []
    if not points:
        return None, notes
    return figures.data_uri(figures.tradeoff_png(points)), notes


def _context(store: Store, method: str, title: str) -> dict:
    """Everything the template shows, already formatted."""
    versions = store.versions()
    cols = table.columns(method)
    top, sub = table.headers(cols)
    tradeoff_src, tradeoff_notes = _tradeoff(versions)
    return {
        "title": title,
        "store_path": str(Path(store.path).resolve()),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "method": method,
        "header_top": top,
        "header_sub": sub,
        "rows": table.rows(versions, cols),
        "missing": table.MISSING,
        "grid": heatmap_grid(store, versions, method),
        "colorbar": figures.colorbar_css(),
        "outline_color": figures.OUTLINE_HEX,
        "tradeoff_src": tradeoff_src,
        "tradeoff_notes": tradeoff_notes,
        "pointing_tolerance": next(
            (v.metrics["pointing_tolerance"] for v in versions if "pointing_tolerance" in v.metrics), 0
        ),
    }


def report(source, out_dir, *, method: str = "gradcam++", title: str = "leanlens report") -> Path:
    """Write `out_dir/index.html`, a self-contained page about the store's versions.

    Parameters
    ----------
    source : a `leanlens.store.Store`, or the path of a store file.
    out_dir : folder to write into; created if needed.
    method : the explanation method whose maps and similarity scores are shown.
    title : the page's heading.

    Returns the path of the page. It embeds every image as a data URI and loads
    nothing from the network, so it can be mailed or archived as one file.
    """
    method = _text_option(method, "method", "gradcam++")
    title = _text_option(title, "title", "pruning run 3")
    out = _out_folder(out_dir)
    with _opened(source) as store:
        page = html.render(_context(store, method, title))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    # write then rename, so a reader never sees a half-written page
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
