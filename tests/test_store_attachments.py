"""Attachments: JSON results kept with a version by kind, checked before writing, kept by old stores too."""

import sqlite3

import numpy as np
import pytest
from errors_support import one_line

from leanlens.errors import BadInput
from leanlens.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lens.db") as opened:
        opened.record("v0", fingerprint="f0", metrics={})
        opened.record("v1", fingerprint="f1", metrics={}, parent="v0")
        yield opened


def test_attachments_come_back_by_version_and_kind_in_the_order_attached(store):
    first = store.attach("v1", "importance", {"mean": [0.5, -0.25], "names": ["a", "b"], "ci": None})
    store.attach("v1", "reasons", {"rows": 3, "summary": {"1": [["a", 2, 3]]}})
    store.attach("v1", "importance", {"mean": [1.0]})
    store.attach("v0", "surrogate", {"rules": "if a <= 0.5: 1"})
    assert [a.kind for a in store.attachments("v1")] == ["importance", "reasons", "importance"]
    assert [a.payload for a in store.attachments("v1", "importance")] == [
        {"mean": [0.5, -0.25], "names": ["a", "b"], "ci": None}, {"mean": [1.0]}]
    assert store.attachments("v1")[0] == first and first.created
    assert [a.payload for a in store.attachments("v0")] == [{"rules": "if a <= 0.5: 1"}]
    assert store.attachments("v0", "reasons") == []


@pytest.mark.parametrize("kind, payload, problem", [
    ("Importance", {}, "attachment kind 'Importance' is not a short lowercase name"),
    ("x" * 40, {}, "is not a short lowercase name"),
    ("a b", {}, "is not a short lowercase name"),
    ("importance", [1, 2], "payload is a list, not a mapping"),
    ("importance", {1: "a"}, "payload has a key 1 that is not text"),
    ("importance", {"mean": np.arange(2)}, "payload is not JSON: Object of type ndarray"),
    ("importance", {"mean": float("nan")}, "payload is not JSON: Out of range float values"),
])
def test_bad_kinds_and_payloads_are_refused_in_one_line_and_nothing_is_written(store, kind, payload, problem):
    with pytest.raises(BadInput) as error:
        store.attach("v1", kind, payload)
    assert problem in one_line(error)
    assert store.attachments("v1") == []


def test_an_unknown_version_is_refused_with_the_closest_name(store):
    with pytest.raises(BadInput) as error:
        store.attach("v2", "reasons", {})
    assert "no version 'v2'" in one_line(error) and "did you mean" in one_line(error)


def test_a_version_3_store_opens_upgraded_and_takes_attachments(tmp_path):
    path = tmp_path / "v3.db"
    with Store(path) as current:
        current.record("v0", fingerprint="f", metrics={"accuracy": 0.5})
    conn = sqlite3.connect(path)  # back to version 3: the same schema without attachments or error bars
    conn.execute("DROP TABLE attachments")
    conn.execute("ALTER TABLE explanations DROP COLUMN error")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with Store(path) as upgraded:
        assert upgraded.version("v0").metrics == {"accuracy": 0.5} and upgraded.attachments("v0") == []
        upgraded.attach("v0", "reasons", {"rows": 1})
    with Store(path) as again:
        assert [a.payload for a in again.attachments("v0")] == [{"rows": 1}]
