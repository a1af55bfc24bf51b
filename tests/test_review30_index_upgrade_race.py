"""Two processes open an index of an older layout at once: the one that reads the old version
first, then finds it upgraded and built by the other when it gets the write lock, keeps that
build instead of emptying it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from providers.search import index_schema
from providers.search.index_store import build_index


def _old_index(index: Path, root: Path) -> None:
    conn = sqlite3.connect(index)
    conn.executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE docs(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, mtime_ns INTEGER NOT NULL,"
        " size INTEGER NOT NULL, sha256 TEXT NOT NULL, title TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER,"
        " note TEXT NOT NULL DEFAULT '');"
        "CREATE TABLE problems(path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,"
        " sha256 TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL);"
        "CREATE VIRTUAL TABLE docs_fts USING fts5(title, body, tokenize='porter unicode61');")
    conn.execute("INSERT INTO meta VALUES ('schema', '2'), ('roots', ?)", (json.dumps([str(root)]),))
    conn.commit()
    conn.close()


def test_an_upgrade_another_process_finished_meanwhile_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(5):
        (root / f"note{i}.md").write_text(f"# note {i}\n\n設定ファイル {i}\n", encoding="utf-8")
    index = tmp_path / "idx.sqlite"
    _old_index(index, root)
    real_connect = sqlite3.connect
    other_ran: list[int] = []

    class Late(sqlite3.Connection):
        """This process's connection: the other process upgrades and builds the index just after
        this one read the old version."""

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            cursor = super().execute(sql, *args)
            if "key='schema'" in sql and not other_ran:
                other_ran.append(1)
                monkeypatch.setattr(index_schema.sqlite3, "connect", real_connect)
                other_ran.append(build_index([root], index).total)
            return cursor

    monkeypatch.setattr(index_schema.sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=Late, **k))
    conn = index_schema.connect(index)
    try:
        pages = conn.execute("SELECT count(*) FROM docs_fts").fetchone()[0]
        docs = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
    finally:
        conn.close()
    assert other_ran == [1, 5]
    assert (docs, pages) == (5, 5)  # the other process's build stands
