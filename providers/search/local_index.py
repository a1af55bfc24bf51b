"""The zero-key default: SQLite FTS5 (BM25) over a folder of your own documents (PDF, DOCX,
PPTX, HTML, Markdown, text), one row per page (``index_store`` builds it, ``index_schema`` lays
it out, ``index_query`` asks it).

``LocalIndexSearch`` builds the index on its first search when it is missing, and re-syncs it
with the files at most every ``refresh_interval_s``. The project's example corpus (``docs/corpus``,
the paths' default) only stands in for documents of one's own: once the index holds roots the
user named, a sync brings those up to date and leaves the example out (``roots_to_sync``). A hit names the document's best page
(``file:///…/manual.pdf#page=12``); ``read_document`` returns the whole text with its pages
separated by ``core.rules.PAGE_BREAK``, so every passage cut from it knows its page.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from core.errors import ConfigError, ProviderError, ProviderUnavailable
from core.rules import PAGE_BREAK
from providers.attempts import said_as_shared
from providers.base import SearchResult
from providers.search.index_query import BEST_PAGES, fts_query, query_terms, snippet_text, snippets
from providers.search.index_schema import (
    PAGE_SLOTS,
    SCHEMA_VERSION,
    connect,
    open_read_only,
    recorded_fallback,
    recorded_roots,
    unwritable,
)
from providers.search.index_store import IndexStats, Progress, build_index, build_underway

__all__ = ["IndexStats", "LocalIndexSearch", "build_index", "build_index_from_config", "fts_query", "resolve_path"]

log = logging.getLogger("providers.search.local")

#: the paths' default, relative to the project root: the project's own notes, an example corpus
#: that stands in while the index holds nothing of the user's
SHIPPED_CORPUS = "docs/corpus"


def resolve_path(value: str, base: Path) -> Path:
    """``~`` expanded; a relative path is taken relative to ``base`` (the project root)."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _there(root: Path) -> bool:
    """``root`` exists and can be looked at (a root behind a mount that does not answer, or a
    folder this user may not enter, is left out of this sync, its documents kept)."""
    try:
        return root.exists()
    except OSError:
        return False


def _linked(path: str) -> bool:
    """``path`` reaches its file through a symbolic link (of the file, or of a folder on the way)."""
    return os.path.realpath(path) != path


class LocalIndexSearch:
    """A SearchProvider over the local FTS5 index; results carry ``file://`` URIs."""

    def __init__(
        self,
        paths: Iterable[str | Path],
        index_path: str | Path,
        *,
        name: str = "local",
        refresh_interval_s: float = 60.0,
        shipped: Path | None = None,
    ) -> None:
        self.name = name
        self.paths = [Path(p) for p in paths]
        self.index_path = Path(index_path).expanduser()
        self.refresh_interval_s = refresh_interval_s
        #: the project's example corpus; paths that are just it only stand in (``roots_to_sync``)
        self.shipped = shipped
        self._synced_at: float | None = None
        self._lock = asyncio.Lock()
        #: the warning that the index cannot be updated was given (``_as_it_stands``): once
        self._said_read_only = False

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

        raw_paths = settings.get("paths") or [SHIPPED_CORPUS]
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
            shipped=resolve_path(SHIPPED_CORPUS, PROJECT_ROOT),
        )

    def unconfigured_reason(self) -> str | None:
        """None when the index exists or a configured path can build it."""
        if self.index_path.exists() or any(p.exists() for p in self.paths):
            return None
        return (
            f"none of the paths {', '.join(map(str, self.paths))} exists and there is no index at"
            f" {self.index_path}; set providers.search.backends.{self.name}.paths (or SWARM_CORPUS)"
        )

    @property
    def stand_in(self) -> bool:
        """The configured paths are only the project's example corpus (the default, or
        ``SWARM_CORPUS`` unset): they are indexed only while the index holds nothing of one's own."""
        return self.shipped is not None and self.paths == [self.shipped]

    def roots_to_sync(self) -> tuple[list[Path], bool]:
        """(the roots a sync brings up to date, whether they only stand in for one's own).

        Configured paths of one's own are synced with every root the index was given by name.
        The example corpus is synced only while the index holds no root named by the user; once
        it does, those roots are synced instead, and the build drops the example (a user's
        question was answered from the project's notes after ``swarm index build ~/docs``).
        """
        own: list[Path] = []
        stand_ins: list[Path] = []
        if self.index_path.exists():
            # read as it stands where it cannot be written: connect's WAL mode and upgrade would fail
            conn = open_read_only(self.index_path) if unwritable(self.index_path) else connect(self.index_path)
            try:
                recorded, fallback = recorded_roots(conn), recorded_fallback(conn, self.shipped)
            finally:
                conn.close()
            own = [Path(r) for r in recorded if r not in fallback]
            stand_ins = [Path(r) for r in fallback]
        if not self.stand_in:
            return list(dict.fromkeys([*self.paths, *own])), False
        if own:
            return own, False
        return list(dict.fromkeys([*self.paths, *stand_ins])), True

    def _sync(self) -> None:
        if self.index_path.exists() and (reason := unwritable(self.index_path)):
            self._as_it_stands(reason)
            return
        roots, fallback = self.roots_to_sync()
        existing = [r for r in roots if _there(r)]
        if not existing:
            if self.index_path.exists():
                return
            raise ProviderUnavailable(self.name, self.unconfigured_reason() or "no documents to index")
        if self.index_path.exists() and build_underway(self.index_path):
            log.info("local index: another process is building %s; searched as it stands", self.index_path)
            return
        stats = build_index(existing, self.index_path, fallback=fallback, shipped=self.shipped)
        log.info("local index synced: %d added, %d updated, %d removed, %d unchanged, %d not indexed",
                 stats.added, stats.updated, stats.removed, stats.unchanged, stats.skipped + stats.no_text)
        for root in stats.dropped_roots:
            log.info("local index: %s left the index: it only stood in while the index held no documents of yours", root)
        not_read = [p["path"] for p in stats.problems if p["new"] and p["kind"] == "not_read"]
        if not_read:  # a folder of images and archives beside the notes: one line, not one a file
            log.info("local index: %d file(s) of a type it does not read left out (%s%s); swarm index stats lists them",
                     len(not_read), ", ".join(not_read[:3]), ", ..." if len(not_read) > 3 else "")
        for problem in stats.problems:
            if problem["new"] and problem["kind"] != "not_read":  # said once, when the file is read
                log.warning("local index: %s: %s", problem["path"], problem["reason"])

    def _as_it_stands(self, reason: str) -> None:
        """Search an index this process cannot update (``unwritable``: a read-only folder) as it
        stands, and say so once; every search failed with "index ... is unusable: attempt to write
        a readonly database". One of an older layout cannot be searched: it is emptied on upgrade.

        Raises:
            ProviderError: the index is of an older layout.
        """
        conn = open_read_only(self.index_path)
        try:
            layout = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        finally:
            conn.close()
        if layout is None or layout[0] != SCHEMA_VERSION:
            raise ProviderError(self.name, f"index at {self.index_path} is of an older layout and cannot be rebuilt"
                                           f" ({reason}); make it writable, or set index_path to a folder that is")
        if not self._said_read_only:
            log.warning("local index: cannot update %s (%s); searched as it stands, without the files' changes",
                        self.index_path, reason)
            self._said_read_only = True

    async def _ensure_index(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._synced_at is not None and now - self._synced_at < self.refresh_interval_s:
                return
            try:  # the index every job searches: its sync is the server's own work, in a context of its
                # own (no job's, no MCP client's: swarm.logs.own_work, which a provider may not import)
                await asyncio.to_thread(said_as_shared, self._sync)
            except sqlite3.Error as exc:
                raise ProviderError(self.name, f"index at {self.index_path} is unusable: {exc}") from None
            self._synced_at = now

    def _query(self, match: str, limit: int, terms: list[str]) -> list[SearchResult]:
        conn = open_read_only(self.index_path)
        try:
            # more than asked: a copy of a document (another clone's docs/corpus) is dropped below,
            # and the window grows while copies leave fewer than ``limit`` documents
            window = 2 * limit
            while True:
                hits = conn.execute(BEST_PAGES, {"match": match, "slots": PAGE_SLOTS, "limit": window}).fetchall()
                docs = {doc: conn.execute("SELECT path, title, pages, sha256 FROM docs WHERE id=?", (doc,)).fetchone()
                        for doc, _, _ in hits}
                best = self._without_copies(hits, docs)
                if len(best) >= limit or len(hits) < window:
                    break
                window *= 2
            best = best[:limit]
            shown = snippets(conn, match, [r for _, r, _ in best], terms)
            # copies rank alike, so the window may hold another clone's (or a link's) and not ours: name ours
            paths = {doc: self._best_copy(conn, docs[doc][0], docs[doc][3]) for doc, _, _ in best if docs.get(doc)}
        finally:
            conn.close()
        results = []
        for doc, row, rank in best:
            if docs.get(doc) is None:  # removed by a build between the two reads
                continue
            _, title, pages, _ = docs[doc]
            path = paths[doc]
            page = row % PAGE_SLOTS
            url = Path(path).as_uri() + (f"#page={page}" if pages and page else "")
            snippet = snippet_text(shown.get(row, ""))
            results.append(SearchResult(url=url, title=title, snippet=snippet, source=self.name, score=round(-rank, 4)))
        return results

    def _ours(self, path: str) -> bool:
        return any(Path(path).is_relative_to(root) for root in self.paths)

    def _preferred(self, path: str) -> tuple[bool, bool]:
        """How a copy of a document is chosen to name it: one under this config's own paths, and
        then the file itself over a symbolic link to it (the link was cited when read first)."""
        return self._ours(path), not _linked(path)

    def _best_copy(self, conn: sqlite3.Connection, path: str, digest: str) -> str:
        """``path``, or the path of its copy that is preferred (``_preferred``) where there is one."""
        if self._preferred(path) == (True, True):
            return path
        copies = [row[0] for row in conn.execute("SELECT path FROM docs WHERE sha256=? ORDER BY path", (digest,))]
        best = max(copies, key=self._preferred, default=path)
        return best if self._preferred(best) > self._preferred(path) else path

    def _version_of_ours(self, path: str) -> bool:
        """``path`` (not under this config's paths) is another copy's version of a document we
        hold: it sits under a folder named like one of ours (``<clone>/docs/corpus/x.md``) and
        ours has the same file (``docs/corpus/x.md``), so its text is an older or newer edit."""
        parts = Path(path).parts
        for root in self.paths:
            tail = root.parts[-2:]
            for i in range(len(parts) - len(tail), 0, -1):
                if parts[i - 1:i - 1 + len(tail)] == tail:
                    if root.joinpath(*parts[i - 1 + len(tail):]).is_file():
                        return True
                    break
        return False

    def _without_copies(self, best: list[Any], docs: Mapping[int, Any]) -> list[Any]:
        """``best`` with one document per content (sha256): the index keeps every root it was ever
        given, so two clones of the project (or a moved one) both hold docs/corpus, and a report
        cited the same text twice. The copy under this config's own paths is kept, the file itself
        rather than a link to it (``_preferred``), else the best ranked.
        Another clone's edit of a document we hold (same place, other text) is left out too: a
        report cited the old and the new text of one page as two sources."""
        def ours(doc: int) -> bool:
            return self._ours(docs[doc][0])

        keep: dict[str, int] = {}
        for doc, _, _ in best:
            if docs.get(doc) is None or (not ours(doc) and self._version_of_ours(docs[doc][0])):
                continue
            digest = docs[doc][3]
            if digest not in keep or self._preferred(docs[doc][0]) > self._preferred(docs[keep[digest]][0]):
                keep[digest] = doc
        return [hit for hit in best if docs.get(hit[0]) is None or keep.get(docs[hit[0]][3]) == hit[0]]

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
        """BM25-ranked documents matching any content word of ``query``."""
        await self._ensure_index()
        terms = query_terms(query)
        match = fts_query(query)
        if not match:
            return []
        try:
            return await asyncio.to_thread(self._query, match, max(1, int(max_results)), terms)
        except sqlite3.Error as exc:
            raise ProviderError(self.name, f"index query failed: {exc}") from None

    def _read(self, path: str) -> tuple[str, str] | None:
        conn = open_read_only(self.index_path)
        try:
            doc = conn.execute("SELECT id, title, pages FROM docs WHERE path = ?", (path,)).fetchone()
            if doc is None:
                return None
            doc_id, title, pages = doc
            rows = conn.execute(
                "SELECT rowid, body FROM docs_fts WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                (doc_id * PAGE_SLOTS, (doc_id + 1) * PAGE_SLOTS - 1),
            ).fetchall()
        finally:
            conn.close()
        if not pages:
            return title, "".join(body for _, body in rows)
        by_page = {row % PAGE_SLOTS: body for row, body in rows}  # a page without text has no row
        # one page has no break: the reader knows it is paged by the hit's "#page=" (a one-slide deck)
        return title, PAGE_BREAK.join(by_page.get(n, "") for n in range(1, pages + 1))

    async def read_document(self, url: str) -> tuple[str, str] | None:
        """(title, text) of an indexed document by its ``file://`` URI (a ``#page=`` fragment is
        ignored: the whole document is read, its pages separated by ``PAGE_BREAK``); None if not
        indexed.

        Only documents in the index can be read, so a search result elsewhere naming
        ``file:///etc/passwd`` reads nothing.
        """
        parsed = urlparse(url)
        if parsed.scheme != "file" or not self.index_path.exists():
            return None
        try:
            return await asyncio.to_thread(self._read, unquote(parsed.path))
        except sqlite3.Error as exc:  # an index of an older layout, or a broken one: the next search rebuilds it
            log.warning("local index: cannot read %s from %s: %s", parsed.path, self.index_path, exc)
            return None


def build_index_from_config(
    config: Any,
    paths: Iterable[str | Path] | None = None,
    *,
    name: str = "local",
    reset: bool = False,
    progress: Progress | None = None,
) -> IndexStats:
    """``swarm index build [PATH...]``: index ``paths`` (default: the configured ones) into the
    configured ``index_path``; relative paths resolve against the current directory here, as a
    person typing a path expects. Paths given here are the user's own: a stand-in example corpus
    leaves the index. Without paths and with the default (the example corpus) configured, the
    roots the user named before are updated, else the example corpus is indexed as a stand-in.

    Raises:
        InputError: a path does not exist.
        ConfigError: there is no ``providers.search.backends.<name>`` section.
    """
    from core.config import state_dir

    settings = config.providers.search.backends.get(name)
    if settings is None:
        raise ConfigError(f"no settings for the local index; add providers.search.backends.{name}", key="providers.search.backends")
    backend = LocalIndexSearch.from_config(name, dict(settings), state_dir=state_dir())
    if paths:
        chosen, fallback = [Path(p).expanduser().resolve() for p in paths], False
    elif backend.stand_in:
        chosen, fallback = backend.roots_to_sync()
        chosen = chosen if fallback else [root for root in chosen if _there(root)]
    else:
        chosen, fallback = backend.paths, False
    return build_index(chosen, backend.index_path, reset=reset, progress=progress, fallback=fallback, shipped=backend.shipped)
