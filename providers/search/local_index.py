"""The zero-key default: SQLite FTS5 (BM25) over a folder of Markdown, text and HTML files.

``build_index(paths, index_path)`` adds, updates and removes documents incrementally (by
mtime and size, then content hash). ``LocalIndexSearch`` builds the index on its first search
when it is missing, and re-syncs it with the files at most every ``refresh_interval_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from core.errors import ConfigError, InputError, ProviderError, ProviderUnavailable
from providers.base import SearchResult
from providers.web.text import document_text

log = logging.getLogger("providers.search.local")

SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text", ".html", ".htm"})
MAX_FILE_BYTES = 5 * 1024 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs(
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, title TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(title, body, tokenize='porter unicode61');
"""
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it of on or should that the this to"
    " what when where which who why will with you your".split()
)
_MAX_QUERY_TERMS = 32


@dataclass(frozen=True)
class IndexStats:
    """What one build did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    total: int = 0
    index_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _connect(index_path: Path) -> sqlite3.Connection:
    index_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(index_path), timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    return conn


def _iter_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        if root.suffix.lower() in SUFFIXES:
            yield root
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if not name.startswith(".") and path.suffix.lower() in SUFFIXES and path.is_file():
                yield path


def _under(path: str, roots: Iterable[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)


def _recorded_roots(conn: sqlite3.Connection) -> list[str]:
    row = conn.execute("SELECT value FROM meta WHERE key='roots'").fetchone()
    return json.loads(row[0]) if row else []


def _sync_file(conn: sqlite3.Connection, path: Path, known: dict[str, tuple[int, int, int, str]]) -> str:
    """Bring one file's row up to date; returns added / updated / unchanged / skipped."""
    stat = path.stat()
    key = str(path)
    row = known.get(key)
    if row and (row[1], row[2]) == (stat.st_mtime_ns, stat.st_size):
        return "unchanged"
    if stat.st_size > MAX_FILE_BYTES:
        log.warning("local index: skipped %s (%d bytes > %d)", path, stat.st_size, MAX_FILE_BYTES)
        return "skipped"
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if row and row[3] == digest:
        conn.execute("UPDATE docs SET mtime_ns=?, size=? WHERE id=?", (stat.st_mtime_ns, stat.st_size, row[0]))
        return "unchanged"
    title, body = document_text(path, raw)
    if row:
        conn.execute(
            "UPDATE docs SET mtime_ns=?, size=?, sha256=?, title=? WHERE id=?",
            (stat.st_mtime_ns, stat.st_size, digest, title, row[0]),
        )
        conn.execute("DELETE FROM docs_fts WHERE rowid=?", (row[0],))
        conn.execute("INSERT INTO docs_fts(rowid, title, body) VALUES (?, ?, ?)", (row[0], title, body))
        return "updated"
    cur = conn.execute(
        "INSERT INTO docs(path, mtime_ns, size, sha256, title) VALUES (?, ?, ?, ?, ?)",
        (key, stat.st_mtime_ns, stat.st_size, digest, title),
    )
    conn.execute("INSERT INTO docs_fts(rowid, title, body) VALUES (?, ?, ?)", (cur.lastrowid, title, body))
    return "added"


def build_index(paths: Iterable[str | Path], index_path: str | Path, *, reset: bool = False) -> IndexStats:
    """Index every Markdown, text and HTML file under ``paths`` into ``index_path``.

    Incremental: unchanged files (same mtime and size, or same hash) are not re-read into the
    index; files that vanished from under these roots are removed. Documents indexed earlier
    from other roots are kept unless ``reset`` is set.

    Raises:
        InputError: a path does not exist (field ``path``).
    """
    roots = [Path(p).expanduser().resolve() for p in paths]
    for root in roots:
        if not root.exists():
            raise InputError(f"{root} does not exist; give a folder or file of .md/.txt/.html documents", field="path")
    index_file = Path(index_path).expanduser()
    counts = dict.fromkeys(("added", "updated", "removed", "unchanged", "skipped"), 0)
    conn = _connect(index_file)
    try:
        with conn:
            if reset:
                conn.execute("DELETE FROM docs")
                conn.execute("DELETE FROM docs_fts")
                conn.execute("DELETE FROM meta WHERE key='roots'")
            known = {r[1]: (r[0], r[2], r[3], r[4]) for r in conn.execute("SELECT id, path, mtime_ns, size, sha256 FROM docs")}
            seen: set[str] = set()
            for root in roots:
                for path in _iter_files(root):
                    seen.add(str(path))
                    counts[_sync_file(conn, path, known)] += 1
            for key, row in known.items():
                if key not in seen and _under(key, roots):
                    conn.execute("DELETE FROM docs WHERE id=?", (row[0],))
                    conn.execute("DELETE FROM docs_fts WHERE rowid=?", (row[0],))
                    counts["removed"] += 1
            recorded = dict.fromkeys([*_recorded_roots(conn), *map(str, roots)])
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('roots', ?)", (json.dumps(list(recorded)),))
        total = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
    finally:
        conn.close()
    return IndexStats(**counts, total=total, index_path=str(index_file))


def fts_query(text: str) -> str:
    """A safe FTS5 MATCH expression from free text: quoted terms joined by OR.

    Every term is a quoted string of word characters, so FTS5 operators, quotes, colons and
    parentheses in the user's text are plain words, never syntax.
    """
    words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 or w.isdigit()]
    content = [w for w in words if w not in _STOPWORDS] or words
    unique = list(dict.fromkeys(content))[:_MAX_QUERY_TERMS]
    return " OR ".join(f'"{w}"' for w in unique)


def resolve_path(value: str, base: Path) -> Path:
    """``~`` expanded; a relative path is taken relative to ``base`` (the project root)."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


class LocalIndexSearch:
    """A SearchProvider over the local FTS5 index; results carry ``file://`` URIs."""

    def __init__(
        self,
        paths: Iterable[str | Path],
        index_path: str | Path,
        *,
        name: str = "local",
        refresh_interval_s: float = 60.0,
    ) -> None:
        self.name = name
        self.paths = [Path(p) for p in paths]
        self.index_path = Path(index_path).expanduser()
        self.refresh_interval_s = refresh_interval_s
        self._synced_at: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls, name: str, settings: Mapping[str, Any], *, state_dir: Path | None = None, **_deps: object
    ) -> LocalIndexSearch:
        """Build from ``providers.search.backends.<name>`` (paths, index_path,
        refresh_interval_s); without ``index_path`` the index lives in ``state_dir``.

        Raises:
            ConfigError: neither ``index_path`` nor ``state_dir`` is given.
        """
        from core.config import PROJECT_ROOT

        raw_paths = settings.get("paths") or ["docs/corpus"]
        raw_paths = [raw_paths] if isinstance(raw_paths, str) else raw_paths
        index_path = settings.get("index_path") or (state_dir / "index.sqlite" if state_dir else None)
        if not index_path:
            raise ConfigError(
                "index_path is not set; set it (e.g. ~/.cache/runpod-swarm/index.sqlite)",
                key=f"providers.search.backends.{name}.index_path",
            )
        return cls(
            [resolve_path(str(p), PROJECT_ROOT) for p in raw_paths if str(p).strip()],
            resolve_path(str(index_path), PROJECT_ROOT),
            name=name,
            refresh_interval_s=float(settings.get("refresh_interval_s", 60)),
        )

    def unconfigured_reason(self) -> str | None:
        """None when the index exists or a configured path can build it."""
        if self.index_path.exists() or any(p.exists() for p in self.paths):
            return None
        return (
            f"none of the paths {', '.join(map(str, self.paths))} exists and there is no index at"
            f" {self.index_path}; set providers.search.backends.{self.name}.paths (or SWARM_CORPUS)"
        )

    def _sync(self) -> None:
        existing = [p for p in self.paths if p.exists()]
        if self.index_path.exists():
            conn = _connect(self.index_path)
            try:
                recorded = [Path(r) for r in _recorded_roots(conn)]
            finally:
                conn.close()
            existing += [r for r in recorded if r.exists() and r not in existing]
        if not existing:
            if self.index_path.exists():
                return
            raise ProviderUnavailable(self.name, self.unconfigured_reason() or "no documents to index")
        stats = build_index(existing, self.index_path)
        log.info("local index synced: %s", stats)

    async def _ensure_index(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._synced_at is not None and now - self._synced_at < self.refresh_interval_s:
                return
            try:
                await asyncio.to_thread(self._sync)
            except sqlite3.Error as exc:
                raise ProviderError(self.name, f"index at {self.index_path} is unusable: {exc}") from None
            self._synced_at = now

    def _query(self, match: str, limit: int) -> list[SearchResult]:
        conn = sqlite3.connect(f"file:{self.index_path}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute(
                "SELECT d.path, d.title, snippet(docs_fts, 1, '', '', ' … ', 32), bm25(docs_fts, 4.0, 1.0) AS rank"
                " FROM docs_fts JOIN docs d ON d.id = docs_fts.rowid"
                " WHERE docs_fts MATCH ? ORDER BY rank LIMIT ?",
                (match, limit),
            ).fetchall()
        finally:
            conn.close()
        return [
            SearchResult(
                url=Path(path).as_uri(), title=title, snippet=" ".join(snippet.split()),
                source=self.name, score=round(-rank, 4),
            )
            for path, title, snippet, rank in rows
        ]

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
        """BM25-ranked documents matching any content word of ``query``."""
        await self._ensure_index()
        match = fts_query(query)
        if not match:
            return []
        try:
            return await asyncio.to_thread(self._query, match, max(1, int(max_results)))
        except sqlite3.Error as exc:
            raise ProviderError(self.name, f"index query failed: {exc}") from None

    def _read(self, path: str) -> tuple[str, str] | None:
        conn = sqlite3.connect(f"file:{self.index_path}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute(
                "SELECT f.title, f.body FROM docs d JOIN docs_fts f ON f.rowid = d.id WHERE d.path = ?", (path,)
            ).fetchone()
        finally:
            conn.close()
        return (row[0], row[1]) if row else None

    async def read_document(self, url: str) -> tuple[str, str] | None:
        """(title, text) of an indexed document by its ``file://`` URI; None if not indexed.

        Only documents in the index can be read, so a search result elsewhere naming
        ``file:///etc/passwd`` reads nothing.
        """
        parsed = urlparse(url)
        if parsed.scheme != "file" or not self.index_path.exists():
            return None
        return await asyncio.to_thread(self._read, unquote(parsed.path))


def build_index_from_config(
    config: Any, paths: Iterable[str | Path] | None = None, *, name: str = "local", reset: bool = False
) -> IndexStats:
    """``swarm index build [PATH...]``: index ``paths`` (default: the configured ones) into the
    configured ``index_path``; relative paths resolve against the current directory here, as a
    person typing a path expects.

    Raises:
        InputError: a path does not exist.
        ConfigError: there is no ``providers.search.backends.<name>`` section.
    """
    from core.config import state_dir

    settings = config.providers.search.backends.get(name)
    if settings is None:
        raise ConfigError(f"no settings for the local index; add providers.search.backends.{name}", key="providers.search.backends")
    backend = LocalIndexSearch.from_config(name, dict(settings), state_dir=state_dir())
    chosen = [Path(p).expanduser().resolve() for p in paths] if paths else backend.paths
    return build_index(chosen, backend.index_path, reset=reset)
