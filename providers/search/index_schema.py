"""The local index's layout on disk: its tables, the version that names them, one document's
rows, and what the index holds (``describe``).

The FTS table has one row per page: ``title`` and ``body`` as read (what a search shows and
``read_document`` returns), and ``title_grams`` and ``body_grams``, the CJK character pairs of
each and the words glued to them (``cjk.cjk_index_text``), which a question's CJK words are
matched against. An index of an
older layout is emptied when opened (``connect``): it is derived data, and the next build reads
the files again, so an index built before CJK text was split finds it after its next sync.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.errors import InputError
from providers.search.cjk import cjk_index_text
from providers.web.documents import Extracted

#: "3": the CJK pair columns (an index of "2" read "設定ファイルの場所" as one word); "4": they
#: hold the Latin words glued to CJK letters too ("Docker를": "docker" found nothing); "5": they
#: hold words in their plain form (ＵＳＢ: "usb") and each run's last character ("猫" found nothing)
SCHEMA_VERSION = "5"
#: rowids per document: a document's page ``n`` is row ``doc_id * PAGE_SLOTS + n`` (0: unpaged)
PAGE_SLOTS = 1 << 20
_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs(
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, title TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS problems(
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    kind TEXT NOT NULL, reason TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(title, body, title_grams, body_grams, tokenize='porter unicode61');
"""
#: the FTS columns a question's CJK pairs are matched in (an FTS5 column filter)
GRAM_COLUMNS = "{title_grams body_grams}"
#: bm25() weights of title, body, title_grams, body_grams: a title's words count four times
BM25_WEIGHTS = "4.0, 1.0, 4.0, 1.0"


def connect(index_path: Path) -> sqlite3.Connection:
    """Open (creating or upgrading) the index; an index of an older layout is emptied (it is
    derived data: the next build reads the files again). Its roots are kept, so a sync knows them."""
    index_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(index_path), timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        _upgrade(conn)
    return conn


def unwritable(index_path: Path) -> str | None:
    """Why this process cannot update the index at ``index_path``, or None: its folder or its file
    is read-only to it (a read-only mount, a folder of another user, a shared copy). ``connect``
    would fail there, and a search must answer from the index as it stands (``open_read_only``)."""
    if not os.access(index_path.parent, os.W_OK):
        return f"its folder {index_path.parent} is read-only"
    if index_path.exists() and not os.access(index_path, os.W_OK):
        return f"{index_path.name} is read-only"
    return None


def open_read_only(index_path: Path, timeout: float = 30) -> sqlite3.Connection:
    """The index opened for reading only (``mode=ro``). An index in WAL mode is read through its
    ``-shm`` file, which SQLite makes beside it: in a folder that cannot be written (``unwritable``)
    that failed ("attempt to write a readonly database"), and the index is opened ``immutable``
    there instead, as a file no build changes meanwhile (none can write beside it)."""
    uri = f"file:{quote(str(index_path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        if not unwritable(index_path):
            raise
        conn = sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=timeout)
    return conn


def _upgrade(conn: sqlite3.Connection) -> None:
    """Empty and lay out again an index of an older layout, in one transaction under the write
    lock, where its version is read again: two processes that opened the old index at once both
    emptied it, the second one the tables the first had begun to build into (a build left every
    document listed and none of its pages: nothing found, and each file "unchanged" after)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:  # not upgraded by another process meanwhile
            for statement in ("DROP TABLE IF EXISTS docs", "DROP TABLE IF EXISTS problems", "DROP TABLE IF EXISTS docs_fts",
                              *filter(str.strip, _SCHEMA.split(";"))):
                conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def drop_doc(conn: sqlite3.Connection, doc_id: int) -> None:
    conn.execute("DELETE FROM docs WHERE id=?", (doc_id,))
    conn.execute("DELETE FROM docs_fts WHERE rowid BETWEEN ? AND ?", (doc_id * PAGE_SLOTS, (doc_id + 1) * PAGE_SLOTS - 1))


def store_pages(conn: sqlite3.Connection, doc_id: int, found: Extracted) -> None:
    """Replace the FTS rows of document ``doc_id`` with one row per page of ``found`` that has text."""
    conn.execute("DELETE FROM docs_fts WHERE rowid BETWEEN ? AND ?", (doc_id * PAGE_SLOTS, (doc_id + 1) * PAGE_SLOTS - 1))
    rows = [(number if found.paged else 0, text) for number, text in enumerate(found.pages, start=1) if text]
    title_grams = cjk_index_text(found.title)
    conn.executemany(
        "INSERT INTO docs_fts(rowid, title, body, title_grams, body_grams) VALUES (?, ?, ?, ?, ?)",
        [(doc_id * PAGE_SLOTS + page, found.title, text, title_grams, cjk_index_text(text)) for page, text in rows],
    )


def recorded_roots(conn: sqlite3.Connection) -> list[str]:
    row = conn.execute("SELECT value FROM meta WHERE key='roots'").fetchone()
    return json.loads(row[0]) if row else []


def recorded_fallback(conn: sqlite3.Connection, shipped: Path | None = None) -> list[str]:
    """The recorded roots that stand in for an index of one's own (``build_index(fallback=True)``).
    An index built before they were recorded has none marked: ``shipped`` (the project's example
    corpus) among its roots was added by a sync, as nobody names it, and is taken as one."""
    row = conn.execute("SELECT value FROM meta WHERE key='fallback_roots'").fetchone()
    if row is not None:
        return list(json.loads(row[0]))
    return [str(shipped)] if shipped is not None and str(shipped) in recorded_roots(conn) else []


def describe(index_path: str | Path, shipped: Path | None = None) -> dict[str, Any]:
    """The index as it stands: documents and pages by format, every file it could not read, its
    roots and those of them that only stand in (``recorded_fallback``, ``shipped`` as there).

    Raises:
        InputError: there is no index at ``index_path``, or it is of an older layout.
    """
    index_file = Path(index_path).expanduser()
    if not index_file.exists():
        raise InputError(f"there is no index at {index_file}; build it with: swarm index build", field="index_path")
    conn = open_read_only(index_file)
    try:
        layout = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if layout is None or layout[0] != SCHEMA_VERSION:
            raise InputError(f"the index at {index_file} is of an older layout; rebuild it with: swarm index build", field="index_path")
        kinds = {
            kind: {"documents": count, "pages": pages or 0}
            for kind, count, pages in conn.execute("SELECT kind, count(*), sum(pages) FROM docs GROUP BY kind ORDER BY kind")
        }
        problems = [
            {"path": p, "kind": k, "reason": r} for p, k, r in conn.execute("SELECT path, kind, reason FROM problems ORDER BY path")
        ]
        problems += [
            {"path": p, "kind": "partial", "reason": n} for p, n in conn.execute("SELECT path, note FROM docs WHERE note != '' ORDER BY path")
        ]
        roots = recorded_roots(conn)
        stand_ins = recorded_fallback(conn, shipped)
    finally:
        conn.close()
    return {
        "index_path": str(index_file), "roots": roots, "fallback_roots": stand_ins,
        "documents": sum(k["documents"] for k in kinds.values()),
        "by_kind": kinds, "no_text": sum(p["kind"] == "no_text" for p in problems),
        "unreadable": sum(p["kind"] != "partial" and p["kind"] != "no_text" for p in problems), "problems": problems,
    }
