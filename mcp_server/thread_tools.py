"""Conversations at the door: open a call's thread, list your threads.

A thread belongs to the caller that started it (``owner_of``, like jobs); an id that does not
exist and one that belongs to another client get the same answer, so ids cannot be probed.
Store calls are short but synchronous (SQLite, or PostgreSQL over the network): they run in a
worker thread so the protocol loop keeps answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from core.errors import InputError, SwarmError
from mcp_server.calls import owner_of, server_state
from mcp_server.texts import threads_text

T = TypeVar("T")

MAX_THREAD_ID_CHARS = 64

#: the tools' descriptions and the server's instructions say what it is for; an id that is not one of
#: the caller's threads (malformed ones included) is refused by ``open_thread``, the action checks the format
ThreadId = Annotated[str | None, Field(max_length=MAX_THREAD_ID_CHARS)]


async def _stored(ctx: Context, call: Callable[[Any], T]) -> T:
    """``call(store)`` on the thread store (opened at first use), in a worker thread; a store that
    cannot be reached (PostgreSQL down) raises its ``SwarmError``, which says so (a tool answers it
    as a failed job's error): the next call tries again."""
    state = server_state(ctx)
    return await asyncio.to_thread(lambda: call(state.threads))


def unknown_thread(thread_id: str) -> InputError:
    """The one answer for a thread id the caller cannot see (none has it, or another client's thread
    has it: the same words, so ids cannot be probed); ``field`` is ``thread_id``."""
    return InputError(f"{thread_id[:MAX_THREAD_ID_CHARS]!r} is not a thread of yours on this server; list_threads"
                      " shows yours (a reply's thread_id continues its conversation)", field="thread_id")


async def open_thread(ctx: Context, thread_id: str | None,
                      idempotency_key: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(the call's thread id, its stored turns): a new thread when ``thread_id`` is None, except for
    a retry (``idempotency_key`` of a job already started): that job's own thread. A retry while
    the job ran was handed a new, empty thread, and a follow-up on it lost the conversation.

    Raises:
        InputError: ``thread_id`` is not one of the caller's threads.
        SwarmError: the thread store cannot be reached.
    """
    owner = owner_of(ctx)
    if idempotency_key:  # a retry: the first job runs on its own input, and its turns join its thread
        first = server_state(ctx).jobs.store.by_idempotency_key(owner, idempotency_key)
        if first is not None and first.get("thread_id") and thread_id in (None, first["thread_id"]):
            return str(first["thread_id"]), []  # (a follow-up's retry was refused: its own turn "still running")
    if thread_id is None:
        return await _stored(ctx, lambda store: store.create(owner)), []
    _refuse_if_running(ctx, owner, thread_id)  # before the read: a turn that ended since is in it
    thread = await _stored(ctx, lambda store: store.get(thread_id, owner))
    if thread is None:
        raise unknown_thread(thread_id)
    # and after it, the last wait before the caller's job row exists (the local runner creates it
    # before it first waits): checked only before it, two follow-ups sent at once both passed
    _refuse_if_running(ctx, owner, thread_id)
    return thread_id, [{k: t[k] for k in ("n", "role", "model", "content")} for t in thread["turns"]]


def _refuse_if_running(ctx: Context, owner: str, thread_id: str) -> None:
    """Refuse a follow-up while a turn of the thread still runs: it was answered without that turn,
    and the thread then stored its turns out of order."""
    if running := server_state(ctx).jobs.store.running_in_thread(owner, thread_id[:MAX_THREAD_ID_CHARS]):
        raise InputError(f"thread {thread_id!r} has a turn still running (job {running}); wait for it with"
                         f" job_result(job_id=\"{running}\"), then ask again", field="thread_id")


async def read_thread(ctx: Context, thread_id: str) -> dict[str, Any] | None:
    """One of the caller's threads with every kept turn, or None (for the ``swarm://threads`` resource:
    a store that cannot be reached is a ``ResourceError``)."""
    owner = owner_of(ctx)
    try:
        return await _stored(ctx, lambda store: store.get(thread_id, owner))
    except SwarmError as exc:  # for the resource: said as what it is, not "error creating resource"
        raise ResourceError(f"{type(exc).__name__}: {exc}") from None


class ThreadSummary(BaseModel):
    thread_id: str
    turns: int
    dropped: int = Field(description="oldest turns dropped (threads.max_turns)")
    started_with: str  # the oldest user turn kept: the thread's first unless dropped > 0
    models: list[str]
    updated_at: float


class ThreadList(BaseModel):
    threads: list[dict[str, Any]]


def register(server: Any) -> None:
    """Add list_threads (always on, like list_jobs)."""

    @server.tool(name="list_threads", title="List threads",
                 annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
                 description="Your conversations, latest first; turns: swarm://threads/{thread_id}.")
    async def list_threads(ctx: Context, limit: Annotated[int, Field(ge=1, le=100)] = 20
                           ) -> Annotated[CallToolResult, ThreadList]:
        owner = owner_of(ctx)
        rows = await _stored(ctx, lambda store: store.list(owner, limit))
        listed = ThreadList(threads=[ThreadSummary(**r).model_dump() for r in rows]).model_dump(mode="json")
        return CallToolResult(content=[TextContent(text=threads_text(listed["threads"]))], structured_content=listed)
