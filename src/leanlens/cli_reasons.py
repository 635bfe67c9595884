"""`leanlens reasons MODEL DATA.csv --target COLUMN`: reason codes for every row of a CSV, as CSV or JSON.

With `--store S --name V` the model is also recorded in a store as version V with three
attachments the report draws: the reason codes (summary and first rows), permutation
importance against the target column, and a depth-3 surrogate tree with its fidelity.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from leanlens.cli import (
    RAY_HELP,
    ReplaceOut,
    _progress,
    _refused,
    _stage,
    console,
    refuse_to_replace,
)
from leanlens.errors import BadInput, BadOption, LeanlensError

FORMATS = (".csv", ".json")
SUMMARY_ROWS = 5  # features a decision in the printed summary


def reasons(
    model: Annotated[Path, typer.Argument(help="a .skops file (scikit-learn), an XGBoost .json or .ubj, an .onnx file "
                                              "or a file from ll.save")],
    data: Annotated[Path, typer.Argument(help="a CSV with a header row: the model's columns and the target")],
    target: Annotated[str, typer.Option("--target", help="the CSV column holding the true outcome (not fed to the model)")],
    top: Annotated[int, typer.Option("--top", help="reasons a row")] = 4,
    out: Annotated[Path, typer.Option("--out", help="where to write the reason codes: .csv or .json")] = Path("reasons.csv"),
    background: Annotated[int, typer.Option("--background", help="rows of DATA standing for 'typical' (KernelSHAP)")] = 20,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="load a pickled estimator (runs its code)")] = False,
    force: ReplaceOut = False,
    store: Annotated[Path | None, typer.Option("--store", help="also record the model with its reason codes, "
                                                "importance and surrogate tree in this store (for the report)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="the new version's name in --store")] = None,
    ray: Annotated[bool, typer.Option("--ray", help=RAY_HELP)] = False,
) -> None:
    """Explain every decision of a tabular model: the decision, its score and the top reasons behind it."""
    from leanlens.insight import reasons as run_reasons
    from leanlens.insight.files import load_tabular_model

    try:
        _check_out(out, force)
        _check_destination(store, name)
        rows, truth = read_csv(data, target)
        loaded = load_tabular_model(model, trust_pickle=trust_pickle)
        if background < 1:
            raise BadOption(f"--background {background}", "pass a positive number of rows, e.g. 20")
        typical = _sample(rows, background)
        forward_only = not hasattr(loaded, "get_params")
        if forward_only:
            rows = _numeric(rows, model)
        with _progress(transient=True, disable=not console.is_terminal) as progress:
            advance = _stage(progress)("explaining rows", len(rows))
            codes = run_reasons(loaded, rows, top=top, on_progress=advance, engine="ray" if ray else None,
                                background=None if _is_tree(loaded) else typical)
            attachments = None if store is None else _global_results(loaded, rows, truth, codes, _stage(progress))
        write(codes, out)
        if store is not None:
            record(store, name, model, accuracy=_agreement(codes, truth), attachments=attachments)
    except LeanlensError as error:
        raise _refused(error) from None
    _print_summary(codes, truth, forward_only, target)
    console.print(f"written: {escape(str(out))} ({len(codes)} rows)")


def read_csv(path: Path, target: str):
    """The CSV's feature columns (a DataFrame) and its target column."""
    import pandas as pd

    if not path.is_file():
        raise BadInput(f"no data file at {str(path)!r}", "pass a CSV file with a header row")
    try:
        frame = pd.read_csv(path)
    except Exception as error:  # noqa: BLE001 - pandas raises parser, encoding and empty-data errors
        from leanlens.models.architecture import first_line

        raise BadInput(f"cannot read {path.name} as CSV: {first_line(error)}", "pass a comma-separated file with a header row") from None
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:8])) + (", ..." if frame.shape[1] > 8 else "")
        raise BadInput(f"{path.name} has no column {target!r}", f"pass --target with one of its columns: {shown}")
    if frame.shape[1] < 2 or len(frame) == 0:
        raise BadInput(f"{path.name} has no rows or no feature columns besides {target!r}", "pass the model's data")
    return frame.drop(columns=target), frame[target].to_numpy()


def write(codes, out: Path) -> Path:
    """Reason codes to `out` (.csv: one line a row; .json: rows and summary), all or nothing."""
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
            if out.suffix.lower() == ".json":
                json.dump({"method": codes.method, "space": codes.space, "rows": codes.records(),
                           "summary": {str(k): v for k, v in codes.summary().items()}}, stream)
            else:
                columns = codes.columns()
                writer = csv.writer(stream)
                writer.writerow(columns)
                writer.writerows(zip(*columns.values()))
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return out


def _check_out(out: Path, force: bool) -> None:
    if out.suffix.lower() not in FORMATS:
        raise BadOption(f"--out {out.name} is neither .csv nor .json", "name the file reasons.csv or reasons.json")
    refuse_to_replace(out, force)
    if not out.parent.is_dir():
        raise BadInput(f"no folder {str(out.parent)!r} for --out", "create it first, or choose another --out")


def _sample(rows, size: int):
    """`size` rows of the data (seeded), the background KernelSHAP takes absent features from."""
    from leanlens.insight.kernel import background_indices

    return rows.iloc[background_indices(len(rows), size)]


def _is_tree(model) -> bool:
    from leanlens.insight.treeshap import is_tree_model

    return is_tree_model(model)


def _numeric(rows, model: Path):
    """A forward-only model file holds no encoder: every column must already be a number."""
    from leanlens.insight.tabular import is_numeric_column

    text = [str(c) for c in rows.columns if not is_numeric_column(rows[c])]
    if text:
        raise BadInput(f"column {text[0]!r} holds text, and {model.name} holds no encoder for it",
                       "save a scikit-learn pipeline that encodes it as .skops, or encode the column as numbers")
    return rows


def _print_summary(codes, truth, forward_only: bool, target: str) -> None:
    how = "KernelSHAP (the model is forward-only)" if forward_only else (
        "exact TreeSHAP" if codes.method == "treeshap" else "KernelSHAP against a background")
    console.print(f"reasons by {how}; contributions in {codes.space}, toward each row's decision")
    console.print(f"decisions equal to {escape(target)} on {_agreement(codes, truth):.1%} of {len(codes)} rows")
    for decision, cited in codes.summary().items():
        table = Table(title=f"decision {escape(str(decision))}: reasons cited")
        for header in ("feature", "first reason", "in the top"):
            table.add_column(header, justify="left" if header == "feature" else "right")
        for feature, first, anywhere in cited[:SUMMARY_ROWS]:
            table.add_row(escape(feature), str(first), str(anywhere))
        console.print(table)


def _agreement(codes, truth) -> float:
    """The share of rows whose decision is the target column's value."""
    return float(np.mean(np.asarray(codes.decisions).astype(str) == np.asarray(truth).astype(str)))


def _check_destination(store: Path | None, name: str | None) -> None:
    """--store and --name go together; the name must be new in an existing store (checked before any work)."""
    from leanlens.store import Store

    if (store is None) != (name is None):
        raise BadOption("--store and --name go together", "pass both to record the version, or neither")
    if store is None or not store.exists():
        return
    with Store(store) as opened:
        if name in [v.name for v in opened.versions()]:
            raise BadInput(f"version {name!r} already exists in {store}", "pick a new --name")


def _global_results(model, rows, truth, codes, stage) -> list[tuple[str, dict]]:
    """(kind, payload) of the reason codes, permutation importance against the target, and a surrogate tree."""
    from leanlens.insight import global_surrogate, permutation_importance, to_payload

    importance = permutation_importance(model, rows, truth, n_repeats=5, random_state=0,
                                        on_progress=stage("permutation importance", rows.shape[1]))
    return [to_payload(codes), to_payload(importance), to_payload(global_surrogate(model, rows))]


def record(path: Path, name: str, model: Path, *, accuracy: float, attachments: list[tuple[str, dict]]) -> None:
    """Version `name` (fingerprinted by the model file's bytes) with its attachments; a store this
    call created is removed again if anything fails, so a refusal leaves nothing behind."""
    from leanlens.cli_audit import undone_if_new
    from leanlens.store import Store

    with undone_if_new(path), Store(path) as opened:
        fingerprint = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
        opened.record(name, fingerprint=fingerprint, metrics={"accuracy": accuracy})
        for kind, payload in attachments:
            opened.attach(name, kind, payload)
