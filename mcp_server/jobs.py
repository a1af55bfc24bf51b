"""Long jobs: a manager that outlives one tool call, over the SQLite job store (mcp_server.jobstore).

A client cuts a tool call off after a while (Claude Desktop at about 60 s). ``JobManager``
starts every job as an asyncio task on the runner, waits up to a wait budget and returns
either the finished envelope or a handle ``{job_id, status: IN_PROGRESS, poll: ...}``; the
job keeps running and ``job_status`` / ``job_result`` finish the story.

Jobs outlive a restart of the process: a job the store still lists as IN_PROGRESS is
dispatched again with the same ``job_id`` by ``resume_unfinished``, and the graph resumes from
its checkpoint (or returns its stored final state). Every job has an owner; a lookup by
another owner finds nothing (the same answer as an unknown id, so ids cannot be probed).

Around it: ``mcp_server.jobloop`` (the jobs' loop, the slot limiter), ``mcp_server.jobremote``
(following a job on a RunPod endpoint), ``mcp_server.jobenvelopes`` (cancelled and failed
envelopes, the steps so far), ``mcp_server.jobresume`` (resume and adopt),
``mcp_server.jobwait`` (waiting for a job here or in another server process) and
``mcp_server.jobs_submit`` (``submit``: idempotency keys, queuing on an endpoint).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from core.errors import ProviderUnavailable
from core.redact import redact
from graphs.checkpoint import LastStep
from graphs.context import ProgressFn
from mcp_server.jobenvelopes import (
    StoppedJob,
    cancelled_envelope,
    cancelled_with_partial,
    error_of,
    steps_so_far,
)
from mcp_server.jobloop import JOB_TASK_PREFIX, JobLoop, JobSlots, named
from mcp_server.jobremote import follow_remote
from mcp_server.jobresume import ResumesJobs, refused_envelope
from mcp_server.jobs_submit import IdempotencyConflict, SubmitsJobs, refused_before_running
from mcp_server.jobstore import FINAL_STATUSES, IN_PROGRESS, JobStore, handle, summary
from mcp_server.jobwait import WaitsForJobs
from swarm.executors.runpod_progress import ProgressRelay

log = logging.getLogger("swarm.jobs")

#: named here for the modules that import them from ``mcp_server.jobs``
__all__ = ["IdempotencyConflict", "JobManager", "RunsElsewhere", "refused_before_running"]


Listener = Callable[[str, str, "float | None"], Awaitable[None]]
T = TypeVar("T")


class RunsElsewhere(Exception):
    """The job runs in another server process on the same store: only that one can stop it."""


class JobManager(SubmitsJobs, ResumesJobs, WaitsForJobs):
    """Starts jobs as background tasks, waits within a budget, finds them again by id.

    Args:
        store: where jobs are recorded.
        runner: ``() -> runner`` with ``async run(job, progress) -> envelope`` (chosen per job,
            so a config edit takes effect for the next job).
        wait_budget_s: ``() -> seconds`` a call waits before it returns a handle.
        on_finished: ``async (job_id) -> None``, called on the caller's loop once a result is stored.
        job_loop: where jobs run (default: the caller's own loop).
        on_completed: ``(row, envelope) -> envelope``, run on a COMPLETED job before its result is
            stored (the job's thread keeps its turns there: ``swarm.threads.record_turns``).
        stopped_job: ``async (job_id, project, action) -> (partial output, trace)`` from a local
            job's last checkpoint (``Runtime.stopped_job``): what a cancelled job had made.
        max_running: ``() -> n``: at most ``n`` jobs run at once here; the others wait, queued, in
            submission order (their progress says so) and start as slots free.
        retention_days: ``() -> checkpointer.retention_days``: an unfinished job untouched that long
            fails as ``JobExpired`` instead of running again (None: never).
        last_step: ``async (job_id) -> LastStep | None``: when a local job's last step ran, from its
            checkpoints (``Runtime.last_step``): one taken up again whose last step is past the
            retention (or whose checkpoints were pruned) fails as ``JobExpired`` too.
    """

    def __init__(
        self,
        store: JobStore,
        runner: Callable[[], Any],
        wait_budget_s: Callable[[], float],
        on_finished: Callable[[str], Awaitable[None]] | None = None,
        job_loop: JobLoop | None = None,
        on_completed: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
        stopped_job: StoppedJob | None = None,
        max_running: Callable[[], int] | None = None,
        retention_days: Callable[[], float] | None = None,
        last_step: Callable[[str], Awaitable[LastStep | None]] | None = None,
    ) -> None:
        self.store = store
        self._retention_days = retention_days
        self._last_step = last_step
        self._slots = JobSlots(max_running)
        self._on_completed = on_completed
        self._stopped_job = stopped_job
        self._runner = runner
        self._wait_budget_s = wait_budget_s
        self._on_finished = on_finished
        self._job_loop = job_loop
        self._tasks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: jobs this process stopped following while they still run (a RunPod endpoint that came back
        #: IN_PROGRESS): the only rows of its own that ``_adopt`` takes up again
        self._let_go: set[str] = set()
        #: (owner, thread id) of the follow-ups being queued on an endpoint: their job rows do not
        #: exist until the endpoint answers, so a second follow-up sent meanwhile saw no turn running
        self._queuing: set[tuple[str, str]] = set()
        self._listeners: dict[str, set[Listener]] = {}
        #: the followers of the jobs on an endpoint this process follows: the steps their workers report
        self._relays: dict[str, ProgressRelay] = {}
        self._closing = False
        #: jobs that ended while the store could not be written: (status, envelope), stored later
        self._unsaved: dict[str, tuple[str, dict[str, Any]]] = {}

    # --- starting and waiting ------------------------------------------------------------

    def _start(self, job_id: str, job: dict[str, Any], *, remote: bool = False, resumed: bool = False) -> None:
        home = asyncio.get_running_loop()
        coro = self._execute(job_id, job, home, remote, resumed)
        future: asyncio.Future[dict[str, Any]]
        if self._job_loop is None:
            future = home.create_task(coro, name=f"{JOB_TASK_PREFIX}{job_id}")
        else:
            in_task = named(coro, f"{JOB_TASK_PREFIX}{job_id}")
            future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(in_task, self._job_loop.loop), loop=home)
        self._tasks[job_id] = future
        future.add_done_callback(lambda _f: self._tasks.pop(job_id, None))

    def _on_home(self, home: asyncio.AbstractEventLoop, coro: Awaitable[None]) -> None:
        """Run ``coro`` on the server's loop without waiting for it (fire and forget)."""

        async def guarded() -> None:
            try:
                await coro
            except Exception:  # a client that went away must not fail the job
                log.debug("callback on the server loop failed", exc_info=True)

        if home.is_closed():
            return
        asyncio.run_coroutine_threadsafe(guarded(), home)

    async def _execute(self, job_id: str, job: dict[str, Any], home: asyncio.AbstractEventLoop, remote: bool,
                       resumed: bool = False) -> dict[str, Any]:
        async def progress(stage: str, message: str, fraction: float | None = None) -> None:
            try:
                self.store.set_progress(job_id, stage, message, fraction)
            except ProviderUnavailable as exc:  # a full disk stops no job: its end is kept here (_finish)
                log.debug("job %s: progress not stored: %s", job_id, exc)
            for listener in list(self._listeners.get(job_id, ())):
                self._on_home(home, listener(stage, message, fraction))

        try:
            # a local job taken up again: judged by its last checkpoint first, without a slot
            if resumed and (expired := await self._checkpoint_expired(job_id)) is not None:
                envelope = refused_envelope(job_id, job, expired[0], ran_s=expired[1])
            else:
                envelope = await self._run(job_id, job, progress, remote)
        except asyncio.CancelledError:
            if self._closing:
                raise  # shutting down: the row stays IN_PROGRESS and resumes on the next start
            envelope = await cancelled_with_partial(self.store, self._stopped_job, job_id, job, remote)
            self.store.finish(job_id, "CANCELLED", envelope)
            self._notify(home, job_id)
            raise
        except Exception as exc:  # recorded as a failed job, never a silent hang
            log.error("job %s failed in the runner: %s", job_id, redact(repr(exc)))
            envelope = {**cancelled_envelope(job_id, job), "status": "FAILED", "error": error_of(exc)}
        envelope["job_id"] = job_id
        status = envelope.get("status")
        if status not in FINAL_STATUSES:
            # the runner stopped following a job that still runs elsewhere: keep it open
            log.warning("job %s came back %s from the runner; left IN_PROGRESS for resume", job_id, status)
            self._let_go.add(job_id)
            return envelope
        if status == "COMPLETED" and self._on_completed is not None:
            row = self.store.get(job_id)
            if row is not None:
                envelope = self._on_completed(row, envelope)
        self._finish(job_id, str(status), envelope)
        self._notify(home, job_id)
        return envelope

    async def _run(self, job_id: str, job: dict[str, Any], progress: ProgressFn, remote: bool) -> dict[str, Any]:
        """The job's envelope from the runner, once a slot is free."""
        async with self._slots.hold(progress):
            runner = self._runner()
            if remote:
                return await follow_remote(runner, job_id, job, progress, store=self.store,
                                           closing=lambda: self._closing, relays=self._relays)
            result: dict[str, Any] = await runner.run(job, progress)
            return result

    def _finish(self, job_id: str, status: str, envelope: dict[str, Any]) -> None:
        """Store the job's end. A store that cannot be written now (the disk full) keeps it in this
        process (``_unsaved``: answered from there, stored at the next look that can): the job sat
        IN_PROGRESS for good, its caller got an internal error, and a restart paid for it again."""
        try:
            self.store.finish(job_id, status, envelope)
        except ProviderUnavailable as exc:
            log.error("job %s ended %s, but %s; its result is kept in this process until it can be stored",
                      job_id, status, exc)
            self._unsaved[job_id] = (status, envelope)

    def _save_unsaved(self, job_id: str | None = None) -> None:
        """Store what ``_finish`` could not (``job_id``'s, or every one), where the store takes it now."""
        for unsaved in [job_id] if job_id is not None else list(self._unsaved):
            if unsaved not in self._unsaved:
                continue
            try:
                self.store.finish(unsaved, *self._unsaved[unsaved])
            except ProviderUnavailable:
                return  # still full: the next look tries again
            del self._unsaved[unsaved]

    def _with_unsaved(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` as it would be stored, for a job whose end is kept here only (``_unsaved``)."""
        kept = self._unsaved.get(row["job_id"])
        return row if kept is None else {**row, "status": kept[0], "result": kept[1]}

    def _notify(self, home: asyncio.AbstractEventLoop, job_id: str) -> None:
        if self._on_finished is not None and not self._closing:
            self._on_home(home, self._on_finished(job_id))

    async def result(
        self, job_id: str, owner: str | None, *, wait_s: float | None = None, progress: ProgressFn | None = None,
        cancel_with_call: bool = False,
    ) -> dict[str, Any]:
        """The finished envelope, waiting up to ``wait_s``; a handle when it is still running.
        ``cancel_with_call``: the tool call waiting here started the job, and the client cancelling
        that call (``notifications/cancelled``) cancels the job too; a poll (``job_result``) that is
        cancelled, or a client that goes away, only stops waiting.

        Raises:
            KeyError: no job ``job_id`` is visible to ``owner``.
        """
        self._save_unsaved(job_id)
        row = self.store.get(job_id, owner)
        if row is None:
            raise KeyError(job_id)
        row = self._with_unsaved(row)
        if row["status"] in FINAL_STATUSES:
            return row["result"]
        task = self._tasks.get(job_id) or self._adopt(row)
        budget = self._wait_budget_s() if wait_s is None else wait_s
        if task is None and budget > 0:  # another live server runs it: its row tells when it ends
            started = time.monotonic()
            row = await self._row_settles(job_id, owner, budget) or row
            task = self._tasks.get(job_id)  # taken over here when its server died during the wait
            budget -= time.monotonic() - started
        if task is not None and budget > 0:
            await self._wait_here(job_id, task, row, budget, progress, cancel_with_call)
        row = self._with_unsaved(self.store.get(job_id, owner) or row)
        if row["status"] in FINAL_STATUSES:
            return row["result"]
        elsewhere = row.get("runner") not in (None, self.store.lease.token) and self.store.lease.alive(row.get("runner"))
        running = handle(row, elsewhere=_pid_of(row) if elsewhere else None)
        if task is not None:  # what a local job's checkpoint holds, or a remote job's worker last reported
            running["trace"] = await self.steps_so_far(job_id, row)
        return running

    async def steps_so_far(self, job_id: str, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The trace steps a job this process runs has finished (``[]`` for one it does not run)."""
        if job_id not in self._tasks:
            return []
        return await steps_so_far(self._stopped_job, self._job_loop, job_id, row, self._relays.get(job_id))

    def status(self, job_id: str, owner: str | None) -> dict[str, Any]:
        """``{job_id, status, progress, ...}`` without the output; KeyError when unknown."""
        self._save_unsaved(job_id)
        row = self.store.get(job_id, owner)
        if row is None:
            raise KeyError(job_id)
        row = self._with_unsaved(row)
        if job_id not in self._tasks and self._adopt(row) is not None:
            row = self.store.get(job_id, owner) or row
        return self._summary(row)

    def _summary(self, row: dict[str, Any]) -> dict[str, Any]:
        """``summary`` of ``row``, with ``runs_in``: the pid of another live swarm-mcp process
        running it (it read "waiting to be resumed" while that process ran it)."""
        here = row["job_id"] in self._tasks
        out = summary(row, running_here=here)
        runner = row.get("runner")
        if (not here and row["status"] == IN_PROGRESS and runner and runner != self.store.lease.token
                and self.store.lease.alive(runner)):
            out["runs_in"] = str(runner).split("-", 1)[0]
        return out

    async def cancel(self, job_id: str, owner: str | None) -> dict[str, Any]:
        """Cancel a running job (its runner cancels the remote job too); finished jobs stay as they are
        (one whose end is kept here only, ``_unsaved``, too: a cancel wrote CANCELLED over it)."""
        self._save_unsaved(job_id)
        row = self.store.get(job_id, owner)
        if row is None:
            raise KeyError(job_id)
        row = self._with_unsaved(row)
        task = self._tasks.get(job_id)
        if row["status"] == IN_PROGRESS:
            if task is not None:
                task.cancel()
                await self._settled(job_id)
            elif row.get("runner") != self.store.lease.token and self.store.lease.alive(row.get("runner")):
                pid = str(row.get("runner")).split("-", 1)[0]
                raise RunsElsewhere(f"job {job_id} runs in another swarm-mcp process (pid {pid}) on this store;"
                                    " cancel it from the client connected to that server, or stop that server")
            elif self.store.claim(job_id, row.get("runner")):  # its server is gone: stopped here
                job = {"project": row["project"], "action": row["action"]}
                # what its checkpoint holds (a draft paid before the server died) stays, as it does
                # for a job cancelled on its own server: it was an empty CANCELLED row
                envelope = await self._on_job_loop(
                    cancelled_with_partial(self.store, self._stopped_job, job_id, job, bool(row.get("remote"))))
                self.store.finish(job_id, "CANCELLED", envelope)
                self._notify(asyncio.get_running_loop(), job_id)
        return self.status(job_id, owner)

    async def _on_job_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro`` run on the jobs' loop (where the saver lives), or here when there is none."""
        if self._job_loop is None:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._job_loop.loop))

    def list(self, owner: str | None, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        self._save_unsaved()
        rows = [self._with_unsaved(r) for r in self.store.list(owner, status, limit)]
        # a job its server died with is taken over here, as job_status would (``_adopt``): listed, it
        # stayed IN_PROGRESS with its progress frozen until someone asked for it by id
        adopted = [r for r in rows if r["status"] == IN_PROGRESS and r["job_id"] not in self._tasks
                   and self._adopt(r) is not None]
        if adopted:
            rows = [self._with_unsaved(r) for r in self.store.list(owner, status, limit)]
        return [self._summary(r) for r in rows]

    # --- shutdown (restart: resume_unfinished and _adopt, in mcp_server.jobresume) -----

    async def aclose(self, final: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop following running jobs without marking them (they resume on the next start);
        ``final()`` runs on the jobs' loop afterwards (to close what the jobs opened there)."""
        self._closing = True
        tasks = list(self._tasks.values())
        if tasks:
            log.info("stopping: %d running job(s) let go, for the next server to resume: %s", len(tasks),
                     ", ".join(self._tasks))
        for task in tasks:
            task.cancel()
        if self._job_loop is not None:
            await self._job_loop.stop(final)
            return
        await asyncio.gather(*tasks, return_exceptions=True)
        if final is not None:
            await final()


def _pid_of(row: dict[str, Any]) -> str | None:
    """The pid of the server process that runs a job (from its lease token)."""
    runner = row.get("runner")
    return str(runner).split("-", 1)[0] if runner else None

