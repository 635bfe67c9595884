"""The store under damage, permissions, old files, concurrent writers and a killed writer."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from leanlens.errors import BadInput
from leanlens.metrics import ExplanationScores
from leanlens.store import Store
from leanlens.store.schema import SCHEMA_VERSION

N = 4


def _maps(seed, shape=(N, 8, 8)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "lens.db"
    with Store(p) as s:
        s.set_probe(_maps(0, (N, 1, 8, 8)))
        for i in range(40):  # enough pages that a cut or a scribble lands inside the data
            s.record(f"v{i}", fingerprint="f", metrics={"i": i}, explanations={"g": _maps(i, (N, 32, 32))})
    return p


def _one_line(error):
    return "\n" not in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "scribbled"])
def test_a_damaged_store_is_refused_in_one_line_and_left_alone(path, damage):
    data = path.read_bytes()
    bad = data[: len(data) // 2] if damage == "truncated" else data[:8192] + bytes(range(256)) * 16 + data[12288:]
    path.write_bytes(bad)
    with pytest.raises(BadInput, match="is damaged") as error:
        Store(path)
    assert _one_line(error) and path.read_bytes() == bad  # nothing was written to it


def _read_only(monkeypatch, what):
    """Make `what` (a file or folder) look unwritable; root ignores chmod, so ask os.access."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode == os.W_OK and str(p) == str(what)
                        else real(p, mode, **kw))


@pytest.mark.parametrize("locked", ["file", "folder"])
def test_a_read_only_store_is_read_and_refuses_writes_in_one_line(path, monkeypatch, locked):
    _read_only(monkeypatch, path if locked == "file" else path.parent)
    with Store(path) as store:
        assert store.read_only and len(store.versions()) == 40
        np.testing.assert_array_equal(store.explanation("v3", "g"), _maps(3, (N, 32, 32)))
        with pytest.raises(BadInput, match="is read-only") as error:
            store.record("new", fingerprint="f", metrics={})
        assert _one_line(error) and "folder exists" not in str(error.value)
        with pytest.raises(BadInput, match="is read-only"):
            store.set_probe(np.zeros((N, 2)))


def test_a_read_only_connection_that_sqlite_refuses_is_one_line(path):
    with Store(path) as store:
        store.close()
        # what a store sees when its file turns read-only while open: SQLite's own refusal
        store._conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        with pytest.raises(BadInput, match="is read-only"):
            store.record("new", fingerprint="f", metrics={})


def test_a_new_store_in_a_read_only_or_missing_folder_says_which(tmp_path, monkeypatch):
    with pytest.raises(BadInput, match="does not exist"):
        Store(tmp_path / "nope" / "lens.db")
    _read_only(monkeypatch, tmp_path)
    with pytest.raises(BadInput, match="not writable") as error:
        Store(tmp_path / "lens.db")
    assert _one_line(error) and not (tmp_path / "lens.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_chmod_read_only_file(path):
    path.chmod(0o444)
    with Store(path) as store:
        assert store.versions() and store.read_only
        with pytest.raises(BadInput, match="is read-only"):
            store.record("new", fingerprint="f", metrics={})


V1_SCHEMA = [
    ("CREATE TABLE probe (part TEXT PRIMARY KEY CHECK (part IN ('x', 'y', 'masks')), "
     "dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL)"),
    ("CREATE TABLE versions (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, "
     "created TEXT NOT NULL, fingerprint TEXT NOT NULL, metrics TEXT NOT NULL, parent TEXT REFERENCES versions(name))"),
    ("CREATE TABLE explanations (version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE, "
     "method TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL, "
     "PRIMARY KEY (version_id, method))"),
    ("CREATE TABLE predictions (version_id INTEGER PRIMARY KEY REFERENCES versions(id) ON DELETE CASCADE, "
     "dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL)"),
]


def test_a_store_written_by_schema_version_1_is_upgraded_in_place(tmp_path):
    p = tmp_path / "old.db"
    conn = sqlite3.connect(p)
    for sql in V1_SCHEMA:
        conn.execute(sql)
    values = _maps(5)
    conn.execute("INSERT INTO probe VALUES ('x', '<f4', '[4, 2]', ?)", (np.zeros((N, 2), np.float32).tobytes(),))
    conn.execute("INSERT INTO versions VALUES (1, 'v0', '2026-01-01T00:00:00+00:00', 'f', '{\"accuracy\": 0.5}', NULL)")
    conn.execute("INSERT INTO explanations VALUES (1, 'g', '<f4', '[4, 8, 8]', ?)", (values.tobytes(),))
    # version 1 kept a candidate's per-method figures in its metrics, keyed "name[method]"
    v1_metrics = {"accuracy": 0.25, "spearman[g]": 0.9, "top10[g]": 0.5, "pointing[g]": 0.75, "spearman[gone]": 0.1}
    conn.execute("INSERT INTO versions VALUES (2, 'v1', '2026-01-02T00:00:00+00:00', 'f', ?, 'v0')",
                 (json.dumps(v1_metrics),))
    conn.execute("INSERT INTO explanations VALUES (2, 'g', '<f4', '[4, 8, 8]', ?)", (values.tobytes(),))
    conn.execute("PRAGMA application_id = 1280069203")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(p) as store:
        old = store.explained("v0", "g")
        np.testing.assert_array_equal(old.values, values)
        assert old.target is None and old.options == {} and old.scores == ExplanationScores()
        assert store.version("v0").metrics == {"accuracy": 0.5}
        moved = store.explained("v1", "g").scores
        assert (moved.spearman, moved.top_k, moved.pointing_game, moved.top_k_fraction) == (0.9, 0.5, 0.75, 0.1)
        # a figure whose explanation was never stored stays where it was: nothing is lost
        assert store.version("v1").metrics == {"accuracy": 0.25, "spearman[gone]": 0.1}
        store.record("v2", fingerprint="g", metrics={}, explanations={"g": values}, parent="v0")
        assert len(store.probe("held_out")) == N and len(store.probe("replay")) == 0  # nothing was replayed
        assert store.gate_runs() == []
    check = sqlite3.connect(p)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check.close()


def _v2_store(path, with_probe=True):
    """A store as leanlens wrote it before the probe split and gate runs (schema version 2)."""
    conn = sqlite3.connect(path)
    for sql in V1_SCHEMA:
        conn.execute(sql)
    for column in ("target TEXT", "options TEXT NOT NULL DEFAULT '{}'", "scores TEXT NOT NULL DEFAULT '{}'"):
        conn.execute(f"ALTER TABLE explanations ADD COLUMN {column}")
    if with_probe:
        conn.execute("INSERT INTO probe VALUES ('x', '<f4', '[4, 2]', ?)", (np.arange(8, dtype=np.float32).tobytes(),))
    conn.execute("INSERT INTO versions VALUES (1, 'v0', '2026-01-01T00:00:00+00:00', 'f', '{}', NULL)")
    conn.execute("INSERT INTO explanations VALUES (1, 'g', '<f4', '[4, 8, 8]', ?, '[0, 1, 0, 1]', '{\"steps\": 8}', '{}')",
                 (_maps(5).tobytes(),))
    conn.execute("PRAGMA application_id = 1280069203")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("with_probe", [True, False])
def test_a_version_2_store_is_upgraded_with_every_probe_held_out(tmp_path, with_probe):
    p = tmp_path / "v2.db"
    _v2_store(p, with_probe)
    with Store(p) as store:
        kept = store.explained("v0", "g")
        np.testing.assert_array_equal(kept.values, _maps(5))
        assert list(kept.target) == [0, 1, 0, 1] and kept.options == {"steps": 8}
        assert kept.error is None and store.version("v0").errors == {}  # recorded before error bars were kept
        if with_probe:
            held = store.probe("held_out")
            np.testing.assert_array_equal(held.x, np.arange(8, dtype=np.float32).reshape(4, 2))
            assert held.held_out.all() and len(store.probe("replay")) == 0
            store.set_probe(held.x)  # the same probe, all held out by default: nothing to change
        else:
            store.set_probe(np.zeros((N, 2)), held_out=np.array([True, False, True, False]))
            assert len(store.probe("replay")) == 2
        run = store.record_gate_run(reference="v0", candidate="c", holds=True, verdict={"spearman": 1.0})
        assert store.gate_runs() == [run]


def test_a_store_from_a_newer_leanlens_is_refused_in_one_line(tmp_path):
    p = tmp_path / "new.db"
    _v2_store(p)
    conn = sqlite3.connect(p)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = p.read_bytes()
    with pytest.raises(BadInput, match=f"schema version {SCHEMA_VERSION + 1}, this leanlens reads {SCHEMA_VERSION}") \
            as error:
        Store(p)
    assert _one_line(error) and p.read_bytes() == before


def test_sql_looking_names_are_stored_verbatim(path):
    names = ["x'); DROP TABLE versions; --", 'v"2', "a;b", "Robert'); --", "%_*"]
    with Store(path) as store:
        for name in names:
            store.record(name, fingerprint=name, metrics={name: 1}, explanations={name: _maps(1)}, parent="v0")
    with Store(path) as store:
        for name in names:
            v = store.version(name)
            assert (v.name, v.fingerprint, v.metrics) == (name, name, {name: 1})
            assert list(store.explanations(name)) == [name]
        assert len(store.versions()) == 40 + len(names)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from leanlens.store import Store
    path, tag, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with Store(path) as store:
        for i in range(count):
            values = np.random.default_rng(i).normal(size=(4, size, size)).astype(np.float32)
            store.record(f"{tag}-{i}", fingerprint=tag, metrics={"i": i}, explanations={"g": values})
            print(f"{tag}-{i}", flush=True)
""")


def _writer(path, tag, count, size):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(count), str(size)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "shared.db"
    with Store(path) as store:
        store.set_probe(np.zeros((N, 2)))
    writers = [_writer(path, tag, 50, 8) for tag in ("a", "b")]
    for w in writers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-2000:]
    with Store(path) as store:
        names = {v.name for v in store.versions()}
        assert names == {f"{tag}-{i}" for tag in ("a", "b") for i in range(50)}
        np.testing.assert_array_equal(store.explanation("b-49", "g"), _maps_of(49, 8))


def _maps_of(i, size):
    return np.random.default_rng(i).normal(size=(4, size, size)).astype(np.float32)


def test_a_writer_killed_mid_write_leaves_every_committed_version(tmp_path):
    path = tmp_path / "killed.db"
    with Store(path) as store:
        store.set_probe(np.zeros((N, 2)))
    # 4 x 256 x 256 float32 = 1 MB a version: most of the writer's time is spent writing
    writer = _writer(path, "k", 10_000, 256)
    committed = [writer.stdout.readline().strip() for _ in range(5)]
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    with Store(path) as store:  # opening runs SQLite's integrity check
        names = [v.name for v in store.versions()]
        assert names[: len(committed)] == committed
        for name in names:
            np.testing.assert_array_equal(store.explanation(name, "g"), _maps_of(int(name[2:]), 256))
        store.record("after", fingerprint="f", metrics={})  # and it still takes writes


def test_an_error_bar_of_a_kind_this_leanlens_does_not_know_names_the_newer_leanlens():
    """A newer leanlens may store a kind of numerical error this one lacks: say so, not 'damaged'."""
    from leanlens.explain.errorbars import NumericalError
    from leanlens.store.errors import error_from_json, error_json

    text = error_json(NumericalError("standard_error", np.ones((2, 3)), np.ones(2), 0.01, np.full(2, 64)))
    assert error_from_json(text).kind == "standard_error"
    with pytest.raises(BadInput, match="kind this leanlens does not know .'quantile_band'. .hint: the store was "
                                       "written by a newer leanlens") as error:
        error_from_json(text.replace('"standard_error"', '"quantile_band"'))
    assert _one_line(error)
    with pytest.raises(BadInput, match="changed outside leanlens"):  # damaged, not newer
        error_from_json(text.replace('"header"', '"heading"'))
