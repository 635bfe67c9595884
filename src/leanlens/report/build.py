"""`report()`: one self-contained HTML page summarising a store."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from leanlens.audit import ModelFigures
from leanlens.errors import BadInput, BadOption
from leanlens.metrics import ExplanationScores
from leanlens.metrics.record import number
from leanlens.report import figures, history, html, schemes, table
from leanlens.report.gate_runs import gate_table
from leanlens.report.grid import heatmap_grid
from leanlens.report.sections import attachment_sections
from leanlens.store import Store, Version
from leanlens.store.opened import opened


def _text_option(value, name: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadOption(f"{name}={value!r} is not a non-empty string", f"pass e.g. {name}={example!r}")
    return value


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
        seen = ModelFigures.from_json(v.metrics)
        acc, lat = number(seen.accuracy), number(seen.latency_ms)
        if acc is None or lat is None:
            left_out.append(v.name)
        else:
            points.append(figures.Point(v.name, lat, 100 * acc, v.parent))
    notes = [f"Not plotted, accuracy or latency missing: {', '.join(left_out)}."] if left_out else []
    if not points:
        return None, notes
    return figures.data_uri(figures.tradeoff_png(points)), notes


def _settings(versions: list[Version], method: str) -> ExplanationScores:
    """The scoring settings (tolerance, k) of the first version scored with `method`."""
    return next((v.scores[method] for v in versions if method in v.scores), ExplanationScores())


def _context(store: Store, method: str, title: str) -> dict:
    """Everything the template shows, already formatted."""
    versions = store.versions()
    cols = table.columns(method)
    top, sub = table.headers(cols)
    tradeoff_src, tradeoff_notes = _tradeoff(versions)
    scoring = _settings(versions, method)
    past = history.history(store, versions, top_k_fraction=scoring.top_k_fraction)
    history_top, history_sub, history_rows = history.table(past)
    return {
        "title": title,
        "store_path": str(Path(store.path).resolve()),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "method": method,
        "header_top": top,
        "header_sub": sub,
        "rows": table.rows(versions, cols),
        "schemes": schemes.comparisons(versions),
        "missing": table.MISSING,
        "grid": heatmap_grid(store, versions, method),
        "colorbar": figures.colorbar_css(),
        "outline_color": figures.OUTLINE_HEX,
        "tradeoff_src": tradeoff_src,
        "tradeoff_notes": tradeoff_notes,
        "scoring": scoring,
        "history": past,
        "history_top": history_top,
        "history_sub": history_sub,
        "history_rows": history_rows,
        "history_notes": past.notes,
        "history_plot": history.plot(past),
        "gate": gate_table(store.gate_runs()),
        "attachments": attachment_sections(store, versions),
    }


def report(source, out_dir, *, method: str = "gradcam++", title: str = "leanlens report") -> Path:
    """Write `out_dir/index.html`, a self-contained page about the store's versions.

    The page holds the versions table, their history against the first version (accuracy,
    speed-ups, each method's similarity as the gate `ll.check` reads it), every recorded gate
    run, the heatmap grid of `method` and the accuracy/latency plot.

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
    with opened(source) as store:
        page = html.render(_context(store, method, title))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"cannot create {out}: {error.strerror}", "pass a folder you can write to") from None
    return _write_new(out / "index.html", page)


def _write_new(path: Path, text: str) -> Path:
    """Write then rename, so a reader never sees a half-written page.

    The temporary file gets a fresh name that mkstemp creates exclusively: a file or
    symlink someone planted under a predictable name is never written through.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
