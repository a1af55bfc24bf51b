"""The local executor over worker processes (``runner.local.processes`` > 1).

One Python process runs one event loop on one core: past a few hundred concurrent jobs its CPU,
not the providers, sets the pace (bench/bench_concurrency.py). ``ProcessExecutor`` spreads jobs
over N worker processes, each with its own ``Runtime`` (config, providers, circuits,
checkpointer) built from the same config file, and sends each job to the worker with the fewest
jobs in flight. A caller of ``run`` sees what the in-process executor gives: the envelope with
its full trace, every progress event in order, and cancellation (cancelling ``run`` cancels the
job's task in its worker, which stops at its next ``await`` with its completed steps
checkpointed; ``run`` returns to its canceller once the worker has confirmed, or after
``CANCEL_ACK_S``).

Checkpoints: every worker opens the same SQLite file (``checkpointer.path``) with its own
``LoopSqliteSaver``. In WAL mode readers in every process go on while one process writes, and a
write that finds another process holding the write lock is retried on a timer (the loop never
blocks on it), so a job id resumes on whichever worker gets it next. One file per process would
break that: a job resumed by id could land on a worker that never saw its checkpoints.

A worker that dies fails the jobs it was running with an ``InternalError`` envelope that says to
run the job again with its ``job_id`` (which resumes it); the next job starts a new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from graphs.context import ProgressFn
from swarm.envelope import JobEnvelope
from swarm.logs import own_work

log = logging.getLogger("swarm.executors.processes")

#: how long a cancelled ``run`` waits for its worker to confirm that the job stopped
CANCEL_ACK_S = 5.0
#: how long ``aclose`` waits for a worker to finish its jobs and exit before terminating it
STOP_WAIT_S = 10.0


# --- the worker process ----------------------------------------------------------------------


def _worker_main(conn: Connection, config_path: str | None, initializer: str | None,
                 last_good: bytes | None = None) -> None:
    """Entry point of a worker process: serve jobs from ``conn`` until told to stop."""
    # The parent may be an MCP server speaking JSON-RPC on stdout: nothing a worker (or a library
    # in it) prints may land there.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    if initializer:
        from providers.registry import import_string

        import_string(initializer)()
    asyncio.run(_serve(conn, config_path, last_good))


async def _serve(conn: Connection, config_path: str | None, last_good: bytes | None = None) -> None:
    from core.heap import settle
    from core.redact import install_log_redaction
    from swarm.logs import configure_logging
    from swarm.runtime import Runtime

    runtime = Runtime(config_path, last_good=last_good)
    configure_logging(os.environ.get("SWARM_LOG_LEVEL") or runtime.config)  # as the RunPod worker does
    install_log_redaction()
    inbox = _WorkerInbox(conn, runtime, asyncio.get_running_loop())
    settle()  # start-up's objects leave the collector's walk (core/heap.py)
    threading.Thread(target=inbox.read, name="swarm-worker-inbox", daemon=True).start()
    inbox.send(("ready", os.getpid()))
    await inbox.stopped
    if inbox.tasks:  # a graceful stop lets running jobs finish
        await asyncio.gather(*inbox.tasks.values(), return_exceptions=True)
    await runtime.aclose()


class _WorkerInbox:
    """The worker's side of the pipe: runs each job as a task, sends progress and results back."""

    def __init__(self, conn: Connection, runtime: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.runtime = runtime
        self.loop = loop
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.stopped: asyncio.Future[None] = loop.create_future()

    def send(self, message: tuple[Any, ...]) -> None:
        """Only the loop's thread sends; the reader thread only receives."""
        with contextlib.suppress(OSError, EOFError):  # the parent is gone: nobody to tell
            self.conn.send(message)

    def read(self) -> None:
        """The reader thread: hand every message to the loop until told to stop."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # the parent closed the pipe or died
                message = ("stop",)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.loop.call_soon_threadsafe(self.on_message, message)
            if message[0] == "stop":
                return

    def on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "run":
            self.tasks[message[1]] = self.loop.create_task(self.run_one(message[1], message[2]))
        elif kind == "cancel" and message[1] in self.tasks:
            self.tasks[message[1]].cancel()
        elif kind == "stop" and not self.stopped.done():
            self.stopped.set_result(None)

    async def run_one(self, call_id: int, job: dict[str, Any]) -> None:
        async def progress(stage: str, message: str, fraction: float | None = None) -> None:
            self.send(("progress", call_id, stage, message, fraction))

        try:
            envelope = await self.runtime.run(job, progress)
        except asyncio.CancelledError:
            self.send(("cancelled", call_id))
            return
        finally:
            self.tasks.pop(call_id, None)
        self.send(("done", call_id, envelope))


# --- the parent side -------------------------------------------------------------------------


@dataclass
class _Call:
    """One job in flight: where its worker's messages go."""

    loop: asyncio.AbstractEventLoop
    inbox: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)

    def deliver(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, message)


class _Worker:
    """One worker process, its pipe, and a thread that hands its messages to the calls."""

    def __init__(self, index: int, context: Any, config_path: str | None, initializer: str | None,
                 last_good: bytes | None = None) -> None:
        self.index = index
        parent_end, child_end = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_worker_main, args=(child_end, config_path, initializer, last_good),
            name=f"swarm-local-worker-{index}", daemon=True,
        )
        self.process.start()
        child_end.close()
        self.conn: Connection = parent_end
        self.calls: dict[int, _Call] = {}
        self.jobs_run = 0
        self.alive = True
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"swarm-worker-{index}-outbox", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def add(self, call_id: int, call: _Call) -> None:
        with self._lock:
            self.calls[call_id] = call
        self.jobs_run += 1

    def remove(self, call_id: int) -> None:
        with self._lock:
            self.calls.pop(call_id, None)

    def send(self, message: tuple[Any, ...]) -> bool:
        """Send ``message``; False when the worker is gone."""
        try:
            with self._send_lock:
                self.conn.send(message)
        except (OSError, EOFError, BrokenPipeError):
            return False
        return True

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "ready":
                continue
            with self._lock:
                call = self.calls.get(message[1])
            if call is not None:
                call.deliver(message)
        self.alive = False
        with self._lock:
            orphans = list(self.calls.items())
        for call_id, call in orphans:
            call.deliver(("died", call_id))

    def stop(self, wait_s: float) -> None:
        self.send(("stop",))
        self.process.join(wait_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        self.conn.close()


class ProcessExecutor:
    """Runs jobs in ``processes`` worker processes, each with its own ``Runtime``.

    Args:
        processes: how many workers (``runner.local.processes``).
        config_path: the config file every worker loads (``None``: the default lookup, as
            ``Runtime`` does); workers inherit this process's environment.
        initializer: ``"module:function"`` run in each worker before its runtime is built
            (benches install a provider override there, as ``ProcessPoolExecutor``'s initializer).
    """

    def __init__(self, processes: int, config_path: str | None = None, *, initializer: str | None = None,
                 last_good: Callable[[], bytes | None] | None = None) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.processes = processes
        self.config_path = config_path
        self.initializer = initializer
        #: the config text this process serves, for a worker started while the file on disk is refused
        self.last_good = last_good
        self._context = multiprocessing.get_context("spawn")  # no forked copy of a running loop
        self._workers: list[_Worker | None] = [None] * processes
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"ProcessExecutor(processes={self.processes})"

    @property
    def workers(self) -> list[_Worker]:
        """The workers started so far (for tests and benches: pids, jobs run)."""
        return [w for w in self._workers if w is not None]

    def start(self) -> None:
        """Start every worker now (``run`` starts them on first use otherwise)."""
        with self._lock:
            for index in range(self.processes):
                self._worker(index)

    def _worker(self, index: int) -> _Worker:
        worker = self._workers[index]
        if worker is None or not worker.alive:
            if worker is not None:
                log.warning("local worker %d (pid %s) exited with code %s; starting a new one",
                            index, worker.pid, worker.process.exitcode)
                worker.conn.close()
            worker = self._workers[index] = _Worker(index, self._context, self.config_path, self.initializer,
                                                    self.last_good() if self.last_good else None)
        return worker

    def _pick(self) -> _Worker:
        if self._closed:
            raise RuntimeError("this ProcessExecutor is closed")
        # the pool serves every job: starting (or restarting) a worker is the server's own work,
        # said to no client of the job that happens to need one first
        with self._lock, own_work():
            workers = [self._worker(i) for i in range(self.processes)]
        return min(workers, key=lambda w: len(w.calls))

    async def run(self, job: dict[str, Any], progress: ProgressFn | None = None, wait_budget_s: float | None = None) -> dict[str, Any]:
        """The job's envelope, run in a worker; ``wait_budget_s`` is ignored (the job runs here)."""
        if not job.get("job_id") and not job.get("idempotency_key"):
            job = {**job, "job_id": str(uuid.uuid4())}  # known here too, should its worker die
        started = time.perf_counter()
        worker = self._pick()
        call_id = next(self._ids)
        call = _Call(asyncio.get_running_loop())
        worker.add(call_id, call)
        try:
            if not worker.send(("run", call_id, job)):
                return _died(job, worker, started)
            try:
                return await self._follow(call, worker, job, progress, started)
            except asyncio.CancelledError:
                await self._cancel(call, worker, call_id)
                raise
        finally:
            worker.remove(call_id)

    async def _follow(self, call: _Call, worker: _Worker, job: dict[str, Any], progress: ProgressFn | None,
                      started: float) -> dict[str, Any]:
        while True:
            message = await call.inbox.get()
            kind = message[0]
            if kind == "progress":
                if progress is not None:
                    await progress(*message[2:])
            elif kind == "done":
                return dict(message[2])
            elif kind == "died":
                return _died(job, worker, started)
            # "cancelled" without our asking cannot happen: the worker cancels only on request

    async def _cancel(self, call: _Call, worker: _Worker, call_id: int) -> None:
        """Tell the worker to cancel; wait (shielded, bounded) until it says the job stopped."""
        if not worker.send(("cancel", call_id)):
            return

        async def acknowledged() -> None:
            while (await call.inbox.get())[0] not in ("cancelled", "done", "died"):
                pass

        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.shield(asyncio.wait_for(acknowledged(), CANCEL_ACK_S))

    async def aclose(self) -> None:
        """Stop every worker (running jobs finish first, up to ``STOP_WAIT_S``)."""
        self._closed = True
        workers = [w for w in self._workers if w is not None]
        self._workers = [None] * self.processes
        await asyncio.gather(*(asyncio.to_thread(w.stop, STOP_WAIT_S) for w in workers))


def _died(job: dict[str, Any], worker: _Worker, started: float) -> dict[str, Any]:
    job_id = job.get("job_id")
    again = f"job_id {job_id}" if job_id else "the same idempotency_key"
    envelope = JobEnvelope.for_job(job, job_id).failed({
        "type": "InternalError",
        "message": f"local worker process {worker.index} exited (code {worker.process.exitcode}) while running"
                   f" the job; run it again with {again} to resume from its last completed step",
    })
    return envelope.replace(elapsed_ms=round((time.perf_counter() - started) * 1000, 2)).to_dict()
