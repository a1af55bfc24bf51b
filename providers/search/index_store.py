"""The local index on disk: a SQLite FTS5 (BM25) table with one row per page, and its build.

``build_index(paths, index_path)`` adds, updates and removes documents incrementally: a file
whose mtime and size (else content hash) are unchanged is not read again, a vanished one is
dropped. A file that yields no text (a PDF without a text layer, a corrupt or encrypted file, one
too big, one of a type the index does not read) is listed with the reason in the build's
``problems`` and in the index (``describe``), never silently skipped; the build goes on.

The index records its roots. A root given as a stand-in (``fallback=True``: the project's example
corpus, indexed while there is nothing of one's own) is recorded as such, and the next build of
roots of one's own drops it with its documents.

Each page of a document (PDF page, PPTX slide; the whole text for other formats) is one FTS row
whose rowid is ``doc_id * PAGE_SLOTS + page``, so a document's rows are one rowid range; the
tables, their version and a document's rows are ``index_schema``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputError
from providers.search.index_schema import (
    PAGE_SLOTS,
    SCHEMA_VERSION,
    connect,
    describe,
    drop_doc,
    recorded_fallback,
    recorded_roots,
    store_pages,
)
from providers.web.documents import (
    SUFFIXES,
    TEXT_KINDS,
    UNSUPPORTED,
    Extracted,
    UnreadableDocument,
    extract,
    not_read_reason,
    size_limit,
)

__all__ = ["PAGE_SLOTS", "SCHEMA_VERSION", "IndexStats", "Progress", "build_index", "build_underway", "connect",
           "describe", "iter_files", "recorded_fallback", "recorded_roots"]

log = logging.getLogger("providers.search.local")

#: commit this often during a build, so an interrupted build of a big folder keeps its work
_COMMIT_EVERY_S = 2.0
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class IndexStats:
    """What one build did; ``problems`` lists every file under the roots that is not (fully)
    indexed: ``{path, kind, reason, new}`` (kind ``no_text``, ``unreadable``, ``error``,
    ``not_read`` for a file of a type the index does not read, or ``partial`` for an indexed
    document with pages without text). ``added_paths``, ``updated_paths`` and ``removed_paths`` name
    the files counted; ``dropped_roots`` are stand-in roots that left the index with this build."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    no_text: int = 0
    total: int = 0
    index_path: str = ""
    problems: list[dict[str, Any]] = field(default_factory=list)
    added_paths: list[str] = field(default_factory=list)
    updated_paths: list[str] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)
    dropped_roots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def iter_files(root: Path) -> Iterator[Path]:
    """The files under ``root`` the index reads or reports: every file but the hidden ones (and
    those in hidden folders) and Office's ``~$`` lock files; one of a type it does not read is
    reported by the build, not passed over."""
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if not name.startswith((".", "~$")) and path.is_file():
                yield path


def _under(path: str, roots: Iterable[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)


def _gone(root: Path) -> bool:
    """``root`` is not there (no such file); one that cannot be looked at (no permission, a mount
    that does not answer) is kept: its documents are not dropped for a passing fault."""
    try:
        root.stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


class _Builder:
    """One build's state: what the index knew, what it found, what went wrong."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.docs = {r[1]: (r[0], r[2], r[3], r[4]) for r in conn.execute("SELECT id, path, mtime_ns, size, sha256 FROM docs")}
        self.known_problems = {
            r[0]: r[1:] for r in conn.execute("SELECT path, mtime_ns, size, sha256, kind, reason FROM problems")
        }
        self.counts = dict.fromkeys(("added", "updated", "removed", "unchanged", "skipped", "no_text"), 0)
        #: the files behind the counts of ``added``, ``updated`` and ``removed``
        self.changed: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}
        self.dropped: set[str] = set()
        self.problems: list[dict[str, Any]] = []
        #: how this build names the files whose names are not UTF-8 (U+FFFD for each bad byte)
        self.unnamed: set[str] = set()

    def _remember_problem(self, key: str, stat: os.stat_result, digest: str, kind: str, reason: str) -> None:
        if key in self.docs:
            drop_doc(self.conn, self.docs[key][0])
        self.conn.execute(
            "INSERT OR REPLACE INTO problems(path, mtime_ns, size, sha256, kind, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (key, stat.st_mtime_ns, stat.st_size, digest, kind, reason),
        )

    def sync(self, path: Path) -> str:
        """Bring one file up to date; returns added / updated / unchanged, or ``problem`` (counted
        and listed here)."""
        key = str(path)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:  # bytes no encoding names (a Latin-1 name): SQLite, the links and a terminal need text
            shown = os.fsencode(key).decode("utf-8", "replace")
            reason = "its name is not valid UTF-8: rename it to index it"
            self.unnamed.add(shown)  # kept while the file is there: ``swarm index stats`` lists it too
            self.conn.execute("INSERT OR REPLACE INTO problems(path, mtime_ns, size, sha256, kind, reason)"
                              " VALUES (?, 0, 0, '', 'error', ?)", (shown, reason))
            return self._report(shown, "error", reason)
        if (not_read := not_read_reason(path)) is not None:
            return self._not_read(key, path, not_read)
        try:
            stat = path.stat()
            row, known = self.docs.get(key), self.known_problems.get(key)
            if row and (row[1], row[2]) == (stat.st_mtime_ns, stat.st_size):
                return "unchanged"
            if known and (known[0], known[1]) == (stat.st_mtime_ns, stat.st_size):
                return self._remembered(key, known)
            if stat.st_size > size_limit(path):
                reason = f"{stat.st_size / 2**20:.1f} MiB is over the {size_limit(path) // 2**20} MiB limit for {path.suffix} files"
                self._remember_problem(key, stat, "", "unreadable", reason)
                return self._report(key, "unreadable", reason)
            raw = path.read_bytes()
        except OSError as exc:  # not remembered: a permission or a disk fixed later should be retried
            return self._report(key, "error", f"cannot read it: {exc.strerror or exc}")
        digest = hashlib.sha256(raw).hexdigest()
        if row and row[3] == digest:
            self.conn.execute("UPDATE docs SET mtime_ns=?, size=? WHERE id=?", (stat.st_mtime_ns, stat.st_size, row[0]))
            return "unchanged"
        if known and known[2] == digest:
            self.conn.execute("UPDATE problems SET mtime_ns=?, size=? WHERE path=?", (stat.st_mtime_ns, stat.st_size, key))
            return self._remembered(key, known)
        try:
            found = extract(path, raw)
        except UnreadableDocument as exc:
            self._remember_problem(key, stat, digest, exc.kind, str(exc))
            return self._report(key, exc.kind, str(exc))
        except ConfigError as exc:  # a parser missing: not remembered, so installing it is enough
            return self._report(key, "error", str(exc))
        if len(found.pages) >= PAGE_SLOTS:
            reason = f"{len(found.pages)} pages is over the limit of {PAGE_SLOTS - 1}"
            self._remember_problem(key, stat, digest, "unreadable", reason)
            return self._report(key, "unreadable", reason)
        return self._store(key, stat, digest, found, row)

    def _not_read(self, key: str, path: Path, reason: str) -> str:
        """A file of a type the index does not read: named once, as a problem the index keeps
        (``swarm index stats`` lists it) and the next builds repeat as known; its bytes are never
        read (a video in a folder of notes costs nothing)."""
        known = self.known_problems.get(key)
        if known and known[4] == reason:
            return self._remembered(key, known)
        kind = "unreadable" if path.suffix.lower() in UNSUPPORTED else "not_read"
        try:
            stat = path.stat()
        except OSError as exc:
            return self._report(key, "error", f"cannot read it: {exc.strerror or exc}")
        self._remember_problem(key, stat, "", kind, reason)
        return self._report(key, kind, reason)

    def _remembered(self, key: str, known: tuple[Any, ...]) -> str:
        self.problems.append({"path": key, "kind": known[3], "reason": known[4], "new": False})
        self.counts["no_text" if known[3] == "no_text" else "skipped"] += 1
        return "problem"

    def _report(self, key: str, kind: str, reason: str) -> str:
        self.problems.append({"path": key, "kind": kind, "reason": reason, "new": True})
        self.counts["no_text" if kind == "no_text" else "skipped"] += 1
        return "problem"

    def _store(self, key: str, stat: os.stat_result, digest: str, found: Extracted, row: tuple[Any, ...] | None) -> str:
        self.conn.execute("DELETE FROM problems WHERE path=?", (key,))
        values = (stat.st_mtime_ns, stat.st_size, digest, found.title, found.kind, len(found.pages) if found.paged else None, found.note)
        if row:
            doc_id = row[0]
            self.conn.execute("UPDATE docs SET mtime_ns=?, size=?, sha256=?, title=?, kind=?, pages=?, note=? WHERE id=?", (*values, doc_id))
        else:
            cur = self.conn.execute(
                "INSERT INTO docs(path, mtime_ns, size, sha256, title, kind, pages, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (key, *values)
            )
            doc_id = int(cur.lastrowid or 0)
        store_pages(self.conn, doc_id, found)
        if found.note:
            self.problems.append({"path": key, "kind": "partial", "reason": found.note, "new": True})
        return "updated" if row else "added"

    def notes_of_unchanged(self, seen: set[str]) -> None:
        """Indexed documents read in earlier builds that have pages without text: still worth saying."""
        listed = {p["path"] for p in self.problems}
        for path, note in self.conn.execute("SELECT path, note FROM docs WHERE note != ''"):
            if path in seen and path not in listed:
                self.problems.append({"path": path, "kind": "partial", "reason": note, "new": False})

    def remove_missing(self, seen: set[str], roots: list[Path]) -> None:
        for key, row in self.docs.items():
            if key not in seen and key not in self.dropped and _under(key, roots):
                drop_doc(self.conn, row[0])
                self.dropped.add(key)
                self.counts["removed"] += 1
                self.changed["removed"].append(key)
        for key in self.known_problems:
            if key not in seen and key not in self.unnamed and _under(key, roots):
                self.conn.execute("DELETE FROM problems WHERE path=?", (key,))


def build_index(
    paths: Iterable[str | Path],
    index_path: str | Path,
    *,
    reset: bool = False,
    progress: Progress | None = None,
    fallback: bool = False,
    shipped: Path | None = None,
) -> IndexStats:
    """Index every PDF, DOCX, PPTX, HTML, Markdown and text file under ``paths`` into ``index_path``.

    Incremental: unchanged files (same mtime and size, or same hash) are not read again; files
    that vanished from under these roots are removed. Documents indexed earlier from other roots
    are kept unless ``reset`` is set, or the root no longer exists. ``progress(done, total, path)`` is called after each file.

    ``fallback``: ``paths`` only stand in for documents of one's own (the project's example
    corpus); a later build without it drops every stand-in root it was not given, with its
    documents (``dropped_roots``). ``shipped`` is the example corpus, for an index that predates
    this record (``recorded_fallback``).

    Raises:
        InputError: a path does not exist (field ``path``).
    """
    roots = [Path(p).expanduser().resolve() for p in paths]
    for root in roots:
        if not root.exists():
            raise InputError(f"{root} does not exist; give a folder or file of documents (PDF, DOCX, PPTX, HTML, Markdown, text)", field="path")
        if root.is_file() and root.suffix.lower() not in SUFFIXES | UNSUPPORTED.keys():
            # named on its own, it was skipped without a word and its path recorded as a root
            raise InputError(f"{root}: {root.suffix or 'a file without a suffix'} is not read; the index reads "
                             f"{', '.join(sorted(SUFFIXES - TEXT_KINDS.keys()))} and as text {', '.join(sorted(TEXT_KINDS))}",
                             field="path")
    index_file = Path(index_path).expanduser()
    files = list(dict.fromkeys(p for root in roots for p in iter_files(root)))
    with _building(index_file):
        return _build(index_file, files, roots, reset, progress, fallback, shipped)


def _lock_file(index_file: Path) -> Path:
    return index_file.with_name(index_file.name + ".lock")


@contextlib.contextmanager
def _building(index_file: Path) -> Iterator[None]:
    """Builds of one index take turns, across processes (``<index>.lock``, dropped by the kernel
    with a killed process): two at once each read the document list, then both inserted the same
    new files, and one failed with ``UNIQUE constraint failed: docs.path``. The one that waited
    finds the files indexed and reads none again. Where no lock can be had (a lock file that
    cannot be made, a filesystem without locks: NFS without lockd) the build runs unlocked, as
    before the lock: it failed with a bare OSError."""
    index_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(_lock_file(index_file), "a")
    except OSError as exc:
        log.warning("local index: no lock file beside %s (%s); a build in another process at once is not kept apart",
                    index_file, exc)
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            log.warning("local index: %s cannot be locked (%s); a build in another process at once is not kept apart",
                        index_file, exc)
        yield


def build_underway(index_file: Path) -> bool:
    """Whether another process builds ``index_file`` now (holds ``<index>.lock``): a research
    searches the index as it stands rather than wait out that build (a ``swarm index build`` of
    a big folder held every search for its whole length)."""
    try:
        with open(_lock_file(index_file), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no lock to be had here: the build itself goes on unlocked (_building)
        return False
    return False


def _build(index_file: Path, files: list[Path], roots: list[Path], reset: bool, progress: Progress | None,
           fallback: bool, shipped: Path | None) -> IndexStats:
    conn = connect(index_file)
    try:
        if reset:
            with conn:
                conn.executescript("DELETE FROM docs; DELETE FROM docs_fts; DELETE FROM problems;"
                                   " DELETE FROM meta WHERE key IN ('roots', 'fallback_roots');")
        builder = _Builder(conn)
        committed = time.monotonic()
        for done, path in enumerate(files, start=1):
            outcome = builder.sync(path)
            if outcome != "problem":
                builder.counts[outcome] += 1
                builder.changed.get(outcome, []).append(str(path))
            if time.monotonic() - committed > _COMMIT_EVERY_S:
                conn.commit()
                committed = time.monotonic()
            if progress:
                progress(done, len(files), str(path))
        seen = {str(p) for p in files}
        builder.remove_missing(seen, roots)
        builder.notes_of_unchanged(seen)
        dropped = _record_roots(builder, roots, seen, fallback, shipped)
        conn.commit()
        total = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
    finally:
        conn.close()
    return IndexStats(**builder.counts, total=total, index_path=str(index_file), problems=builder.problems,
                      added_paths=builder.changed["added"], updated_paths=builder.changed["updated"],
                      removed_paths=builder.changed["removed"], dropped_roots=dropped)


def _record_roots(builder: _Builder, roots: list[Path], seen: set[str], fallback: bool, shipped: Path | None) -> list[str]:
    """Record the roots after a build of ``roots``; returns the stand-in roots that left the index.

    A root recorded earlier that is gone (a deleted or moved clone's docs/corpus) held documents
    whose links lead nowhere: they leave the index with it. So do the stand-ins a build of one's
    own roots does not name (``_settle_fallback``)."""
    conn = builder.conn
    gone = [Path(r) for r in recorded_roots(conn) if _gone(Path(r))]
    builder.remove_missing(set(), gone)
    for root in gone:
        log.info("local index: %s is gone; its documents left the index (index it again if it comes back)", root)
    dropped, stand_ins = _settle_fallback(conn, roots, fallback, shipped)
    builder.remove_missing(seen, [Path(r) for r in dropped])
    left = {*map(str, gone), *dropped}
    recorded = dict.fromkeys([*(r for r in recorded_roots(conn) if r not in left), *map(str, roots)])
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('roots', ?)", (json.dumps(list(recorded)),))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('fallback_roots', ?)",
                 (json.dumps([r for r in stand_ins if r in recorded]),))
    return dropped


def _settle_fallback(conn: sqlite3.Connection, roots: list[Path], fallback: bool, shipped: Path | None) -> tuple[list[str], list[str]]:
    """(stand-in roots that leave the index now, stand-in roots after this build). A build of
    stand-ins adds these roots to them (those the index already holds as one's own stay so); a
    build of one's own roots makes the ones it names one's own and drops the others."""
    before = recorded_fallback(conn, shipped)
    given = [str(r) for r in roots]
    if fallback:
        own = set(recorded_roots(conn)) - set(before)
        return [], list(dict.fromkeys([*before, *(r for r in given if r not in own)]))
    return [r for r in before if r not in given], []
