"""Conversation threads: the turns of a conversation, kept per owner in the checkpointer's kind of store.

A thread lives in PostgreSQL when ``checkpointer.kind`` is postgres (the same ``dsn``), else in
``threads.sqlite`` next to ``checkpointer.path``; ``memory`` keeps it for the process only.

Where turns are appended (the design): the door that owns the caller's identity keeps the thread.
A call with a ``thread_id`` sends the thread's turns in the job input (``history``), so the action
sees them wherever the job runs, in-process or on the RunPod worker, which needs no access to this
store and knows nothing of MCP owners. When the job finishes COMPLETED, ``record_turns`` appends
the user's turn and the answer (which model said it) before the envelope is stored; both the local
and the remote path end there, so each keeps the thread the same way, and a job resumed after a
restart appends once (a job's turns are keyed by its id).

A thread is bounded: past ``threads.max_turns`` the oldest turns are dropped, and the job's trace
gets a ``thread`` step saying which.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, ProviderUnavailable
from core.redact import redact, redact_data, register_dsn
from core.state_files import opening, writing
from graphs.turns import THREAD_ID_PATTERN
from providers.base import TraceStep

if TYPE_CHECKING:
    from core.config import CheckpointerSection

log = logging.getLogger("swarm.threads")

__all__ = ["THREAD_ID_PATTERN", "ThreadStore", "open_thread_store", "record_turns"]
#: what a turn's answer is taken from, per action: (input field of the question, output field of the answer)
TURN_FIELDS = {"delegate": ("task", "text"), "research": ("question", "report")}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS swarm_threads (
    thread_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    next_turn INTEGER NOT NULL DEFAULT 1,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS swarm_threads_owner ON swarm_threads(owner, updated_at);
CREATE TABLE IF NOT EXISTS swarm_thread_turns (
    thread_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    role TEXT NOT NULL,
    model TEXT,
    content TEXT NOT NULL,
    job_id TEXT,
    at {real} NOT NULL,
    PRIMARY KEY (thread_id, n)
);
"""

Exec = Callable[[str, tuple[Any, ...]], list[dict[str, Any]]]


class _Sqlite:
    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock, opening(path, "the thread store", "the conversations"):
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA.format(real="REAL"))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Exec]:
        """One transaction; a file that cannot be written (read-only, the disk full) is
        ``ThreadStoreUnavailable`` naming it, not an internal error."""
        with self._lock, writing(self._path, "the thread store", "threads"):
            self._db.execute("BEGIN IMMEDIATE")
            def run(sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
                return [dict(r) for r in self._db.execute(sql, args).fetchall()]

            try:
                yield run
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ThreadStoreUnavailable(ProviderUnavailable):
    """The thread store's database cannot be reached now; the next call tries again."""

    def __init__(self, detail: str) -> None:
        super().__init__("threads", detail)


class _Postgres:
    def __init__(self, dsn: str) -> None:
        from graphs.checkpoint import MALFORMED_DSN, dsn_problem

        register_dsn(dsn)
        if (problem := dsn_problem(dsn)) is not None:
            raise ConfigError(problem, key="checkpointer.dsn")
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ModuleNotFoundError:
            raise ConfigError("threads on postgres need psycopg: pip install 'psycopg[binary]==3.3.9'",
                              key="checkpointer.kind") from None
        self._psycopg = psycopg
        self._connect = lambda: psycopg.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)
        try:
            self._db = self._connect()
        except psycopg.ProgrammingError:
            raise ConfigError(MALFORMED_DSN, key="checkpointer.dsn") from None
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL for threads ({redact(str(exc))})",
                              key="checkpointer.dsn") from None
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(_SCHEMA.format(real="DOUBLE PRECISION"))  # type: ignore[arg-type]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Exec]:
        """One transaction; a connection lost since the last one (PostgreSQL restarted) is opened
        again first, and a failure to reach it is ``ThreadStoreUnavailable``, not a crash."""

        def run(sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
            cursor = self._db.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

        with self._lock:
            try:
                if self._db.closed or self._db.broken or not self._alive():
                    self._db = self._connect()
                with self._db.transaction():
                    yield run
            except self._psycopg.OperationalError as exc:
                raise ThreadStoreUnavailable(f"PostgreSQL (checkpointer.dsn) is unreachable: {redact(str(exc))[:300]}"
                                             "; threads come back when it does, no restart needed") from None

    def _alive(self) -> bool:
        """Whether the connection still answers (PostgreSQL restarted since closes it under us)."""
        try:
            self._db.execute("SELECT 1")
        except self._psycopg.OperationalError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ThreadStore:
    """Threads and their turns. Every read takes the caller's owner: another owner's thread is not
    found, the same answer as an unknown id, so ids cannot be probed."""

    def __init__(self, backend: _Sqlite | _Postgres) -> None:
        self._backend = backend

    def close(self) -> None:
        self._backend.close()

    def create(self, owner: str) -> str:
        """A new, empty thread of ``owner``; its id."""
        thread_id = f"thr-{uuid.uuid4().hex}"
        now = time.time()
        with self._backend.transaction() as run:
            run("INSERT INTO swarm_threads (thread_id, owner, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (thread_id, owner, now, now))
        return thread_id

    def get(self, thread_id: str, owner: str) -> dict[str, Any] | None:
        """``{thread_id, created_at, updated_at, dropped, turns}``, or None (unknown or not yours)."""
        with self._backend.transaction() as run:
            rows = run("SELECT * FROM swarm_threads WHERE thread_id = ? AND owner = ?", (thread_id, owner))
            if not rows:
                return None
            turns = run("SELECT n, role, model, content, job_id, at FROM swarm_thread_turns WHERE thread_id = ?"
                        " ORDER BY n", (thread_id,))
        head = rows[0]
        return {"thread_id": thread_id, "created_at": head["created_at"], "updated_at": head["updated_at"],
                "dropped": head["dropped"], "turns": turns}

    def list(self, owner: str, limit: int = 20) -> list[dict[str, Any]]:
        """The owner's threads with at least one turn, most recently used first: id, turn count, the
        last turn's model and start."""
        with self._backend.transaction() as run:
            # a thread with no turn yet (its first job still running, or refused for bad input) is no
            # conversation to list; it stays usable by its id
            heads = run("SELECT * FROM swarm_threads WHERE owner = ? AND EXISTS (SELECT 1 FROM swarm_thread_turns t"
                        " WHERE t.thread_id = swarm_threads.thread_id) ORDER BY updated_at DESC LIMIT ?", (owner, limit))
            out = []
            for head in heads:
                turns = run("SELECT n, role, model, content FROM swarm_thread_turns WHERE thread_id = ? ORDER BY n",
                            (head["thread_id"],))
                first = next((t["content"] for t in turns if t["role"] == "user"), "")
                models = [t["model"] for t in turns if t["role"] == "assistant" and t["model"]]
                out.append({"thread_id": head["thread_id"], "turns": len(turns), "dropped": head["dropped"],
                            "started_with": first[:120], "models": list(dict.fromkeys(models)),
                            "updated_at": head["updated_at"]})
        return out

    def append(self, thread_id: str, owner: str, turns: builtins.list[dict[str, Any]], max_turns: int,
               job_id: str | None = None) -> tuple[builtins.list[int], builtins.list[int]]:  # ``list``: the method above
        """Add ``turns`` (role, model, content); keep the newest ``max_turns``.

        Returns:
            (numbers of the turns added, numbers of the turns dropped). Nothing is added when
            ``job_id`` already added its turns (a resumed job), or the thread is not ``owner``'s.
        """
        now = time.time()
        with self._backend.transaction() as run:
            head = run("SELECT next_turn FROM swarm_threads WHERE thread_id = ? AND owner = ?", (thread_id, owner))
            if not head or (job_id and run("SELECT n FROM swarm_thread_turns WHERE thread_id = ? AND job_id = ?",
                                           (thread_id, job_id))):
                return [], []
            first = int(head[0]["next_turn"])
            added = list(range(first, first + len(turns)))
            for n, turn in zip(added, turns, strict=True):
                run("INSERT INTO swarm_thread_turns (thread_id, n, role, model, content, job_id, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (thread_id, n, turn["role"], turn.get("model"), redact(turn["content"]), job_id, now))
            floor = first + len(turns) - max_turns  # turns numbered below this are dropped
            # and an answer whose question is dropped goes with it (an odd max_turns): a prompt
            # opened with an answer alone, its question gone
            if run("SELECT n FROM swarm_thread_turns WHERE thread_id = ? AND n = ? AND role = 'assistant'",
                   (thread_id, floor)):
                floor += 1
            dropped = [int(r["n"]) for r in run(
                "SELECT n FROM swarm_thread_turns WHERE thread_id = ? AND n < ? ORDER BY n", (thread_id, floor))]
            if dropped:
                run("DELETE FROM swarm_thread_turns WHERE thread_id = ? AND n < ?", (thread_id, floor))
            run("UPDATE swarm_threads SET next_turn = ?, dropped = dropped + ?, updated_at = ? WHERE thread_id = ?",
                (first + len(turns), len(dropped), now, thread_id))
        return added, dropped


    def thread_ids(self) -> set[str]:
        """Every thread's id, of every owner (for ``import_from``)."""
        with self._backend.transaction() as run:
            return {str(r["thread_id"]) for r in run("SELECT thread_id FROM swarm_threads", ())}

    def import_from(self, source: ThreadStore) -> tuple[int, int]:
        """Copy every thread of ``source`` this store does not have (by id), each with its owner and
        turns, one transaction a thread; a thread already here is left as it is, so running it again
        copies nothing twice. Returns (threads copied, threads already here)."""
        have = self.thread_ids()
        copied = skipped = 0
        with source._backend.transaction() as read:
            heads = read("SELECT * FROM swarm_threads ORDER BY created_at", ())
        for head in heads:
            if head["thread_id"] in have:
                skipped += 1
                continue
            with source._backend.transaction() as read:
                turns = read("SELECT * FROM swarm_thread_turns WHERE thread_id = ? ORDER BY n", (head["thread_id"],))
            with self._backend.transaction() as run:
                run("INSERT INTO swarm_threads (thread_id, owner, created_at, updated_at, next_turn, dropped)"
                    " VALUES (?, ?, ?, ?, ?, ?)", tuple(head[k] for k in
                    ("thread_id", "owner", "created_at", "updated_at", "next_turn", "dropped")))
                for turn in turns:
                    run("INSERT INTO swarm_thread_turns (thread_id, n, role, model, content, job_id, at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", tuple(turn[k] for k in
                        ("thread_id", "n", "role", "model", "content", "job_id", "at")))
            copied += 1
        return copied, skipped


def sqlite_threads_path(section: CheckpointerSection) -> Path:
    """Where a SQLite checkpointer keeps its threads: ``threads.sqlite`` beside ``checkpointer.path``."""
    return Path(section.path).expanduser().with_name("threads.sqlite")


def _say_threads_left_in_sqlite(path: Path, store: ThreadStore) -> int:
    """Threads a SQLite store kept before the switch to PostgreSQL and not imported since: say how
    many, where, that they are not gone, and the command that carries them over. Returns the count."""
    if not path.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            ids = {str(r[0]) for r in db.execute("SELECT thread_id FROM swarm_threads")}
    except sqlite3.Error:
        return 0
    count = len(ids - store.thread_ids()) if ids else 0
    if count:
        log.warning("%d thread(s) kept in %s before the switch to PostgreSQL are not in it; they are still"
                    " there: `swarm threads import` copies them over (or unset the dsn to see them again)", count, path)
    return count


def import_sqlite_threads(section: CheckpointerSection) -> tuple[Path, int, int]:
    """``swarm threads import``: copy the threads kept in SQLite (before a switch to PostgreSQL)
    into the PostgreSQL store ``section`` names. Returns (the SQLite file, copied, already there)."""
    if section.kind != "postgres" or not section.dsn:
        raise ConfigError("threads are imported into PostgreSQL: set SWARM_CHECKPOINTER_DSN (with the shipped"
                          " checkpointer.kind: auto, that is all), or checkpointer.kind: postgres and its dsn",
                          key="checkpointer.dsn")
    path = sqlite_threads_path(section)
    if not path.is_file():
        raise ConfigError(f"no SQLite thread store at {path} (beside checkpointer.path) to import from",
                          key="checkpointer.path")
    source = ThreadStore(_Sqlite(str(path)))
    target = ThreadStore(_Postgres(section.dsn))
    try:
        copied, skipped = target.import_from(source)
    finally:
        source.close()
        target.close()
    return path, copied, skipped


def open_thread_store(section: CheckpointerSection) -> ThreadStore:
    """The thread store of the checkpointer's kind (its own config section, nothing else)."""
    if section.kind == "postgres":
        if not section.dsn:
            raise ConfigError("postgres needs a dsn for threads too", key="checkpointer.dsn")
        store = ThreadStore(_Postgres(section.dsn))
        _say_threads_left_in_sqlite(sqlite_threads_path(section), store)
        return store
    if section.kind == "memory":
        return ThreadStore(_Sqlite(":memory:"))
    return ThreadStore(_Sqlite(str(sqlite_threads_path(section))))


def spans(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def turns_of(action: str, job_input: dict[str, Any], output: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The user's turn and the answer of one finished job (None: the action keeps no thread)."""
    fields = TURN_FIELDS.get(action)
    if fields is None:
        return None
    asked, answered = fields
    model = output.get("model") or ("research" if "research" in (action, output.get("kind")) else None)
    return [{"role": "user", "model": None, "content": str(job_input.get(asked, ""))},
            {"role": "assistant", "model": model, "content": str(output.get(answered, ""))}]


def record_turns(store: ThreadStore, row: dict[str, Any], envelope: dict[str, Any], max_turns: int) -> dict[str, Any]:
    """Append a COMPLETED job's turns to its thread (``row``: the job store's row: owner, input, thread_id).

    Returns the envelope with ``output.thread_id`` and a ``thread`` trace step saying which turns
    were added and which were dropped; a job without a thread comes back as it was.
    """
    thread_id = row.get("thread_id")
    job_input: dict[str, Any] = row["input"] if isinstance(row.get("input"), dict) else {}
    turns = turns_of(row.get("action", ""), job_input, envelope.get("output") or {}) if thread_id else None
    if not thread_id or turns is None or envelope.get("status") != "COMPLETED":
        return envelope
    started = time.perf_counter()
    try:
        added, dropped = store.append(thread_id, row["owner"], redact_data(turns), max_turns, job_id=row.get("job_id"))
    except Exception as exc:  # the answer still reaches the caller; the lost turn is said in the trace
        log.error("thread %s: turns of job %s not saved: %s", thread_id, row.get("job_id"), redact(repr(exc)))
        detail, outcome = f"thread {thread_id}: turns not saved ({type(exc).__name__})", "error"
    else:
        detail = f"thread {thread_id}: saved turns {spans(added)}" if added else f"thread {thread_id}: already saved"
        if dropped:
            detail += f"; dropped turns {spans(dropped)} (oldest past threads.max_turns={max_turns})"
        outcome = "ok"
    step = TraceStep(step="thread", kind="node", provider="threads", outcome=outcome,  # type: ignore[arg-type]
                     latency_ms=(time.perf_counter() - started) * 1000, detail=detail).model_dump()
    output = {**(envelope.get("output") or {}), "thread_id": thread_id}
    return {**envelope, "output": output, "trace": [*(envelope.get("trace") or []), step]}
