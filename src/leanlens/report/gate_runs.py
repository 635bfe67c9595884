"""The gate runs table: every recorded `ll.check`, newest first, each check's score against its threshold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leanlens.metrics.record import formatted
from leanlens.report.table import MISSING
from leanlens.store import GateRun

# checks that are not a method's similarity, each with how its score reads
FIGURES = {"accuracy": "percent", "agreement": "percent"}
FINGERPRINT_CHARS = 12


@dataclass(frozen=True)
class Outcome:
    """One check of one run, as shown: '0.953 ≥ 0.92'; passed is None when it was not recorded."""

    text: str
    passed: bool | None = None


@dataclass(frozen=True)
class RunRow:
    id: int
    created: str
    reference: str
    candidate: str  # shortened fingerprint
    candidate_full: str
    holds: bool
    outcomes: list[Outcome]  # one per column, in `GateTable.columns` order


@dataclass(frozen=True)
class GateTable:
    columns: list[str]  # methods, then accuracy and agreement where some run has them
    rows: list[RunRow]
    notes: list[str]


def _checks(run: GateRun) -> dict[str, dict]:
    """{check name: its JSON} of one run; entries that are not checks are skipped."""
    checks = run.verdict.get("checks") if isinstance(run.verdict, dict) else None
    if not isinstance(checks, list):
        return {}
    return {c["name"]: c for c in checks if isinstance(c, dict) and isinstance(c.get("name"), str)}


def _columns(runs: list[dict[str, dict]]) -> list[str]:
    names = dict.fromkeys(name for checks in runs for name in checks)
    return [n for n in names if n not in FIGURES] + [n for n in FIGURES if n in names]


def _outcome(check: dict | None, kind: str) -> Outcome:
    if check is None:
        return Outcome(MISSING)
    score = formatted(check.get("score"), kind)
    if score is None:
        return Outcome(MISSING)
    threshold = formatted(check.get("threshold"), kind)
    passed = check.get("passed") if isinstance(check.get("passed"), bool) else None
    if threshold is None:
        return Outcome(f"{score} (not gated)", passed)
    relation = {True: "≥", False: "<", None: "vs"}[passed]
    return Outcome(f"{score} {relation} {threshold}", passed)


def _when(created: str) -> str:
    try:
        return datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return str(created)  # shown as stored rather than hidden


def gate_table(runs: list[GateRun]) -> GateTable:
    """Rows for every gate run, newest first."""
    newest_first = sorted(runs, key=lambda r: r.id, reverse=True)
    checks = [_checks(r) for r in newest_first]
    columns = _columns(checks)
    rows = [RunRow(r.id, _when(r.created), r.reference, r.candidate[:FINGERPRINT_CHARS], r.candidate, r.holds,
                   [_outcome(c.get(name), FIGURES.get(name, "score")) for name in columns])
            for r, c in zip(newest_first, checks)]
    unreadable = [str(r.id) for r, c in zip(newest_first, checks) if not c]
    notes = [f"Runs without readable checks: {', '.join(unreadable)}."] if unreadable else []
    return GateTable(columns, rows, notes)

