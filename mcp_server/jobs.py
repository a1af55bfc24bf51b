"""Long jobs: a manager that outlives one tool call, over the SQLite job store (mcp_server.jobstore).

A client cuts a tool call off after a while (Claude Desktop at about 60 s). ``JobManager``
starts every job as an asyncio task on the runner, waits up to a wait budget and returns
either the finished envelope or a handle ``{job_id, status: IN_PROGRESS, poll: ...}``; the
job keeps running and ``job_status`` / ``job_result`` finish the story.

Jobs outlive a restart of the process: a job the store still lists as IN_PROGRESS is
dispatched again with the same ``job_id`` by ``resume_unfinished``, and the graph resumes from
its checkpoint (or returns its stored final state). Every job has an owner; a lookup by
another owner finds nothing (the same answer as an unknown id, so ids cannot be probed).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from core.redact import MASK, redact, redact_data
from graphs.context import ProgressFn
from mcp_server.cancel import call_cancelled
from mcp_server.jobstore import FINAL_STATUSES, IN_PROGRESS, JobStore, handle, storable, summary
from providers.base import TraceStep
from swarm.envelope import JobEnvelope
from swarm.executors import AdoptsImages, RemoteExecutor

log = logging.getLogger("swarm.jobs")


Listener = Callable[[str, str, "float | None"], Awaitable[None]]
StoppedJob = Callable[[str, str, str], Awaitable[tuple["dict[str, Any] | None", "list[dict[str, Any]]"]]]
#: how long a cancelled job waits to read what its checkpoint holds
STOPPED_READ_S = 5.0
#: jobs one manager runs at once unless told (``mcp.max_running_jobs``)
DEFAULT_MAX_RUNNING = 32
#: how often ``job_result`` re-reads the row of a job another server process runs
ROW_POLL_S = 0.5


class JobLoop:
    """An event loop in a daemon thread where jobs run, so the server's loop stays responsive.

    A job may block its loop (a heavy first import, CPU-bound image work); with the jobs on
    their own loop, the MCP server keeps answering pings, polls and other calls meanwhile.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="swarm-jobs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def stop(self, final: Callable[[], Awaitable[None]] | None = None) -> None:
        """Cancel what still runs there, run ``final()`` on that loop, then end the thread."""

        async def wind_down() -> None:
            current = asyncio.current_task()

            async def cancel(tasks: list[asyncio.Task[Any]]) -> None:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            # the jobs first; then ``final`` closes what they used while its own helpers still run
            # (psycopg_pool's workers: cancelled before its close, the close re-raised their
            # cancellation and left the pool's connections open); then whatever is left
            await cancel([t for t in asyncio.all_tasks() if t.get_name().startswith(JOB_TASK_PREFIX)])
            if final is not None:
                await final()
            await cancel([t for t in asyncio.all_tasks() if t is not current])

        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wind_down(), self.loop))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
            if not self._thread.is_alive():
                self.loop.close()


#: the name of a job's task on the jobs' loop (``JobLoop.stop`` cancels these first)
JOB_TASK_PREFIX = "swarm-job-"


async def _named(coro: Awaitable[Any], name: str) -> Any:
    """``coro``, in a task called ``name`` (``run_coroutine_threadsafe`` names its tasks Task-N)."""
    task = asyncio.current_task()
    if task is not None:
        task.set_name(name)
    return await coro


class IdempotencyConflict(ValueError):
    """An idempotency key reused for another request."""


def _same_request(row: dict[str, Any], job: dict[str, Any], key: str) -> None:
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


class RunsElsewhere(Exception):
    """The job runs in another server process on the same store: only that one can stop it."""


class JobManager:
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
    ) -> None:
        self.store = store
        self._max_running = max_running or (lambda: DEFAULT_MAX_RUNNING)
        self._running = 0
        self._slots: asyncio.Condition | None = None  # made on the jobs' loop, where every job runs
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
        self._listeners: dict[str, set[Listener]] = {}
        self._closing = False

    # --- starting and waiting ------------------------------------------------------------

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
                _same_request(existing, job, idempotency_key)
                return await self.result(existing["job_id"], owner, wait_s=wait_s, progress=progress)
        runner = self._runner()
        if isinstance(runner, RemoteExecutor):
            job_id = await self._submit_remote(runner, job, owner, idempotency_key, thread_id)
        else:
            job_id = str(uuid.uuid4())
            self.store.create(job_id, owner, job, idempotency_key, thread_id=thread_id)
            self._start(job_id, {**job, "job_id": job_id})
        return await self.result(job_id, owner, wait_s=wait_s, progress=progress, cancel_with_call=True)

    async def _submit_remote(self, runner: Any, job: dict[str, Any], owner: str, idempotency_key: str | None,
                             thread_id: str | None) -> str:
        """Queue ``job`` on the endpoint; its remote id becomes the job id (so a restart re-attaches)."""
        try:
            job_id = str(await runner.submit(job))
        except Exception as exc:  # the endpoint refused the job: recorded as a FAILED job, with the reason
            job_id = str(uuid.uuid4())
            self.store.create(job_id, owner, job, idempotency_key)
            self.store.finish(job_id, "FAILED", {**self._cancelled(job_id, job), "status": "FAILED", "error": _error_of(exc)})
            return job_id
        self.store.create(job_id, owner, job, idempotency_key, remote=True, thread_id=thread_id)
        self._start(job_id, job, remote=True)
        return job_id

    def _start(self, job_id: str, job: dict[str, Any], *, remote: bool = False) -> None:
        home = asyncio.get_running_loop()
        coro = self._execute(job_id, job, home, remote)
        future: asyncio.Future[dict[str, Any]]
        if self._job_loop is None:
            future = home.create_task(coro, name=f"{JOB_TASK_PREFIX}{job_id}")
        else:
            named = _named(coro, f"{JOB_TASK_PREFIX}{job_id}")
            future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(named, self._job_loop.loop), loop=home)
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

    async def _execute(self, job_id: str, job: dict[str, Any], home: asyncio.AbstractEventLoop, remote: bool) -> dict[str, Any]:
        async def progress(stage: str, message: str, fraction: float | None = None) -> None:
            self.store.set_progress(job_id, stage, message, fraction)
            for listener in list(self._listeners.get(job_id, ())):
                self._on_home(home, listener(stage, message, fraction))

        try:
            async with self._slot(job_id, progress):
                runner = self._runner()
                if remote:
                    envelope = await self._follow_remote(runner, job_id, job, progress)
                else:
                    envelope = await runner.run(job, progress)
        except asyncio.CancelledError:
            if self._closing:
                raise  # shutting down: the row stays IN_PROGRESS and resumes on the next start
            envelope = await self._cancelled_with_partial(job_id, job, remote)
            self.store.finish(job_id, "CANCELLED", envelope)
            self._notify(home, job_id)
            raise
        except Exception as exc:  # recorded as a failed job, never a silent hang
            log.error("job %s failed in the runner: %s", job_id, redact(repr(exc)))
            envelope = {**self._cancelled(job_id, job), "status": "FAILED", "error": _error_of(exc)}
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
        self.store.finish(job_id, status, envelope)
        self._notify(home, job_id)
        return envelope

    @contextlib.asynccontextmanager
    async def _slot(self, job_id: str, progress: ProgressFn) -> AsyncIterator[None]:
        """Hold one of ``mcp.max_running_jobs`` slots while the job runs (a client in a loop, or a
        model retrying, started hundreds of jobs at once on one local model); a job past the limit
        waits, saying so in its progress, and a cancel stops the wait too."""
        if self._slots is None:
            self._slots = asyncio.Condition()
        slots = self._slots
        async with slots:
            limit = self._max_running()
            if self._running >= limit:
                await progress("queued", f"{self._running} jobs run in this server, its limit"
                               f" (mcp.max_running_jobs={limit}): this one starts when one ends", None)
                await slots.wait_for(lambda: self._running < self._max_running())
            self._running += 1
        try:
            yield
        finally:
            async with slots:
                self._running -= 1
                slots.notify()

    async def _follow_remote(self, runner: Any, job_id: str, job: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
        """Poll a job on the endpoint to a final state (stream chunks become progress); cancel it there
        when this job is cancelled, but not when the server is merely shutting down."""
        started = time.perf_counter()
        delay = 0.1
        unreachable_since: float | None = None
        row = self.store.get(job_id)
        relay = runner.relay(progress, since=row["created_at"] if row else None)  # queued, then the worker's own
        try:
            while True:
                try:
                    state = dict(await runner.status(job_id))
                    status = state.get("status")
                    await relay.saw(job_id, state)
                except Exception as exc:
                    # a poll that timed out or met a 5xx says nothing of the job, which runs on: keep
                    # following (it was marked FAILED for good, its result orphaned and billed)
                    if getattr(exc, "type", None) not in TRANSIENT_REMOTE_ERRORS:
                        raise
                    unreachable_since = unreachable_since or time.monotonic()
                    gave_up = _gave_up(runner, unreachable_since)
                    if gave_up is not None:
                        raise gave_up from None
                    wait = min(max(delay, float(runner.poll_interval_s)) * 2, UNREACHABLE_POLL_MAX_S)
                    await progress("runpod", f"{getattr(exc, 'message', exc)}; the job runs on there: asking again in"
                                   f" {wait:.0f} s (unreachable for {time.monotonic() - unreachable_since:.0f} s)", None)
                    delay = wait
                    await asyncio.sleep(wait)
                    continue
                if unreachable_since is not None:
                    log.info("job %s: RunPod answers again after %.0f s", job_id, time.monotonic() - unreachable_since)
                    unreachable_since, delay = None, 0.1
                if status in REMOTE_FINAL_STATES:
                    envelope = dict(runner.envelope(job, job_id, state, started))
                    if isinstance(runner, AdoptsImages):  # images a worker on its own disk sent inline
                        envelope = dict(await runner.adopt_images(job, envelope))
                    return envelope
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, float(runner.poll_interval_s))
        except asyncio.CancelledError:
            if not self._closing:
                with contextlib.suppress(Exception):  # best effort; the row says CANCELLED either way
                    await asyncio.wait_for(runner.cancel(job_id), 5)
            raise

    async def _cancelled_with_partial(self, job_id: str, job: dict[str, Any], remote: bool) -> dict[str, Any]:
        """A cancelled job's envelope with what it had made: the partial output and the trace of the
        steps its last checkpoint holds (paid for: they stay in the answer), a ``cancel`` step
        naming where it stopped, the totals, and the time since it was submitted."""
        from swarm.dispatcher import totals_of

        envelope = self._cancelled(job_id, job)
        output: dict[str, Any] | None = None
        trace: list[dict[str, Any]] = []
        if self._stopped_job is not None and not remote:
            try:
                output, trace = await asyncio.wait_for(self._stopped_job(job_id, job["project"], job["action"]),
                                                       STOPPED_READ_S)
            except Exception as exc:  # the answer says cancelled either way
                log.warning("job %s: what it had made could not be read from its checkpoint: %s", job_id,
                            redact(repr(exc)))
        row = self.store.get(job_id) or {}
        last = row.get("progress") or {}
        where = f" (last progress: {last['stage']}: {last.get('message', '')})" if last.get("stage") else ""
        kept = "; the steps above had finished (and were paid): they are in the partial output" if trace else ""
        trace = [*trace, TraceStep(step="cancel", kind="node", provider="jobs", outcome="error",
                                   error_class="JobCancelled", detail=f"cancelled{where}{kept}").model_dump()]
        envelope.update(trace=trace, totals=totals_of(trace))
        if output:
            envelope["output"] = output
        if row.get("created_at"):
            envelope["elapsed_ms"] = round((time.time() - float(row["created_at"])) * 1000, 2)
        return envelope

    @staticmethod
    def _cancelled(job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        error = {"type": "JobCancelled", "message": f"job {job_id} was cancelled"}
        return JobEnvelope.for_job(job, job_id, status="CANCELLED", error=error).to_dict()

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
        row = self.store.get(job_id, owner)
        if row is None:
            raise KeyError(job_id)
        if row["status"] in FINAL_STATUSES:
            return row["result"]
        task = self._tasks.get(job_id) or self._adopt(row)
        budget = self._wait_budget_s() if wait_s is None else wait_s
        if task is None and budget > 0:  # another live server runs it: its row tells when it ends
            row = await self._row_settles(job_id, owner, budget) or row
        elif task is not None and budget > 0:
            await self._wait_here(job_id, task, row, budget, progress, cancel_with_call)
        row = self.store.get(job_id, owner) or row
        if row["status"] in FINAL_STATUSES:
            return row["result"]
        elsewhere = row.get("runner") not in (None, self.store.lease.token) and self.store.lease.alive(row.get("runner"))
        running = handle(row, elsewhere=_pid_of(row) if elsewhere else None)
        if task is not None and not row.get("remote"):
            running["trace"] = await self._steps_so_far(job_id, row)
        return running

    async def _steps_so_far(self, job_id: str, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The trace of the steps a job running here has finished (its last checkpoint holds them),
        for the handle of a job still running: what it has called, and paid, so far. ``[]`` when
        there is no checkpoint yet, or no saver; a job on an endpoint reports progress only."""
        stopped_job = self._stopped_job
        if stopped_job is None:
            return []

        async def read() -> list[dict[str, Any]]:
            return list((await stopped_job(job_id, row["project"], row["action"]))[1])

        try:
            if self._job_loop is None:
                trace = await asyncio.wait_for(read(), STOPPED_READ_S)
            else:  # the saver lives on the jobs' loop
                future = asyncio.run_coroutine_threadsafe(read(), self._job_loop.loop)
                trace = await asyncio.wait_for(asyncio.wrap_future(future), STOPPED_READ_S)
        except Exception as exc:  # the handle says "still running" either way
            log.debug("job %s: steps so far not read: %s", job_id, redact(repr(exc)))
            return []
        return [redact_data(step) for step in trace if isinstance(step, dict)]

    async def _wait_here(self, job_id: str, task: asyncio.Future[dict[str, Any]], row: dict[str, Any], budget: float,
                         progress: ProgressFn | None, cancel_with_call: bool = False) -> None:
        """Wait up to ``budget`` for a job this process runs, relaying its progress to ``progress``;
        with ``cancel_with_call``, a client's cancel of the waiting call cancels the job."""
        listeners = self._listeners.setdefault(job_id, set())
        if progress is not None:
            listeners.add(progress)
            last = row.get("progress")
            if last:  # a poller sees at once where the job stands
                try:
                    await progress(last["stage"], last["message"], last.get("fraction"))
                except Exception:  # a client that went away must not fail the poll
                    log.debug("progress replay for job %s failed", job_id, exc_info=True)
        try:
            await asyncio.wait_for(asyncio.shield(task), budget)
        except TimeoutError:
            pass  # still running: the caller gets a handle
        except asyncio.CancelledError:
            if _current_cancelled():
                if cancel_with_call and call_cancelled():  # the spec: a cancelled request's work SHOULD stop
                    log.info("job %s: the client cancelled the call that started it; cancelling the job", job_id)
                    task.cancel()  # the job writes its CANCELLED row (partial output kept) on its own loop
                raise  # else the caller went away (the connection closed): the job keeps running
            await self._settled(job_id)  # job_cancel stopped the job; wait for its row
        finally:
            if progress is not None:
                listeners.discard(progress)

    async def settles_elsewhere(self, job_id: str, timeout_s: float = 86_400.0) -> bool:
        """Wait until a job this process does not run is final in the store (another server ran
        it), taking it up here if its process dies meanwhile; whether it ended within ``timeout_s``
        (``False`` too when this process took it up: its own end is announced as usual)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._closing:
            row = self.store.get(job_id)
            if row is None:
                return False
            if row["status"] in FINAL_STATUSES:
                return True
            if job_id in self._tasks or self._adopt(row) is not None:
                return False
            await asyncio.sleep(ROW_POLL_S)
        return False

    async def _row_settles(self, job_id: str, owner: str | None, timeout_s: float) -> dict[str, Any] | None:
        """The job's row once it is final, or as it stands after ``timeout_s`` (a job another
        server process runs: only the store says when it ends)."""
        deadline = time.monotonic() + timeout_s
        row = self.store.get(job_id, owner)
        while row is not None and row["status"] not in FINAL_STATUSES and time.monotonic() < deadline:
            await asyncio.sleep(min(ROW_POLL_S, max(0.0, deadline - time.monotonic())))
            row = self.store.get(job_id, owner)
        return row

    def _adopt(self, row: dict[str, Any]) -> asyncio.Future[dict[str, Any]] | None:
        """Run here an unfinished job nobody runs: its server process is gone (killed while
        another server lives on), or this one stopped following it (RunPod unreachable). A job
        another live process runs is left to it. The running task, or None."""
        if row["status"] != IN_PROGRESS or self._closing:
            return None
        runner, job_id = row.get("runner"), row["job_id"]
        if runner == self.store.lease.token:
            # this process's own: only one it let go of (a job being cancelled is not in ``_tasks``
            # either while it writes its result, and must not run again)
            if job_id not in self._let_go:
                return None
        elif not self.store.lease.locks or self.store.lease.alive(runner):
            return None  # runs elsewhere, or no file locks here to tell (then only a restart resumes it)
        if self._resume_row(row):
            log.info("job %s: its server process is gone; resumed here", row["job_id"])
        return self._tasks.get(row["job_id"])

    async def _settled(self, job_id: str, timeout_s: float = 10.0) -> None:
        """Wait until the job's row is final (a cancelled job writes it on its own loop)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = self.store.get(job_id)
            if row is None or row["status"] in FINAL_STATUSES:
                return
            await asyncio.sleep(0.02)

    def status(self, job_id: str, owner: str | None) -> dict[str, Any]:
        """``{job_id, status, progress, ...}`` without the output; KeyError when unknown."""
        row = self.store.get(job_id, owner)
        if row is None:
            raise KeyError(job_id)
        if job_id not in self._tasks and self._adopt(row) is not None:
            row = self.store.get(job_id, owner) or row
        return summary(row, running_here=job_id in self._tasks)

    async def cancel(self, job_id: str, owner: str | None) -> dict[str, Any]:
        """Cancel a running job (its runner cancels the remote job too); finished jobs stay as they are."""
        row = self.store.get(job_id, owner)
        if row is None:
            raise KeyError(job_id)
        task = self._tasks.get(job_id)
        if row["status"] == IN_PROGRESS:
            if task is not None:
                task.cancel()
                await self._settled(job_id)
            elif row.get("runner") != self.store.lease.token and self.store.lease.alive(row.get("runner")):
                pid = str(row.get("runner")).split("-", 1)[0]
                raise RunsElsewhere(f"job {job_id} runs in another swarm-mcp process (pid {pid}) on this store;"
                                    " cancel it from the client connected to that server, or stop that server")
            else:
                job = {"project": row["project"], "action": row["action"]}
                self.store.finish(job_id, "CANCELLED", self._cancelled(job_id, job))
                self._notify(asyncio.get_running_loop(), job_id)
        return self.status(job_id, owner)

    def list(self, owner: str | None, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        return [summary(r, running_here=r["job_id"] in self._tasks) for r in self.store.list(owner, status, limit)]

    # --- restart -------------------------------------------------------------------------

    def resume_unfinished(self) -> builtins.list[str]:  # ``list`` here is the method above
        """Dispatch again every job left IN_PROGRESS (by a crash or a restart), same job ids.

        A job another live server process runs (two MCP clients on one store) is left to it,
        and of two servers resuming a dead one's job only the one that claims it first runs it.
        """
        resumed, elsewhere = [], 0
        for row in self.store.unfinished():
            if row["job_id"] in self._tasks:
                continue
            if self.store.lease.alive(row.get("runner")):
                elsewhere += 1
                continue
            if self._resume_row(row):
                resumed.append(row["job_id"])
        if resumed:
            log.info("resumed %d unfinished job(s): %s", len(resumed), ", ".join(resumed))
        if elsewhere:
            log.info("%d unfinished job(s) left to the server process(es) running them", elsewhere)
        return resumed

    def _resume_row(self, row: dict[str, Any]) -> bool:
        """Claim an unfinished job of a gone process (or one this process let go of) and run it
        again under its id: from its checkpoint, or re-attached to the endpoint's job. A job whose
        stored input lost something (an inline image too large to keep, a secret never written to
        disk) fails as ``JobLost`` instead of running on what is left. False: not claimed."""
        job_id = row["job_id"]
        if job_id in self._tasks or not self.store.claim(job_id, row.get("runner")):
            return False
        self._let_go.discard(job_id)
        lost = _input_lost(row["input"]) if not row.get("remote") else None
        if lost is not None:
            self.store.finish(job_id, "FAILED", {**self._cancelled(job_id, row), "status": "FAILED",
                              "error": {"type": "JobLost", "message": lost}})
            return False
        job = {"project": row["project"], "action": row["action"], "input": row["input"]}
        if row.get("remote"):
            self._start(job_id, job, remote=True)  # re-attach to the endpoint's job
        else:
            self._start(job_id, {**job, "job_id": job_id})  # resume from its checkpoint
        return True

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


REMOTE_FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
#: error types of a status poll that say nothing of the job itself (``RunPodError.type``)
TRANSIENT_REMOTE_ERRORS = frozenset({"ProviderTimeout", "ProviderUnavailable", "ProviderRateLimited"})
#: the longest wait between two polls while the endpoint does not answer
UNREACHABLE_POLL_MAX_S = 30.0


def _error_of(exc: BaseException) -> dict[str, str]:
    """``{type, message}`` for an envelope: a runner's typed error as is, anything else as internal."""
    if isinstance(getattr(exc, "type", None), str) and isinstance(getattr(exc, "message", None), str):
        return {"type": exc.type, "message": redact(exc.message)}  # type: ignore[attr-defined]
    return {"type": "InternalError", "message": "the runner failed on this job; see the server log"}


def _gave_up(runner: Any, since: float) -> Exception | None:
    """The error that ends following a job whose endpoint has not answered for ``runner.timeout_s``
    (RunPod keeps a result 30 minutes; an endpoint down that long is no blip), else None."""
    limit = float(getattr(runner, "timeout_s", 600.0))
    waited = time.monotonic() - since
    if waited < limit:
        return None
    from swarm.executors.runpod import RunPodError

    return RunPodError("ProviderUnavailable", f"the endpoint did not answer for {waited:.0f} s (runner.runpod.timeout_s="
                       f"{limit:g}); the job may still run there: look for it in the endpoint's requests before"
                       " submitting it again")


def _current_cancelled() -> bool:
    task = asyncio.current_task()
    return bool(task and task.cancelling())


def _input_lost(value: Any) -> str | None:
    """Why a job's stored input cannot run again after a restart (None: it can). The store keeps
    input redacted and huge strings as stubs (``jobstore.storable``), so a job resumed from it would
    fetch a signed URL without its signature or run a task with its secret masked: a different job."""
    stored = json.dumps(value, ensure_ascii=False)  # the row's JSON: one scan for either mark
    if '"_omitted_chars":' in stored:
        return ("the server restarted and this job's inline input (an image read from a path, or sent as base64) was"
                " too large to keep; call the tool again with the same arguments (a path is read again), or give"
                " the image by url or storage key, which a restart keeps")
    if MASK in stored:
        return ("the server restarted before this job finished, and its input held a secret (a signed URL, a key or a"
                " password), which is never written to disk; submit it again")
    return None


def _pid_of(row: dict[str, Any]) -> str | None:
    """The pid of the server process that runs a job (from its lease token)."""
    runner = row.get("runner")
    return str(runner).split("-", 1)[0] if runner else None
