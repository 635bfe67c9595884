"""Opening an SQLite file as a leanlens store: create the schema or check it."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from leanlens.errors import BadInput

# 'LLNS' in the file header tells our stores apart from any other SQLite file
APPLICATION_ID = 0x4C4C4E53
SCHEMA_VERSION = 1

_TABLES = {
    "probe": """CREATE TABLE probe (
        part TEXT PRIMARY KEY CHECK (part IN ('x', 'y', 'masks')),
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
        PRIMARY KEY (version_id, method))""",
    "predictions": """CREATE TABLE predictions (
        version_id INTEGER PRIMARY KEY REFERENCES versions(id) ON DELETE CASCADE,
        dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL)""",
}


@contextmanager
def transaction(conn: sqlite3.Connection):
    """All-or-nothing writes: commit on success, roll back on any exception."""
    # the connection is in autocommit mode, so BEGIN is ours to issue; `with conn`
    # then commits or rolls back, and DDL is covered too
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        yield conn


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


def _create(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        # read again under the write lock: another process may have created it
        if not _is_blank(*_header(conn)):
            return
        for sql in _TABLES.values():
            conn.execute(sql)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _create_or_check(conn: sqlite3.Connection, path: Path) -> None:
    app, ver, tables = _header(conn)
    if _is_blank(app, ver, tables):
        _create(conn)
        app, ver, tables = _header(conn)
    if app != APPLICATION_ID:
        raise _not_a_store(path, "an SQLite database without the leanlens schema")
    if ver != SCHEMA_VERSION:
        raise BadInput(f"{path} has store schema version {ver}, this leanlens reads "
                       f"{SCHEMA_VERSION}", "open it with the leanlens that wrote it")
    missing = sorted(set(_TABLES) - tables)
    if missing:
        raise _not_a_store(path, f"tables missing: {', '.join(missing)}")


def connect(path: Path) -> sqlite3.Connection:
    """A connection to a checked store at path, created if the file is new."""
    if path.is_dir():
        raise BadInput(f"{path} is a folder", "pass a file path, e.g. runs/lens.db")
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as e:
        raise BadInput(f"cannot open {path}: {e}", "check that the folder exists") from e
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        _create_or_check(conn, path)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise _not_a_store(path, f"SQLite cannot read it: {e}") from e
    except BadInput:
        conn.close()
        raise
    return conn
