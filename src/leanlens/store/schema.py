"""Opening an SQLite file as a leanlens store: create the schema or check it."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from leanlens.errors import BadInput

# 'LLNS' in the file header tells our stores apart from any other SQLite file
APPLICATION_ID = 0x4C4C4E53
# 2: each explanation keeps its targets, options and scores (version 1 kept the array only)
# 3: the probe set has a held-out part (a 'held_out' row), and gate runs are kept
# 4: versions carry attachments, results that are not per-sample maps (importance, reason codes)
# 5: each explanation keeps its numerical error (Explanation.error, JSON; NULL where none)
SCHEMA_VERSION = 5

_TABLES = {
    "probe": """CREATE TABLE probe (
        part TEXT PRIMARY KEY CHECK (part IN ('x', 'y', 'masks', 'held_out')),
        dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL)""",
    "versions": """CREATE TABLE versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        metrics TEXT NOT NULL,
        parent TEXT REFERENCES versions(name))""",
    "explanations": """CREATE TABLE explanations (
        version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
        method TEXT NOT NULL,
        dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
        target TEXT, options TEXT NOT NULL DEFAULT '{}', scores TEXT NOT NULL DEFAULT '{}', error TEXT,
        PRIMARY KEY (version_id, method))""",
    "predictions": """CREATE TABLE predictions (
        version_id INTEGER PRIMARY KEY REFERENCES versions(id) ON DELETE CASCADE,
        dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL)""",
    "gate_runs": """CREATE TABLE gate_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,
        reference TEXT NOT NULL REFERENCES versions(name),
        candidate TEXT NOT NULL,
        holds INTEGER NOT NULL CHECK (holds IN (0, 1)),
        verdict TEXT NOT NULL)""",
    "attachments": """CREATE TABLE attachments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        created TEXT NOT NULL,
        payload TEXT NOT NULL)""",
}


# what version 1 lacks, added in place by _migrate
_V2_COLUMNS = ("target TEXT", "options TEXT NOT NULL DEFAULT '{}'", "scores TEXT NOT NULL DEFAULT '{}'")


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path):
    """All-or-nothing writes: commit on success, roll back on any exception."""
    # the connection is in autocommit mode, so BEGIN is ours to issue; `with conn`
    # then commits or rolls back, and DDL is covered too
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
    except sqlite3.OperationalError as e:
        # permissions can change under an open store; anything else is not the user's doing
        if "readonly" not in str(e):
            raise
        raise read_only_error(path, "SQLite cannot write to it") from None


def read_only_error(path: Path, why: str) -> BadInput:
    return BadInput(f"{path} is read-only ({why}), so nothing can be recorded in it",
                    "make the file and its folder writable, or copy the store to a writable folder")


def _not_a_store(path: Path, why: str) -> BadInput:
    return BadInput(f"{path} is not a leanlens store ({why})",
                    "pass a new file name, or a file made by leanlens.store.Store")


def _header(conn: sqlite3.Connection) -> tuple[int, int, set[str]]:
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    ver = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return app, ver, tables


def _is_blank(app: int, ver: int, tables: set[str]) -> bool:
    return app == 0 and ver == 0 and not tables


def _create(conn: sqlite3.Connection, path: Path) -> None:
    with transaction(conn, path):
        # read again under the write lock: another process may have created it
        if not _is_blank(*_header(conn)):
            return
        for sql in _TABLES.values():
            conn.execute(sql)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# version 1 kept per-method figures in a version's metrics as "name[method]"; version 2 keeps
# them with the explanation they describe, under these names
_V1_SCORE_KEYS = {"spearman": "spearman", "top10": "top_k", "pointing": "pointing_game"}
_V1_KEY = re.compile(r"^(spearman|top10|pointing)\[(.+)\]$")


def _to_v2(conn: sqlite3.Connection) -> None:
    for column in _V2_COLUMNS:
        conn.execute(f"ALTER TABLE explanations ADD COLUMN {column}")
    for vid, metrics in conn.execute("SELECT id, metrics FROM versions").fetchall():
        _move_v1_scores(conn, vid, json.loads(metrics))


def _move_v1_scores(conn: sqlite3.Connection, vid: int, metrics: dict) -> None:
    """Move a version's "name[method]" figures to its explanation of that method; a figure whose
    explanation was never stored stays in the metrics, so no value is lost."""
    methods = {row[0] for row in conn.execute("SELECT method FROM explanations WHERE version_id = ?", (vid,))}
    scores: dict[str, dict] = {}
    for key in list(metrics):
        match = _V1_KEY.match(key)
        if match and match.group(2) in methods:
            name, method = match.groups()
            scores.setdefault(method, {"top_k_fraction": 0.1})[_V1_SCORE_KEYS[name]] = metrics.pop(key)
    for method, figures in scores.items():
        conn.execute("UPDATE explanations SET scores = ? WHERE version_id = ? AND method = ?",
                     (json.dumps(figures), vid, method))
    if scores:
        conn.execute("UPDATE versions SET metrics = ? WHERE id = ?", (json.dumps(metrics), vid))


def _to_v3(conn: sqlite3.Connection) -> None:
    """Widen the probe table's CHECK (SQLite rebuilds a table for that) and mark every probe held out:
    nothing was trained on a version 2 store's probes as replay."""
    conn.execute("ALTER TABLE probe RENAME TO probe_v2")
    conn.execute(_TABLES["probe"])
    conn.execute("INSERT INTO probe SELECT part, dtype, shape, data FROM probe_v2")
    conn.execute("DROP TABLE probe_v2")
    row = conn.execute("SELECT shape FROM probe WHERE part = 'x'").fetchone()
    if row is not None:
        n = json.loads(row[0])[0]
        conn.execute("INSERT INTO probe VALUES ('held_out', '|b1', ?, ?)", (json.dumps([n]), b"\x01" * n))
    conn.execute(_TABLES["gate_runs"])


def _to_v4(conn: sqlite3.Connection) -> None:
    """A table of attachments: an older store has none, so nothing moves."""
    conn.execute(_TABLES["attachments"])


def _to_v5(conn: sqlite3.Connection) -> None:
    """Explanations recorded before error bars were kept have none: NULL, as for a method without one."""
    conn.execute("ALTER TABLE explanations ADD COLUMN error TEXT")


# each step brings a store from the version before it to its own, in one transaction with the others
_STEPS = {2: _to_v2, 3: _to_v3, 4: _to_v4, 5: _to_v5}


def _migrate(conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
    """Bring an older store up to SCHEMA_VERSION; its rows keep their values."""
    if read_only:
        raise BadInput(f"{path} was written by an older leanlens and must be upgraded, but it is read-only",
                       "open it once where it is writable, or copy it to a writable folder")
    with transaction(conn, path):
        ver = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have upgraded it
        for step in range(ver + 1, SCHEMA_VERSION + 1):
            _STEPS[step](conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _create_or_check(conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
    app, ver, tables = _header(conn)
    if _is_blank(app, ver, tables):
        _create(conn, path)
        app, ver, tables = _header(conn)
    if app != APPLICATION_ID:
        raise _not_a_store(path, "an SQLite database without the leanlens schema")
    if 1 <= ver < SCHEMA_VERSION:
        _migrate(conn, path, read_only)
        ver, tables = SCHEMA_VERSION, _header(conn)[2]
    if ver != SCHEMA_VERSION:
        raise BadInput(f"{path} has store schema version {ver}, this leanlens reads "
                       f"{SCHEMA_VERSION}", "open it with the leanlens that wrote it")
    missing = sorted(set(_TABLES) - tables)
    if missing:
        raise _not_a_store(path, f"tables missing: {', '.join(missing)}")


def _check_intact(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged file before anything is read from or written to it."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise _damaged(path, problems[-1])


def _damaged(path: Path, problem: str) -> BadInput:
    problem = " ".join(problem.split())[:160]  # SQLite's report spans lines; the error is one
    return BadInput(f"{path} is damaged ({problem})",
                    "restore the store from a copy; leanlens will not read or write a damaged one")


def _open_mode(path: Path) -> str:
    """'rwc' for a store we may write, 'ro' for one we can only read; BadInput when neither."""
    folder = path.parent
    if not folder.is_dir():
        raise BadInput(f"cannot create {path}: the folder {folder} does not exist", "create the folder first")
    if path.is_dir():
        raise BadInput(f"{path} is a folder", "pass a file path, e.g. runs/lens.db")
    # SQLite writes a journal next to the file, so writing needs the folder as well
    if not path.exists():
        if not os.access(folder, os.W_OK):
            raise BadInput(f"cannot create {path}: the folder {folder} is not writable",
                           "choose a writable folder for the store")
        return "rwc"
    if not os.access(path, os.R_OK):
        raise BadInput(f"cannot read {path}: permission denied", "fix the file's permissions")
    return "rwc" if os.access(path, os.W_OK) and os.access(folder, os.W_OK) else "ro"


def connect(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A connection to a checked store at path, created if the file is new, and whether it is read-only."""
    mode = _open_mode(path)
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode={mode}", uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise BadInput(f"cannot open {path}: {e}", "check the file's permissions") from e
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        _check_intact(conn, path)
        _create_or_check(conn, path, read_only=mode == "ro")
    except sqlite3.DatabaseError as e:
        conn.close()
        if "malformed" in str(e):  # a store cut short, or overwritten in the middle
            raise _damaged(path, str(e)) from None
        raise _not_a_store(path, f"SQLite cannot read it: {e}") from None
    except BadInput:
        conn.close()
        raise
    return conn, mode == "ro"
