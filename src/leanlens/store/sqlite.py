"""The Store: model versions and their explanations on one fixed probe set."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import numpy as np

from leanlens.errors import BadInput, closest
from leanlens.metrics import ExplanationScores, score_explanations
from leanlens.store.arrays import decode, encode, to_numpy
from leanlens.store.attachments import Attachment, check_kind, payload_json
from leanlens.store.errors import error_from_json, error_json
from leanlens.store.records import (
    Explained,
    GateRun,
    Probe,
    Version,
    clean_metrics,
    options_json,
)
from leanlens.store.schema import connect, read_only_error, transaction

_PARTS = ("x", "y", "masks", "held_out")


def _check_name(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput(f"{what} {value!r} is not a non-empty string",
                       f"pass the {what} as text, e.g. 'v2'")
    return value


class Store:
    """An SQLite file of model versions, compared on a fixed probe set.

    Arrays are kept as dtype, shape and raw bytes, never pickled. A store whose file or
    folder is not writable opens read-only: it can be read, and writing to it says why not.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._conn, self.read_only = connect(self.path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _writing(self):
        """A write transaction; a read-only store refuses before anything else happens."""
        if self.read_only:
            raise read_only_error(self.path, "its file or folder is not writable")
        return transaction(self._conn, self.path)

    # probe set -----------------------------------------------------------

    def _probe_rows(self) -> dict[str, tuple[str, str, bytes]]:
        rows = self._conn.execute("SELECT part, dtype, shape, data FROM probe")
        return {part: (dtype, shape, bytes(data)) for part, dtype, shape, data in rows}

    def set_probe(self, x, y=None, masks=None, *, held_out=None) -> None:
        """Fix the probe set; setting the same arrays again does nothing.

        `held_out` (bool, one a sample; see `held_out_split`) marks the samples replay
        never trains on; by default every sample is held out.
        """
        x = to_numpy(x)
        held_out = np.ones(x.shape[:1], bool) if held_out is None else held_out
        new = {part: encode(arr, f"probe {part}")
               for part, arr in zip(_PARTS, (x, y, masks, held_out)) if arr is not None}
        self._check_probe(new)
        if self.read_only and self._probe_rows() == new:
            return
        with self._writing():
            old = self._probe_rows()
            if old == new:
                return
            if old:
                raise BadInput(f"{self.path} already has a different probe set",
                               "use a new store for a new probe set")
            self._conn.executemany(
                "INSERT INTO probe (part, dtype, shape, data) VALUES (?, ?, ?, ?)",
                [(part, *row) for part, row in new.items()])

    @staticmethod
    def _check_probe(rows: dict[str, tuple[str, str, bytes]]) -> None:
        sizes = {part: json.loads(shape)[:1] for part, (_, shape, _) in rows.items()}
        if sizes["x"] in ([], [0]):
            raise BadInput("probe x has no samples", "pass a batch-first array, (N, ...)")
        if any(n != sizes["x"] for n in sizes.values()):
            raise BadInput(f"probe parts differ in length: {sizes}",
                           "x, y, masks and held_out need one entry per sample")
        dtype, shape, _ = rows["held_out"]
        if dtype != "|b1" or len(json.loads(shape)) != 1:
            raise BadInput(f"held_out has dtype {np.dtype(dtype)} and shape {tuple(json.loads(shape))}",
                           "pass one bool a sample, e.g. held_out_split(y)")

    def probe(self, part: str = "all") -> Probe:
        """The probe set, or its 'held_out' or 'replay' part; BadInput if none was set."""
        rows = self._probe_rows()
        if "x" not in rows:
            raise BadInput(f"{self.path} has no probe set yet",
                           "call set_probe(x, y, masks) first")
        parts = {part: decode(*row) for part, row in rows.items()}
        return Probe(**parts).part(part)

    def _probe_size(self, what: str) -> int:
        row = self._conn.execute("SELECT shape FROM probe WHERE part = 'x'").fetchone()
        if row is None:
            raise BadInput(f"{what} given but {self.path} has no probe set",
                           "call set_probe(x) before recording explanations")
        return json.loads(row[0])[0]

    # recording -----------------------------------------------------------

    def _encode_on_probe(self, arr, what: str) -> tuple[str, str, bytes]:
        """Encode an array computed on the probe set, checking its length."""
        row = encode(arr, what)
        shape, n = json.loads(row[1]), self._probe_size(what)
        if shape[:1] != [n]:
            raise BadInput(f"{what} has shape {tuple(shape)}, but the probe has {n} samples",
                           "compute it on store.probe().x, batch first")
        return row

    def _target_json(self, target, method: str) -> str | None:
        if target is None:
            return None
        target = np.asarray(target)
        if target.dtype.kind not in "iu" or target.shape != (self._probe_size("target"),):
            raise BadInput(f"explanation {method!r} has targets of shape {target.shape} and dtype {target.dtype}",
                           "give one class index per probe sample")
        return json.dumps(target.tolist())

    def _explanation_row(self, method, explanation, scores) -> tuple:
        """(method, dtype, shape, data, target, options, scores, error) for an array or an Explanation."""
        method = _check_name(method, "method")
        # an Explanation brings what reproduces it; a bare array only its values
        values = getattr(explanation, "values", explanation)
        target = self._target_json(getattr(explanation, "target", None), method)
        options = options_json(getattr(explanation, "options", {}))
        return (method, *self._encode_on_probe(values, f"explanation {method!r}"), target, options,
                json.dumps(scores.to_json() if scores is not None else {}),
                error_json(getattr(explanation, "error", None)))

    def _encode_explanations(self, explanations, scores) -> list[tuple]:
        explanations = {} if explanations is None else explanations
        scores = {} if scores is None else scores
        for what, given in (("explanations", explanations), ("scores", scores)):
            if not isinstance(given, Mapping):
                raise BadInput(f"{what} is a {type(given).__name__}, not a mapping", f"pass {{method name: {what}}}")
        if unknown := sorted(set(scores) - set(explanations)):
            raise BadInput(f"scores for {unknown} but no explanation of that method",
                           "record each method's explanation with its scores")
        if bad := [m for m, s in scores.items() if not isinstance(s, ExplanationScores)]:
            raise BadInput(f"scores of {bad} are not ExplanationScores", "pass the records audit() computes")
        return [self._explanation_row(m, e, scores.get(m)) for m, e in explanations.items()]

    def record(self, name, *, fingerprint, metrics, explanations=None, predictions=None, parent=None,
               scores=None) -> Version:
        """Store a new version with its explanations, all or nothing.

        `explanations` maps a method to an `Explanation` (its targets and options are kept)
        or to a bare array; `scores` maps a method to its `ExplanationScores`.
        """
        version = Version(
            name=_check_name(name, "version name"),
            created=datetime.now(UTC).isoformat(),
            fingerprint=_check_name(fingerprint, "fingerprint"),
            metrics=clean_metrics(metrics),
            parent=None if parent is None else _check_name(parent, "parent"),
            scores=dict(scores or {}),
            errors={m: e.error for m, e in (explanations or {}).items() if getattr(e, "error", None) is not None},
        )
        # encode everything before writing, so a bad array fails before the transaction
        rows = self._encode_explanations(explanations, scores)
        preds = None if predictions is None else self._encode_on_probe(predictions,
                                                                        "predictions")
        with self._writing():
            vid = self._insert_version(version)
            self._insert_explanations(vid, rows)
            if preds is not None:
                self._insert_predictions(vid, preds)
        return version

    def record_assessment(self, name, model, result, *, parent=None, extra=None) -> Version:
        """Record `model` with an `assess()` or `audit()` result of it, as version `name`.

        Keeps the result's figures, each method's explanation with its targets, options and
        scores, and the model's predictions on the probe set; the fingerprint is the model's.
        `extra` holds more scalar metrics to keep beside the figures (how the model was made).
        """
        from leanlens.audit import fingerprint

        explanations = result.explanations
        first = next(iter(explanations.values()), None)
        metrics = {**result.figures().to_json(), **(extra or {})}
        return self.record(name, fingerprint=fingerprint(model), metrics=metrics,
                           explanations=explanations, scores=result.scores, parent=parent,
                           predictions=None if first is None else first.predictions)

    def _insert_version(self, v: Version) -> int:
        names = self._names()
        if v.name in names:
            raise BadInput(f"version {v.name!r} already exists in {self.path}",
                           "pick a new name")
        if v.parent is not None and v.parent not in names:
            raise BadInput(f"parent {v.parent!r} is not a recorded version",
                           closest(v.parent, names) if names else "record the parent first")
        cur = self._conn.execute(
            "INSERT INTO versions (name, created, fingerprint, metrics, parent) "
            "VALUES (?, ?, ?, ?, ?)",
            (v.name, v.created, v.fingerprint, json.dumps(v.metrics), v.parent))
        return cur.lastrowid

    def _insert_explanations(self, vid: int, rows) -> None:
        self._conn.executemany(
            "INSERT INTO explanations (version_id, method, dtype, shape, data, target, options, scores, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [(vid, *row) for row in rows])

    def _insert_predictions(self, vid: int, row) -> None:
        self._conn.execute(
            "INSERT INTO predictions (version_id, dtype, shape, data) VALUES (?, ?, ?, ?)",
            (vid, *row))

    # reading -------------------------------------------------------------

    def _names(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT name FROM versions ORDER BY id")]

    def _id(self, name) -> int:
        row = self._conn.execute("SELECT id FROM versions WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = self._names()
            raise BadInput(f"no version {name!r} in {self.path}",
                           closest(str(name), names) if names else "nothing recorded yet")
        return row[0]

    def _version(self, row) -> Version:
        vid, name, created, fingerprint, metrics, parent = row
        rows = self._conn.execute(
            "SELECT method, scores, error FROM explanations WHERE version_id = ? ORDER BY rowid", (vid,)).fetchall()
        scores = {method: ExplanationScores.from_json(json.loads(text)) for method, text, _ in rows}
        errors = {method: error_from_json(error) for method, _, error in rows if error is not None}
        return Version(name, created, fingerprint, json.loads(metrics), parent, scores, errors)

    def versions(self) -> list[Version]:
        """Every version, in the order recorded."""
        rows = self._conn.execute(
            "SELECT id, name, created, fingerprint, metrics, parent FROM versions ORDER BY id").fetchall()
        return [self._version(r) for r in rows]

    def version(self, name) -> Version:
        """One version by name."""
        row = self._conn.execute(
            "SELECT id, name, created, fingerprint, metrics, parent FROM versions WHERE id = ?",
            (self._id(name),)).fetchone()
        return self._version(row)

    def explanations(self, name) -> dict[str, np.ndarray]:
        """All explanations of a version, {method: array}, in the order recorded."""
        rows = self._conn.execute(
            "SELECT method, dtype, shape, data FROM explanations WHERE version_id = ? "
            "ORDER BY rowid", (self._id(name),))
        return {method: decode(dtype, shape, data) for method, dtype, shape, data in rows}

    def explained(self, name, method) -> Explained:
        """One explanation of a version with its targets, options and scores."""
        vid = self._id(name)
        row = self._conn.execute(
            "SELECT dtype, shape, data, target, options, scores, error FROM explanations "
            "WHERE version_id = ? AND method = ?", (vid, method)).fetchone()
        if row is None:
            stored = [r[0] for r in self._conn.execute(
                "SELECT method FROM explanations WHERE version_id = ?", (vid,))]
            raise BadInput(f"version {name!r} has no {method!r} explanation",
                           closest(str(method), stored) if stored
                           else "it was recorded without explanations")
        *array, target, options, scores, error = row
        return Explained(method, decode(*array), None if target is None else np.asarray(json.loads(target)),
                         json.loads(options), ExplanationScores.from_json(json.loads(scores)), error_from_json(error))

    def explanation(self, name, method) -> np.ndarray:
        """One explanation of a version."""
        return self.explained(name, method).values

    def predictions(self, name) -> np.ndarray | None:
        """The version's predictions on the probe set, or None if not recorded."""
        row = self._conn.execute(
            "SELECT dtype, shape, data FROM predictions WHERE version_id = ?",
            (self._id(name),)).fetchone()
        return None if row is None else decode(*row)

    def compare(self, a, b, method, *, top_k_fraction: float = 0.1) -> ExplanationScores:
        """How version b's explanations agree with version a's, means over the held-out probe samples
        (replay may have trained on the others, so agreement there proves nothing)."""
        held = self.probe().held_out
        return score_explanations(self.explanation(b, method)[held], reference=self.explanation(a, method)[held],
                                  top_k_fraction=top_k_fraction)

    # gate runs -----------------------------------------------------------

    def record_gate_run(self, *, reference, candidate, holds: bool, verdict) -> GateRun:
        """Keep one run of the gate, in one transaction; the versions it read are left as they are."""
        run = GateRun(0, datetime.now(UTC).isoformat(), _check_name(reference, "reference"),
                      _check_name(candidate, "candidate fingerprint"), bool(holds), dict(verdict))
        text = json.dumps(run.verdict)  # before the transaction: a verdict that is not JSON fails first
        with self._writing():
            self._id(reference)
            cur = self._conn.execute(
                "INSERT INTO gate_runs (created, reference, candidate, holds, verdict) VALUES (?, ?, ?, ?, ?)",
                (run.created, run.reference, run.candidate, int(run.holds), text))
        return replace(run, id=cur.lastrowid)

    def gate_runs(self) -> list[GateRun]:
        """Every gate run, oldest first."""
        rows = self._conn.execute(
            "SELECT id, created, reference, candidate, holds, verdict FROM gate_runs ORDER BY id")
        return [GateRun(i, created, ref, cand, bool(holds), json.loads(verdict))
                for i, created, ref, cand, holds, verdict in rows]

    # attachments -----------------------------------------------------------

    def attach(self, name, kind: str, payload: Mapping) -> Attachment:
        """Keep a JSON `payload` of `kind` (importance, reason codes, ...) with version `name`."""
        kind, created = check_kind(kind), datetime.now(UTC).isoformat()
        text = payload_json(payload)  # before the transaction: a payload that is not JSON fails first
        with self._writing():
            self._conn.execute("INSERT INTO attachments (version_id, kind, created, payload) VALUES (?, ?, ?, ?)",
                               (self._id(name), kind, created, text))
        return Attachment(kind, created, json.loads(text))  # as it reads back

    def attachments(self, name, kind: str | None = None) -> list[Attachment]:
        """The version's attachments (of `kind` only, when given), in the order attached."""
        rows = self._conn.execute("SELECT kind, created, payload FROM attachments WHERE version_id = ? "
                                  "AND (? IS NULL OR kind = ?) ORDER BY id", (self._id(name), kind, kind))
        return [Attachment(k, created, json.loads(payload)) for k, created, payload in rows]
