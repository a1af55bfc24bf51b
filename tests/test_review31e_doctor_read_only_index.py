"""``swarm doctor`` on a local index in a folder it cannot write (a read-only mount, a shared copy):
it opened the index with a plain ``mode=ro`` connection, which needs the ``-shm`` file of a WAL
index made beside it, and reported "index ... is unusable: attempt to write a readonly database"
(FAIL, fix "swarm index build --reset": that would empty a shared index) where searches answer.
It opens it as a search does (``index_schema.open_read_only``) and counts its documents.

Run as root, the check runs in a user namespace (``unshare --user``, the helper of
``test_review31c_index_read_only``), where root's power over the read-only files is gone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import test_review31c_index_read_only as read_only
from test_search_local import _write

from providers.search.local_index import build_index

#: ``swarm doctor``'s finding on the local index, by a process that cannot write its folder
_DOCTOR = """
import asyncio, json, sys
from pathlib import Path
from providers.search.local_index import LocalIndexSearch
from swarm.doctor_search import _local_index
docs, index = Path(sys.argv[1]), Path(sys.argv[2])
found = asyncio.run(_local_index("local", LocalIndexSearch([docs], index)))
print(json.dumps({"status": found.status, "detail": found.detail, "fix": found.fix}))
"""


def _build(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    _write(docs / "falcon.md", "# Falcon\n\nThe falcon agent keeps its logs for seven days.\n")
    _write(docs / "heron.md", "# Heron\n\nThe heron agent keeps its logs for a month.\n")
    index = tmp_path / "shared" / "index.sqlite"
    build_index([docs], index)
    conn = sqlite3.connect(index)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    return docs.resolve(), index


def test_doctor_reports_on_a_read_only_index_instead_of_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs, index = _build(tmp_path)
    monkeypatch.setattr(read_only, "_SEARCH", _DOCTOR)
    found = read_only._without_write_access(docs, index)
    assert found["status"] == "ok", found
    assert found["detail"] == f"index {index}: 2 documents", found
    assert not (index.parent / "index.sqlite-shm").exists()


def test_doctor_still_fails_on_an_index_that_is_not_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs, index = _build(tmp_path)
    index.write_bytes(b"not a database, " * 512)
    for stale in ("index.sqlite-wal", "index.sqlite-shm"):
        (index.parent / stale).unlink(missing_ok=True)
    monkeypatch.setattr(read_only, "_SEARCH", _DOCTOR)
    found = read_only._without_write_access(docs, index)
    assert found["status"] == "fail" and "unusable" in str(found["detail"]), found
    assert found["fix"] == "swarm index build --reset", found
