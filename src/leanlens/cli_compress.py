"""What `leanlens compress` writes and shows: the model file and a JSON summary, all or nothing."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from rich.table import Table

from leanlens.compression import CompressionResult
from leanlens.errors import BadInput
from leanlens.models.modelfile import save

MODEL_FILE, SUMMARY = "model.leanlens", "summary.json"


def check_out(out: Path, force: bool) -> None:
    """Refuse, before minutes of pruning, an --out that cannot or may not be written."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} is a file, not a folder", "choose a folder for --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise BadInput(f"{out} is not empty", "pass --force to replace it, or choose another --out")
    if not out.parent.is_dir():
        raise BadInput(f"the folder {out.parent} does not exist", "create it, or choose another --out")


def write(result: CompressionResult, out: Path) -> Path:
    """The compressed model (leanlens' model file) and the trajectory (JSON) in `out`: written in a
    temporary folder beside it and moved into place at the end, so a failure leaves no half."""
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        save(result.model, staging / MODEL_FILE)
        (staging / SUMMARY).write_text(json.dumps(summary(result), indent=2))
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


def trajectory_table(result: CompressionResult) -> Table:
    table = Table(title="leanlens compress: one row a step (step 0 is the original)")
    for header in ("step", "removed a step", "params", "MACs", "held-out acc.", "Grad-CAM++ ρ to original"):
        table.add_column(header, justify="right")
    first = result.trajectory[0]
    for step in result.trajectory:
        similarity = "—" if step.similarity is None else f"{step.similarity:.3f}"
        table.add_row(str(step.step), f"{step.ratio:.0%}", f"{step.params:,} ({step.params / first.params:.0%})",
                      f"{step.macs:,} ({step.macs / first.macs:.0%})", f"{step.accuracy:.1%}", similarity)
    return table
