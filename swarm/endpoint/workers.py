"""Real ``runpod`` worker processes pointed at the local endpoint.

``worker_env`` is the environment RunPod itself gives a worker (the ``RUNPOD_WEBHOOK_*`` URLs,
``RUNPOD_POD_ID``, ``RUNPOD_AI_API_KEY``); with it ``python handler.py`` runs the SDK's own
worker loop, unmodified, against this endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core.redact import redact

log = logging.getLogger("swarm.endpoint.workers")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: set on the workers a local endpoint starts: its pid (``exit_with_endpoint``)
ENDPOINT_PID_VAR = "SWARM_ENDPOINT_PID"


def exit_with_endpoint(interval_s: float = 1.0) -> None:
    """In a worker the local endpoint started (``ENDPOINT_PID_VAR``), end this worker's process
    group once that endpoint is gone: a ``kill -9`` of ``swarm endpoint serve`` left its workers
    polling a closed port for ever (SIGTERM and Ctrl-C stop them themselves). A worker whose parent
    is not that endpoint (RunPod's own, one started by hand) is left alone."""
    endpoint = os.environ.get(ENDPOINT_PID_VAR, "")
    if not endpoint.isdigit() or os.getppid() != int(endpoint):
        return

    def watch() -> None:
        while os.getppid() == int(endpoint):  # a dead parent's children pass to another at once
            time.sleep(interval_s)
        log.warning("the local endpoint (pid %s) is gone: this worker stops", endpoint)
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGTERM)  # the SDK's ping process too (this worker leads its group)
        os._exit(0)

    threading.Thread(target=watch, name="endpoint-watch", daemon=True).start()


def worker_env(base_url: str, endpoint_id: str, api_key: str, worker_id: str | None = None, *, ping_interval_ms: int = 2_000) -> dict[str, str]:
    """The variables a worker needs to attach to the endpoint at ``base_url`` (``http://host:port``).

    The SDK appends ``&job_in_progress=`` and ``&isStream=`` to these URLs, so each carries a
    query string already, as RunPod's own do. Pings come every 2 s (RunPod: 10 s) so a stop
    signal the SDK missed is repeated quickly. Its start-up fitness checks probe 8.8.8.8 and the
    GPU, which a loopback development machine may not have, so they are switched off through
    the SDK's own variables.
    """
    root = f"{base_url.rstrip('/')}/v2/{endpoint_id}"
    return {
        "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID?gpu=local",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID?gpu=local",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID?gpu=local",
        "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID",
        "RUNPOD_PING_INTERVAL": str(ping_interval_ms),
        "RUNPOD_POD_ID": worker_id or f"local-{uuid.uuid4().hex[:12]}",
        "RUNPOD_ENDPOINT_ID": endpoint_id,
        "RUNPOD_AI_API_KEY": api_key,
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_SKIP_GPU_CHECK": "true",
    }


def shell_exports(env: dict[str, str]) -> str:
    """``export NAME='value'`` lines a person can paste before ``python handler.py``."""
    return "\n".join(f"export {k}='{v}'" for k, v in env.items())


@dataclass(frozen=True)
class RestartPolicy:
    """When the endpoint starts a worker again in place of one of its own that exited.

    A worker that exits sooner than ``quick_exit_s`` after its start (a bad config, an import
    error) is started again after ``first_delay_s``, doubled for each further quick exit in a row
    up to ``max_delay_s``; after ``max_quick_exits`` in a row it is not started again. One that
    ran longer (a crash, a kill, the out-of-memory killer) is started again at once.
    """

    quick_exit_s: float = 10.0
    max_quick_exits: int = 3
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    check_interval_s: float = 0.25


#: what the endpoint does when a worker of its own exits (``EndpointServer(restart=None)``: nothing)
RESTART = RestartPolicy()
#: how long a worker has to stop after SIGTERM before its group is killed: a worker warming up
#: stops its background warm-up at the next run of a measurement and waits up to 10 s for it
#: (``swarm.worker_warm.WARM_STOP_S``); killed sooner, it left a half-made measurement behind
STOP_GRACE_S = 15.0
#: how many lines of a dead worker's log the endpoint quotes when it stops starting it again
LOG_LINES_QUOTED = 5


@dataclass
class _Slot:
    """One of the workers the endpoint keeps running: the process in it now and its history."""

    proc: subprocess.Popen[bytes]
    started_at: float
    quick_exits: int = 0  # in a row, before this process was started


def how_it_ended(returncode: int) -> str:
    """``exited with code 3``, or ``was killed by SIGKILL`` (negative: the signal's number)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (kill -9, or the out-of-memory killer)" if returncode == -signal.SIGKILL else ""
    return f"was killed by {name}{hint}"


class WorkerPool:
    """N worker processes, each in its own process group (the SDK forks a ping process).

    With a ``restart`` policy, a thread watches the workers ``start`` started: one that exits
    is logged (id, pid, exit code or signal) and another takes its place, with a back-off for
    one that keeps exiting at start. ``on_exit(worker_id, how)`` hears of each exit first
    (the endpoint fails the jobs that worker held). Workers started by hand are not its own.
    """

    def __init__(
        self,
        command: list[str] | None = None,
        *,
        cwd: str | Path | None = None,
        log_dir: str | Path | None = None,
        extra_env: dict[str, str] | None = None,
        restart: RestartPolicy | None = None,
        on_exit: Callable[[str, str], None] | None = None,
    ) -> None:
        self.command = command or [sys.executable, "-u", "handler.py"]
        self.cwd = Path(cwd or PROJECT_ROOT)
        self.log_dir = Path(log_dir) if log_dir else None
        self.extra_env = extra_env or {}
        self.restart = restart
        self.on_exit = on_exit
        #: the running workers; replaced whole on each change, so a reader may iterate it any time
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        #: workers that exited on their own: id -> return code (negative: the signal)
        self.exits: dict[str, int] = {}
        self._slots: dict[str, _Slot] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._pending: list[tuple[float, int]] = []  # (when, quick exits in a row) of replacements due
        self._attach: tuple[str, str, str] | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, count: int, base_url: str, endpoint_id: str, api_key: str) -> list[str]:
        """Start ``count`` workers; returns their worker ids."""
        with self._lock:
            self._attach = (base_url, endpoint_id, api_key)
            ids = [self._spawn() for _ in range(count)]
            if self.restart is not None and (self._watcher is None or not self._watcher.is_alive()):
                self._stopping = threading.Event()
                self._watcher = threading.Thread(target=self._watch, name="endpoint-workers", daemon=True)
                self._watcher.start()
        return ids

    def _spawn(self, quick_exits: int = 0) -> str:
        assert self._attach is not None
        # The SDK logs at DEBUG unless told otherwise; a terminal full of polls helps nobody.
        env = {"RUNPOD_LOG_LEVEL": "INFO", **os.environ, **self.extra_env, **worker_env(*self._attach),
               ENDPOINT_PID_VAR: str(os.getpid())}
        worker_id = env["RUNPOD_POD_ID"]
        out: Any = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = self._logs[worker_id] = open(self.log_dir / f"{worker_id}.log", "wb")  # noqa: SIM115 - closed at its exit or in stop()
        proc = subprocess.Popen(
            self.command, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        self._slots[worker_id] = _Slot(proc, time.monotonic(), quick_exits)
        self.procs = {**self.procs, worker_id: proc}
        log.info("started worker %s (pid %d): %s", worker_id, proc.pid, " ".join(self.command))
        return worker_id

    def _watch(self) -> None:
        assert self.restart is not None
        while not self._stopping.wait(self.restart.check_interval_s):
            with self._lock:
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                for worker_id, proc in list(self.procs.items()):
                    returncode = proc.poll()
                    if returncode is not None:
                        self._exited(worker_id, returncode, now)
                due = [entry for entry in self._pending if entry[0] <= now]
                self._pending = [entry for entry in self._pending if entry[0] > now]
                for _, quick_exits in due:
                    self._spawn(quick_exits)

    def _exited(self, worker_id: str, returncode: int, now: float) -> None:
        """Log one worker's exit, tell ``on_exit``, and start another in its place or say why not."""
        assert self.restart is not None
        policy = self.restart
        slot = self._slots.pop(worker_id)
        self.exits[worker_id] = returncode  # before it leaves ``procs``: ``running`` never reads it as unknown
        self.procs = {wid: proc for wid, proc in self.procs.items() if wid != worker_id}
        with contextlib.suppress(ProcessLookupError):  # the SDK's forked ping process would ping on
            os.killpg(slot.proc.pid, signal.SIGKILL)
        handle = self._logs.pop(worker_id, None)
        if handle is not None:
            handle.close()
        how, lived = how_it_ended(returncode), now - slot.started_at
        if self.on_exit is not None:
            self.on_exit(worker_id, how)
        quick = lived < policy.quick_exit_s
        in_a_row = slot.quick_exits + 1 if quick else 0
        ended = f"worker {worker_id} (pid {slot.proc.pid}) {how}, {lived:.1f} s after its start"
        if in_a_row >= policy.max_quick_exits:
            log.error("%s, %d times in a row within %g s of the start: not started again (fix the cause, then restart"
                      " the endpoint); the endpoint now runs %d worker(s); %s",
                      ended, in_a_row, policy.quick_exit_s, len(self.procs), self._last_lines(worker_id))
            return
        delay = min(policy.first_delay_s * 2 ** (in_a_row - 1), policy.max_delay_s) if quick else 0.0
        self._pending.append((now + delay, in_a_row))
        when = f"in {delay:g} s (quick exit {in_a_row} of {policy.max_quick_exits} in a row)" if delay else "now"
        log.warning("%s; starting another in its place %s", ended, when)

    def _last_lines(self, worker_id: str) -> str:
        """The end of a dead worker's log, redacted, for the line that says it is not started again."""
        if self.log_dir is None:
            return "its output is above, in this endpoint's own output (no log folder)"
        path = self.log_dir / f"{worker_id}.log"
        try:
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - 8192))
                text = handle.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"its log {path} is unreadable ({type(exc).__name__})"
        lines = [line.strip()[:300] for line in text.splitlines() if line.strip()][-LOG_LINES_QUOTED:]
        if not lines:
            return f"its log {path} is empty"
        return f"the last lines of its log {path}: " + redact(" | ".join(lines))

    def kill(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one worker's whole process group (the crash tests use SIGKILL)."""
        proc = self.procs[worker_id]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        proc.wait(timeout=10)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop watching (nothing is started again), then SIGTERM every worker group, then
        SIGKILL what is left after ``grace_s`` (logged: that worker did not stop in time)."""
        self._stopping.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=10)
        with self._lock:
            self._pending.clear()
            self._stop_all(grace_s)

    def _stop_all(self, grace_s: float) -> None:
        running = {wid: proc for wid, proc in self.procs.items() if proc.poll() is None}  # a second stop: none
        for proc in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s  # they stop side by side: one grace for all
        for worker_id, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %s (pid %d) did not stop within %g s of SIGTERM: killed", worker_id, proc.pid,
                            grace_s)
            else:
                if worker_id in running:
                    log.info("worker %s (pid %d) stopped: %s", worker_id, proc.pid, how_it_ended(proc.returncode))
            with contextlib.suppress(ProcessLookupError):  # the forked ping process outlives its parent otherwise
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(timeout=5)
        for handle in self._logs.values():
            handle.close()
        self._logs.clear()

    def alive(self) -> list[str]:
        return [wid for wid, proc in self.procs.items() if proc.poll() is None]

    def running(self, worker_id: str) -> bool | None:
        """Whether the process of worker ``worker_id`` runs; None for a worker this pool did not
        start (one started by hand). Safe from any thread: ``procs`` is replaced whole. Where the
        watcher runs, its ``poll`` alone reaps a child (a ``poll`` here took the exit from it, and a
        worker the OOM killer ended was said to have "stopped responding", not why)."""
        if worker_id in self.exits:
            return False
        proc = self.procs.get(worker_id)
        if proc is None:
            return None
        watched = self._watcher is not None and self._watcher.is_alive()
        return proc.returncode is None if watched else proc.poll() is None
