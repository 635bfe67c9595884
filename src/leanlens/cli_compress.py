"""What `leanlens compress` writes and shows: the model file and a JSON summary, all or nothing;
with --store, the original and the compressed model recorded as `leanlens audit --store` records them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from leanlens.audit import audit, probe_set
from leanlens.cli_audit import Destination, record
from leanlens.compression import CompressionResult
from leanlens.data import Dataset
from leanlens.errors import BadInput
from leanlens.models.modelfile import save

MODEL_FILE, SUMMARY = "model.leanlens", "summary.json"
STORE_METHODS = ("gradcam++",)  # what `leanlens check` compares by default
HELD_OUT = 0.2  # share of DATA kept from pruning and fine-tuning: the guard's (and the store's) accuracy


def check_out(out: Path, force: bool) -> None:
    """Refuse, before minutes of pruning, an --out that cannot or may not be written."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} is a file, not a folder", "choose a folder for --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise BadInput(f"{out} is not empty", "pass --force to replace it, or choose another --out")
    if not out.parent.is_dir():
        raise BadInput(f"the folder {out.parent} does not exist", "create it, or choose another --out")


def write(result: CompressionResult, out: Path, before_done: Callable[[], object] = lambda: None) -> Path:
    """The compressed model (leanlens' model file) and the trajectory (JSON) in `out`: written in a
    temporary folder beside it and moved into place at the end, so a failure leaves no half.
    `before_done` (recording in a store) runs last before the move: if it fails, `out` stays as it was."""
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        save(result.model, staging / MODEL_FILE)
        (staging / SUMMARY).write_text(json.dumps(summary(result), indent=2))
        before_done()
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def summary(result: CompressionResult) -> dict:
    return {"budget": dataclasses.asdict(result.budget),
            "params_share": result.share("params"), "macs_share": result.share("macs"),
            "accuracy_drop_points": result.accuracy_drop,
            "trajectory": [dataclasses.asdict(step) | {"widths": dict(step.widths)} for step in result.trajectory]}


def record_in_store(where: Destination, original, result: CompressionResult, held: Dataset) -> list[str]:
    """The original (as v0 in a new store) and the compressed model, audited on the held-out data
    that guarded the compression, recorded with the trajectory's summary; the names written."""
    probe = probe_set(held) if where.probe is None else where.probe
    audited = audit(original, result.model, held, STORE_METHODS, probe=probe)
    return record(where, original, result.model, audited, probe, extra=store_metrics(result))


def store_metrics(result: CompressionResult) -> dict:
    """The summary as the store's scalar metrics: shares and drop as numbers, the trajectory as JSON text."""
    figures = summary(result)
    return {"compress_budget": str(result.budget), "compress_steps": len(result.trajectory) - 1,
            **{f"compress_{key}": figures[key] for key in ("params_share", "macs_share", "accuracy_drop_points")},
            "compress_trajectory": json.dumps(figures["trajectory"])}


def trajectory_table(result: CompressionResult) -> Table:
    table = Table(title="leanlens compress: one row a step (step 0 is the original)")
    for header in ("step", "removed a step", "params", "MACs", "ms (measured)", "held-out acc.", "Grad-CAM++ ρ to original"):
        table.add_column(header, justify="right")
    first = result.trajectory[0]
    for step in result.trajectory:
        similarity = "—" if step.similarity is None else f"{step.similarity:.3f}"
        table.add_row(str(step.step), f"{step.ratio:.0%}", f"{step.params:,} ({step.params / first.params:.0%})",
                      f"{step.macs:,} ({step.macs / first.macs:.0%})", f"{step.latency_ms:.2f}", f"{step.accuracy:.1%}",
                      similarity)
    return table
