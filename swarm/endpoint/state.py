"""The local endpoint's job queue and state machine (no HTTP here).

Jobs move IN_QUEUE -> IN_PROGRESS -> COMPLETED | FAILED, or end CANCELLED (``/cancel``,
``/purge-queue``) or TIMED_OUT (execution timeout, or a ttl that ran out in the queue). A job's
ttl counts from its submission, as RunPod's does: one still running when it runs out is removed
(its ``/status`` answers 404, ``JobStore.removed`` says why). Everything runs on the server's event
loop; nothing here is thread-safe and nothing needs to be.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swarm.endpoint.liveness import ProcessCheck, Worker, alive

log = logging.getLogger("swarm.endpoint")

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What a RunPod endpoint enforces; the defaults are RunPod's own."""

    endpoint_id: str = "local"
    api_key: str = ""
    run_limit_bytes: int = 10 * MB
    runsync_limit_bytes: int = 20 * MB
    async_retention_s: float = 30 * 60
    sync_retention_s: float = 60
    execution_timeout_s: float = 600
    queue_ttl_s: float = 24 * 3600
    runsync_wait_s: float = 90
    runsync_max_wait_s: float = 300
    take_hold_s: float = 20
    stop_hold_s: float = 20
    worker_lost_s: float = 10
    #: a worker the endpoint started, its process running, that has not polled this long is lost
    #: (stopped, wedged); its event loop held by a first job's imports stalled 11 s at load 15
    worker_stall_s: float = 120
    reap_interval_s: float = 0.2
    #: the wait between two calls of a job's ``webhook`` that got no 2xx (RunPod's: 10 s)
    webhook_retry_delay_s: float = 10
    #: whether a FAILED job keeps the handler's ``output`` beside its ``error``: the SDK's own local
    #: API (``--rp_serve_api``) answers a FAILED job with ``{id, status, error}`` only, and RunPod
    #: documents no answer that keeps it, so by default it is dropped here too: a client must not
    #: depend on it (the swarm handler's error string carries its envelope, ``for_runpod``)
    failed_output: bool = False
    #: whether a request's ``policy.executionTimeout`` and ``policy.ttl`` must reach RunPod's minimums
    #: (5 s and 10 s; ``api.POLICY_LIMITS``). False (``--relax-policy-limits``) takes any from 1 ms,
    #: for tests that watch a job time out; the 7-day maximum stands either way
    policy_minimums: bool = True


@dataclass
class Job:
    """One request, as the endpoint tracks it."""

    id: str
    input: Any
    sync: bool
    execution_timeout_s: float
    ttl_s: float
    webhook: str | None = None
    #: the request's ``s3Config``: handed to the worker with the job, never shown to a client
    s3_config: Any = None
    #: ``policy.lowPriority``: RunPod starts no worker for it; here it waits behind every job without
    low_priority: bool = False
    status: str = "IN_QUEUE"
    created_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    output: Any = None
    error: Any = None
    progress: Any = None
    stream: list[Any] = field(default_factory=list)
    retries: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> dict[str, Any]:
        """The job as ``/status`` shows it."""
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started_at is not None:
            body["delayTime"] = round((self.started_at - self.created_at) * 1000)
            if self.finished_at is not None:
                body["executionTime"] = round((self.finished_at - self.started_at) * 1000)
        if self.worker_id:
            body["workerId"] = self.worker_id
        if self.status == "IN_PROGRESS" and self.progress is not None:
            body["output"] = self.progress
        elif self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        if self.retries:
            body["retries"] = self.retries
        return body


def new_job_id(sync: bool) -> str:
    """An id shaped like RunPod's: a UUID with a region suffix; sync jobs start ``sync-``."""
    return f"{'sync-' if sync else ''}{uuid.uuid4()}-u1"


class JobStore:
    """Queue, jobs, workers and the counters ``/health`` reports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.workers: dict[str, Worker] = {}
        self.counts = {"completed": 0, "failed": 0, "retried": 0, "cancelled": 0, "timedOut": 0}
        self._queued = asyncio.Event()
        self.closing = asyncio.Event()
        #: when this store began (wall clock): it holds no job from before, an earlier run's included
        self.started_at = time.time()
        #: called with (url, the job's ``/status`` answer) when a job that named a ``webhook`` ends
        self.notify: Callable[[str, dict[str, Any]], None] | None = None
        #: ids of jobs removed while running (their ttl ran out) -> (when, why), kept as long as a
        #: /run result, so a client asking about one hears why it is gone
        self.removed: dict[str, tuple[float, str]] = {}
        #: set by the server that started workers itself: whether a worker's process runs (``liveness``)
        self.process_alive: ProcessCheck | None = None

    # --- client side -----------------------------------------------------------------------

    def submit(self, job_input: Any, *, sync: bool, policy: dict[str, Any] | None = None, webhook: str | None = None,
               s3_config: Any = None) -> Job:
        policy = policy or {}
        timeout_ms = policy.get("executionTimeout")
        ttl_ms = policy.get("ttl")
        job = Job(
            id=new_job_id(sync),
            input=job_input,
            sync=sync,
            execution_timeout_s=timeout_ms / 1000 if timeout_ms else self.settings.execution_timeout_s,
            ttl_s=ttl_ms / 1000 if ttl_ms else self.settings.queue_ttl_s,
            webhook=webhook,
            s3_config=s3_config,
            low_priority=policy.get("lowPriority") is True,
        )
        self.jobs[job.id] = job
        self._enqueue(job)
        return job

    def _enqueue(self, job: Job, *, first: bool = False) -> None:
        """Queue ``job`` last among the jobs of its priority, or ``first`` among them: a job without
        ``low_priority`` goes ahead of every low-priority one (RunPod starts no worker for those:
        they run when a worker has nothing else to do)."""
        at = len(self.queue)
        if first and not job.low_priority:
            at = 0
        elif first or not job.low_priority:
            at = next((i for i, queued in enumerate(self.queue)
                       if (other := self.jobs.get(queued)) is not None and other.low_priority), at)
        self.queue.insert(at, job.id)
        self._queued.set()

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def take_stream(self, job: Job) -> list[dict[str, Any]]:
        """Stream chunks not yet handed out (``/stream`` consumes them, like RunPod's)."""
        chunks, job.stream = job.stream, []
        return [{"output": chunk} for chunk in chunks]

    def cancel(self, job: Job) -> None:
        if job.status == "IN_QUEUE":
            self._dequeue(job.id)
            self._finish(job, "CANCELLED")
        elif job.status == "IN_PROGRESS":
            self._finish(job, "CANCELLED")
            self._signal_stop(job)

    def retry(self, job: Job) -> bool:
        """Queue a FAILED or TIMED_OUT job again under the same id; False for other states."""
        if job.status not in {"FAILED", "TIMED_OUT"}:
            return False
        job.status, job.output, job.error, job.progress = "IN_QUEUE", None, None, None
        job.started_at = job.finished_at = job.worker_id = None
        job.created_at = time.monotonic()
        job.stream.clear()
        job.retries += 1
        job.done = asyncio.Event()
        for worker in self.workers.values():  # a stop meant for its earlier run
            worker.forget_stop(job.id)
        self.counts["retried"] += 1
        self._enqueue(job)
        return True

    def purge_queue(self) -> int:
        """Cancel every job still waiting for a worker; running jobs are left alone."""
        removed = 0
        while self.queue:
            job = self.jobs.get(self.queue.popleft())
            if job and job.status == "IN_QUEUE":
                self._finish(job, "CANCELLED", error="purged from the queue before a worker took it")
                removed += 1
        return removed

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        alive = [w for w in self.workers.values() if self._alive(w, now)]
        busy = {j.worker_id for j in self.jobs.values() if j.status == "IN_PROGRESS"}
        running = sum(1 for w in alive if w.id in busy)
        return {
            "jobs": {
                "completed": self.counts["completed"],
                "failed": self.counts["failed"],
                "inProgress": sum(1 for j in self.jobs.values() if j.status == "IN_PROGRESS"),
                "inQueue": len(self.queue),
                "retried": self.counts["retried"],
            },
            "workers": {"idle": len(alive) - running, "running": running},
        }

    # --- worker side -----------------------------------------------------------------------

    def seen(self, worker_id: str) -> Worker:
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = self.workers[worker_id] = Worker(worker_id)
        worker.last_seen = time.monotonic()
        return worker

    def poll_ended(self, worker: Worker, left: bool = False) -> None:
        """A long poll of ``worker`` ends: it counts as seen now, not when the poll opened. A hold
        (20 s) outlasts ``worker_lost_s`` (10 s), and the SDK waits 1 s after an empty ``job-stop``
        answer before it polls again: a busy worker was lost in that second, its job failed while it
        ran (a long step that sends no progress: a model load, a precision measurement)."""
        worker.open_polls -= 1
        if not left:  # a poll the worker dropped (it died) says nothing of it
            worker.last_seen = time.monotonic()

    def take(self, worker_id: str, count: int) -> list[Job]:
        """Hand up to ``count`` queued jobs to ``worker_id`` (they become IN_PROGRESS)."""
        taken: list[Job] = []
        now = time.monotonic()
        # a take is a sign of life: a job that came more than ``worker_lost_s`` into an idle
        # worker's long poll was failed as lost the moment that worker took it
        if (worker := self.workers.get(worker_id)) is not None:
            worker.last_seen = now
        while self.queue and len(taken) < count:
            job = self.jobs.get(self.queue.popleft())
            if job is None or job.status != "IN_QUEUE":
                continue
            job.status, job.started_at, job.worker_id = "IN_PROGRESS", now, worker_id
            taken.append(job)
        if not self.queue:
            self._queued.clear()
        return taken

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a job is queued, the server is closing, or ``timeout`` passed."""
        if self.queue or self.closing.is_set():
            return
        waiters = [asyncio.ensure_future(self._queued.wait()), asyncio.ensure_future(self.closing.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def requeue(self, jobs: list[Job]) -> None:
        """Put back jobs a worker never received (its poll went away before the answer): each first
        among the jobs of its priority, in the order they were taken, so a low-priority one still
        waits behind the normal jobs queued meanwhile."""
        for job in reversed(jobs):
            if job.status == "IN_PROGRESS":
                job.status, job.started_at, job.worker_id = "IN_QUEUE", None, None
                self._enqueue(job, first=True)

    def post_output(self, worker_id: str, job: Job, body: dict[str, Any]) -> str:
        """Apply one ``job-done`` post: a progress update or the final result."""
        if job.status != "IN_PROGRESS" or job.worker_id != worker_id:
            return "ignored"  # cancelled, timed out or reassigned meanwhile: the result is late
        if body.get("status") == "IN_PROGRESS":
            job.progress = body.get("output")
            return "progress"
        error = body.get("error")
        if error and not isinstance(error, str):
            # RunPod takes ``error`` as a string only; anything else ends the job COMPLETED with no
            # output (runpod-python#299), so a handler that sends one loses its result there, and here
            log.warning("job %s: the handler's error is a %s, not a string; RunPod would drop the result",
                        job.id, type(error).__name__)
            self._finish(job, "COMPLETED", output=None)
        elif error:
            self._finish(job, "FAILED", output=body.get("output") if self.settings.failed_output else None, error=error)
        else:
            self._finish(job, "COMPLETED", output=body.get("output"))
        return job.status

    def post_stream(self, worker_id: str, job: Job, body: dict[str, Any]) -> str:
        if job.status != "IN_PROGRESS" or job.worker_id != worker_id:
            return "ignored"
        if "output" in body:
            job.stream.append(body["output"])
        return "streamed"

    # --- housekeeping ----------------------------------------------------------------------

    def reap(self) -> None:
        """Enforce timeouts and ttls, notice lost workers and drop expired results."""
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.status == "IN_PROGRESS" and job.started_at is not None:
                self._reap_running(job, now)
            elif job.status == "IN_QUEUE" and now - job.created_at > job.ttl_s:
                self._dequeue(job.id)
                self._finish(job, "TIMED_OUT", error=f"no worker took the job within its ttl of {job.ttl_s:g} s")
            elif job.finished_at is not None:
                keep = self.settings.sync_retention_s if job.sync else self.settings.async_retention_s
                if now - job.finished_at > keep:
                    del self.jobs[job.id]
        for job_id, (when, _) in list(self.removed.items()):
            if now - when > self.settings.async_retention_s:
                del self.removed[job_id]

    def _reap_running(self, job: Job, now: float) -> None:
        """End a running job past its execution timeout or its ttl, or whose worker is gone."""
        if now - (job.started_at or now) > job.execution_timeout_s:
            self._finish(job, "TIMED_OUT", error=f"execution timeout of {job.execution_timeout_s:g} s exceeded")
            self._signal_stop(job)
        elif now - job.created_at > job.ttl_s:
            self._remove_running(job, now)
        elif (worker := self.workers.get(job.worker_id or "")) is None or not self._alive(worker, now):
            self._finish(job, "FAILED", error=f"worker {job.worker_id} stopped responding while running the job;"
                                              f" POST /retry/{job.id} to run it again")

    def _remove_running(self, job: Job, now: float) -> None:
        """RunPod's ttl covers a job's whole life: one still running when it runs out is removed at
        once (``/status`` answers 404) and its worker told to stop; a ``/runsync`` still waiting and
        a ``webhook`` hear TIMED_OUT with the reason."""
        why = (f"its ttl of {job.ttl_s:g} s (counted from its submission, queue time included) ran out while"
               f" worker {job.worker_id} ran it; set policy.ttl to cover both the queue and the run")
        self._finish(job, "TIMED_OUT", error=f"removed: {why}")
        self._signal_stop(job)
        del self.jobs[job.id]
        self.removed[job.id] = (now, why)

    def pinged(self, worker_id: str, job_ids: str | None) -> None:
        """A heartbeat listing the jobs the worker still runs.

        A stop signal can reach the SDK before it has started the job's task (it then ignores
        the signal), so a stopped job the worker still reports is signalled again. A ping's list
        can predate the worker's take of the job: a stopped job is let go once a ping drops it
        after one listed it (its task ended) or the job is forgotten, never before it was listed.
        """
        worker = self.workers.get(worker_id) or self.seen(worker_id)
        worker.pinged(job_ids, lambda job_id: job_id in self.jobs or job_id in self.removed)

    def worker_exited(self, worker_id: str, how: str) -> None:
        """A worker process this endpoint started has exited (``how``: "exited with code 1", "was
        killed by SIGKILL"): the jobs it held fail now, not ``worker_lost_s`` later, and say why."""
        worker = self.workers.get(worker_id) or self.seen(worker_id)
        worker.exited = how
        for job in list(self.jobs.values()):
            if job.status == "IN_PROGRESS" and job.worker_id == worker_id:
                self._finish(job, "FAILED", error=f"worker {worker_id} {how} while running the job; POST /retry/{job.id} to run it again")

    def _alive(self, worker: Worker, now: float) -> bool:
        return alive(worker, now, self.settings.worker_lost_s, self.process_alive, self.settings.worker_stall_s)

    def _dequeue(self, job_id: str) -> None:
        try:
            self.queue.remove(job_id)
        except ValueError:
            pass

    def _signal_stop(self, job: Job) -> None:
        worker = self.workers.get(job.worker_id or "")
        if worker is not None:
            worker.stop.append(job.id)
            worker.stopping.add(job.id)
            worker.stop_ready.set()

    def _finish(self, job: Job, status: str, *, output: Any = None, error: Any = None) -> None:
        job.status, job.finished_at = status, time.monotonic()
        job.output, job.error, job.progress = output, error, None
        key = {"COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled", "TIMED_OUT": "timedOut"}[status]
        self.counts[key] += 1
        job.done.set()
        if job.webhook and self.notify is not None:
            self.notify(job.webhook, job.view())
