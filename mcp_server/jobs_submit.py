"""Starting a job: the idempotency key that finds the first job of a retry again
(``IdempotencyConflict`` when it named another request), queuing on a RunPod endpoint (the
endpoint's id becomes the job id) and a job refused on its input before anything ran (no job is
kept). ``SubmitsJobs`` is a base of ``JobManager`` (mcp_server.jobs), which provides the state it
declares, ``_start`` and ``result``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

from core.errors import InputError
from core.redact import redact
from graphs.context import ProgressFn
from mcp_server.jobenvelopes import error_of
from mcp_server.jobstore import JobStore, storable
from swarm.executors import RemoteExecutor

log = logging.getLogger("swarm.jobs")


class IdempotencyConflict(ValueError):
    """An idempotency key reused for another request."""


def same_request(row: dict[str, Any], job: dict[str, Any], key: str) -> None:
    """Raise ``IdempotencyConflict`` when ``key`` named another action or other input (the
    conversation a retry opens, ``thread_id``/``history``, aside: each call of a tool opens its own)."""
    def core(value: Any) -> Any:
        value = value if isinstance(value, dict) else {}
        return {k: v for k, v in value.items() if k not in ("thread_id", "history")}

    if (row["project"], row["action"]) != (job["project"], job["action"]):
        raise IdempotencyConflict(
            f"idempotency_key {key!r} already names a {row['project']}/{row['action']} job ({row['job_id']});"
            f" use a new key for this {job['project']}/{job['action']} call")
    if core(row.get("input")) != core(json.loads(json.dumps(storable(job.get("input") or {})))):
        raise IdempotencyConflict(
            f"idempotency_key {key!r} already names job {row['job_id']} with other input; a retry must send the"
            " same input, and a new request a new key")


def refused_before_running(result: dict[str, Any]) -> bool:
    """Whether a finished job failed on its input before anything ran: an ``InputError`` and no
    step but the dispatcher's (and a config reload's). list_jobs listed each such call as a job."""
    error = result.get("error") or {}
    return (result.get("status") == "FAILED" and error.get("type") == "InputError"
            and all(step.get("provider") in ("dispatcher", "config") for step in result.get("trace") or []))


class SubmitsJobs:
    """``submit`` (see the module); ``JobManager`` provides the state below."""

    store: JobStore
    _runner: Callable[[], Any]
    #: (owner, thread id) of the follow-ups being queued on an endpoint (``_submit_remote``)
    _queuing: set[tuple[str, str]]

    def _start(self, job_id: str, job: dict[str, Any], *, remote: bool = False, resumed: bool = False) -> None:
        """Run ``job`` as a task under ``job_id`` (``JobManager._start``)."""
        raise NotImplementedError

    async def result(
        self, job_id: str, owner: str | None, *, wait_s: float | None = None, progress: ProgressFn | None = None,
        cancel_with_call: bool = False,
    ) -> dict[str, Any]:
        """The finished envelope, or a handle (``JobManager.result``)."""
        raise NotImplementedError

    async def submit(
        self,
        job: dict[str, Any],
        owner: str,
        *,
        progress: ProgressFn | None = None,
        wait_s: float | None = None,
        idempotency_key: str | None = None,
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        """Start ``job`` and wait up to ``wait_s`` (default: the wait budget); ``thread_id``: the
        conversation its turns join when it completes.

        Returns the finished envelope, or ``handle(row)`` when the job is still running.
        The same ``idempotency_key`` from the same owner returns the first job instead of
        starting another one.
        """
        if idempotency_key:
            existing = self.store.by_idempotency_key(owner, idempotency_key)
            if existing is not None:
                same_request(existing, job, idempotency_key)
                return await self.result(existing["job_id"], owner, wait_s=wait_s, progress=progress)
        runner = self._runner()
        if isinstance(runner, RemoteExecutor):
            job_id = await self._submit_remote(runner, job, owner, idempotency_key, thread_id)
            return await self.result(job_id, owner, wait_s=wait_s, progress=progress, cancel_with_call=True)
        job_id = str(uuid.uuid4())
        try:
            self.store.create(job_id, owner, job, idempotency_key, thread_id=thread_id)
        except sqlite3.IntegrityError:  # the same key from another server, between its look and this
            first = self.store.by_idempotency_key(owner, idempotency_key) if idempotency_key else None
            if first is None:
                raise
            same_request(first, job, str(idempotency_key))
            return await self.result(first["job_id"], owner, wait_s=wait_s, progress=progress)
        self._start(job_id, {**job, "job_id": job_id})
        result = await self.result(job_id, owner, wait_s=wait_s, progress=progress, cancel_with_call=True)
        if refused_before_running(result):  # an argument error, as one the schema refuses: no job is kept
            self.store.forget(job_id)
            return {**result, "job_id": None}
        return result

    async def _submit_remote(self, runner: Any, job: dict[str, Any], owner: str, idempotency_key: str | None,
                             thread_id: str | None) -> str:
        """Queue ``job`` on the endpoint; its remote id becomes the job id (so a restart re-attaches).
        A follow-up of a thread whose last turn is still being queued is refused, as one whose turn
        still runs is (``thread_tools.open_thread``)."""
        claim = (owner, thread_id) if thread_id is not None else None
        if claim is not None:
            if claim in self._queuing:
                raise InputError(f"thread {thread_id!r} has a turn still being queued on the endpoint; wait for"
                                 " its answer, then ask again", field="thread_id")
            self._queuing.add(claim)
        try:
            return await self._queue(runner, job, owner, idempotency_key, thread_id)
        finally:
            if claim is not None:
                self._queuing.discard(claim)  # the job's row stands for the turn now

    async def _queue(self, runner: Any, job: dict[str, Any], owner: str, idempotency_key: str | None,
                     thread_id: str | None) -> str:
        started = time.perf_counter()
        try:
            job_id = str(await runner.submit(job))
        except Exception as exc:  # the endpoint refused the job: recorded as a FAILED job, with the reason
            job_id = str(uuid.uuid4())  # and the runner's step (not queued), as the CLI's answer has it
            log.error("job %s was not queued on the endpoint: %s", job_id, redact(repr(exc)))
            self.store.create(job_id, owner, job, idempotency_key)
            self.store.finish(job_id, "FAILED", {**runner.failure(job, None, error_of(exc), started), "job_id": job_id})
            return job_id
        self.store.create(job_id, owner, job, idempotency_key, remote=True, thread_id=thread_id)
        self._start(job_id, job, remote=True)
        return job_id
