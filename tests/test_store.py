"""The SQLite store: exact round trips, all-or-nothing writes, refusing strangers."""

import sqlite3

import numpy as np
import pytest

from leanlens.errors import BadInput
from leanlens.store import Probe, Store, Version
from leanlens.store.arrays import decode, encode

RNG = np.random.default_rng(0)
N = 6


@pytest.fixture
def path(tmp_path):
    return tmp_path / "lens.db"


@pytest.fixture
def store(path):
    with Store(path) as s:
        s.set_probe(RNG.normal(size=(N, 3, 4, 4)).astype(np.float32),
                    y=np.arange(N), masks=RNG.random((N, 4, 4)) > 0.5)
        yield s


def _expl(seed=1):
    return np.random.default_rng(seed).normal(size=(N, 4, 4)).astype(np.float32)


def _count(path, table):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# arrays --------------------------------------------------------------------

def test_encoded_bytes_are_the_raw_array_not_pickle():
    arr = RNG.normal(size=(3, 5)).astype(np.float32)
    dtype, shape, data = encode(arr)
    assert (dtype, shape) == ("<f4", "[3, 5]")
    assert data == arr.tobytes()
    assert not data.startswith(b"\x80")  # the pickle protocol marker


def test_object_arrays_refused():
    with pytest.raises(BadInput):
        encode(np.array([{"a": 1}, None], dtype=object))


def test_damaged_blob_refused():
    dtype, shape, data = encode(np.zeros((2, 2)))
    with pytest.raises(BadInput):
        decode(dtype, shape, data[:-1])


# round trips ----------------------------------------------------------------

ARRAYS = {
    "f32": RNG.normal(size=(N, 4, 4)).astype(np.float32),
    "f16": RNG.normal(size=(N, 4)).astype(np.float16),
    "i64": RNG.integers(-10**12, 10**12, size=(N, 2, 3), dtype=np.int64),
    "bool": RNG.random((N, 5)) > 0.5,
    "strided": RNG.normal(size=(N, 8, 6))[:, ::2, ::3].transpose(0, 2, 1),
    "fortran": np.asfortranarray(RNG.normal(size=(N, 3, 2))),
}


def test_round_trip_after_reopening(store, path):
    assert not ARRAYS["strided"].flags.c_contiguous
    preds = RNG.normal(size=(N, 10))
    store.record("v1", fingerprint="abc", metrics={"acc": 0.5},
                 explanations=ARRAYS, predictions=preds)
    store.close()
    with Store(path) as again:
        back = again.explanations("v1")
        assert list(back) == list(ARRAYS)
        for method, arr in ARRAYS.items():
            got = again.explanation("v1", method)
            for g in (got, back[method]):
                assert g.dtype == arr.dtype and g.shape == arr.shape
                assert np.array_equal(g, arr)
            assert got.flags.writeable
        np.testing.assert_array_equal(again.predictions("v1"), preds)


def test_probe_round_trip(store, path):
    before = store.probe()
    store.close()
    with Store(path) as again:
        p = again.probe()
    assert isinstance(p, Probe) and len(p) == N
    for part in ("x", "y", "masks"):
        a, b = getattr(before, part), getattr(p, part)
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_probe_optional_parts_and_rules(path):
    with Store(path) as s:
        with pytest.raises(BadInput):
            s.probe()  # none yet
        with pytest.raises(BadInput):
            s.record("v", fingerprint="f", metrics={}, explanations={"g": _expl()})
        with pytest.raises(BadInput):
            s.set_probe(np.zeros((3, 2)), y=np.zeros(4))  # lengths differ
        x = np.ones((N, 2))
        s.set_probe(x)
        s.set_probe(x.copy())  # same arrays: no-op
        assert s.probe().y is None and s.probe().masks is None
        with pytest.raises(BadInput, match="new store"):
            s.set_probe(x + 1)
        with pytest.raises(BadInput):
            s.set_probe(x, y=np.zeros(N))
        with pytest.raises(BadInput):
            s.record("v", fingerprint="f", metrics={}, explanations={"g": np.zeros((N + 1, 2))})


# versions --------------------------------------------------------------------

def test_versions_order_and_metrics(store, path):
    store.record("base", fingerprint="f0", metrics={"acc": np.float32(0.75), "n": np.int64(3),
                                                    "tag": "x", "ok": np.bool_(True), "z": None})
    store.record("pruned", fingerprint="f1", metrics={"acc": 0.7}, parent="base")
    store.record("a-first", fingerprint="f2", metrics={})
    store.close()
    with Store(path) as again:
        vs = again.versions()
        assert [v.name for v in vs] == ["base", "pruned", "a-first"]
        assert vs[0].metrics == {"acc": 0.75, "n": 3, "tag": "x", "ok": True, "z": None}
        assert type(vs[0].metrics["n"]) is int and type(vs[0].metrics["ok"]) is bool
        assert vs[1] == again.version("pruned")
        assert vs[1].parent == "base" and vs[1].fingerprint == "f1"
        assert vs[0].created.endswith("+00:00")
        assert again.predictions("base") is None
        assert isinstance(hash(vs[0]), int)


def test_bad_metrics_refused(store):
    for bad in ({"acc": [1, 2]}, {"acc": np.zeros(2)}, {1: 0.5}, [("acc", 1)]):
        with pytest.raises(BadInput):
            store.record("v", fingerprint="f", metrics=bad)
    assert store.versions() == []


def test_duplicate_name_refused_and_nothing_written(store, path):
    store.record("v1", fingerprint="f", metrics={"acc": 1.0}, explanations={"g": _expl()})
    with pytest.raises(BadInput, match="pick a new name"):
        store.record("v1", fingerprint="other", metrics={}, explanations={"ig": _expl(2)})
    assert [v.fingerprint for v in store.versions()] == ["f"]
    assert list(store.explanations("v1")) == ["g"]
    assert _count(path, "explanations") == 1


def test_object_dtype_explanation_leaves_nothing(store, path):
    bad = np.empty((N, 2), dtype=object)
    with pytest.raises(BadInput):
        store.record("v1", fingerprint="f", metrics={},
                     explanations={"g": _expl(), "bad": bad})
    assert store.versions() == []
    assert _count(path, "versions") == 0 and _count(path, "explanations") == 0


def test_failure_midway_through_writing_rolls_back(store, path, monkeypatch):
    def boom(*args):
        raise RuntimeError("disk gone")

    # fails after the version and its explanations were inserted
    monkeypatch.setattr(store, "_insert_predictions", boom)
    with pytest.raises(RuntimeError):
        store.record("v1", fingerprint="f", metrics={}, explanations={"g": _expl()},
                     predictions=np.zeros(N))
    monkeypatch.undo()
    assert store.versions() == []
    assert _count(path, "versions") == 0 and _count(path, "explanations") == 0
    store.record("v1", fingerprint="f", metrics={})  # the name is still free


def test_unknown_version_and_method_hints(store):
    store.record("baseline", fingerprint="f", metrics={}, explanations={"gradcam": _expl()})
    with pytest.raises(BadInput, match="did you mean 'baseline'"):
        store.version("baseline2")
    with pytest.raises(BadInput, match="baseline"):
        store.explanations("basline")
    with pytest.raises(BadInput, match="gradcam"):
        store.explanation("baseline", "grad_cam")
    with pytest.raises(BadInput):
        store.record("child", fingerprint="f", metrics={}, parent="nope")
    with pytest.raises(BadInput):
        store.version("")


# opening ---------------------------------------------------------------------

def test_text_file_refused(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a database\n" * 20)
    with pytest.raises(BadInput, match="notes.txt"):
        Store(p)
    assert p.read_text().startswith("hello")  # left untouched


def test_foreign_sqlite_refused(tmp_path):
    p = tmp_path / "other.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(BadInput, match="other.db"):
        Store(p)


def test_newer_schema_refused(path):
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(BadInput, match="version 99"):
        Store(path)


def test_missing_folder_and_folder_refused(tmp_path):
    with pytest.raises(BadInput):
        Store(tmp_path / "no" / "such" / "lens.db")
    with pytest.raises(BadInput):
        Store(tmp_path)


def test_reopen_keeps_path_and_schema(path):
    with Store(str(path)) as s:
        assert s.path == path
    with Store(path) as s:
        assert s.versions() == []


# compare ---------------------------------------------------------------------

def test_compare_returns_the_typed_record(store):
    e = _expl()
    store.record("a", fingerprint="1", metrics={}, explanations={"g": e})
    store.record("b", fingerprint="2", metrics={}, explanations={"g": e.copy()})
    store.record("c", fingerprint="3", metrics={}, explanations={"g": -e})
    same = store.compare("a", "b", "g")
    assert (same.spearman, same.top_k, same.cosine) == (1.0, 1.0, 1.0)
    assert same.top_k_fraction == 0.1 and same.pointing_game is None
    flipped = store.compare("a", "c", "g")  # every ranking reversed: exactly -1, and no top-k shared
    assert flipped.spearman == pytest.approx(-1.0) and flipped.cosine == pytest.approx(-1.0)
    assert flipped.top_k == 0.0
    with pytest.raises(BadInput):
        store.compare("a", "c", "ig")


def test_version_is_frozen():
    v = Version("n", "2024-01-01T00:00:00+00:00", "f", {})
    with pytest.raises(AttributeError):
        v.name = "m"
