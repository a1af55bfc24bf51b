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
import uuid
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("swarm.endpoint.workers")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: set on the workers a local endpoint starts: its pid (``exit_with_endpoint``)
ENDPOINT_PID_VAR = "SWARM_ENDPOINT_PID"


def exit_with_endpoint(interval_s: float = 1.0) -> None:
    """In a worker the local endpoint started (``ENDPOINT_PID_VAR``), end this worker's process
    group once that endpoint is gone: a ``kill -9`` of ``swarm endpoint serve`` left its workers
    polling a closed port for ever (SIGTERM and Ctrl-C stop them themselves). A worker whose parent
    is not that endpoint (RunPod's own, one started by hand) is left alone."""
    import threading
    import time

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


class WorkerPool:
    """N worker processes, each in its own process group (the SDK forks a ping process)."""

    def __init__(
        self,
        command: list[str] | None = None,
        *,
        cwd: str | Path | None = None,
        log_dir: str | Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.command = command or [sys.executable, "-u", "handler.py"]
        self.cwd = Path(cwd or PROJECT_ROOT)
        self.log_dir = Path(log_dir) if log_dir else None
        self.extra_env = extra_env or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self, count: int, base_url: str, endpoint_id: str, api_key: str) -> list[str]:
        """Start ``count`` workers; returns their worker ids."""
        ids = []
        for _ in range(count):
            # The SDK logs at DEBUG unless told otherwise; a terminal full of polls helps nobody.
            env = {"RUNPOD_LOG_LEVEL": "INFO", **os.environ, **self.extra_env, **worker_env(base_url, endpoint_id, api_key),
                   ENDPOINT_PID_VAR: str(os.getpid())}
            worker_id = env["RUNPOD_POD_ID"]
            out: Any = None
            if self.log_dir:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{worker_id}.log", "wb")  # noqa: SIM115 - closed in stop()
                self._logs.append(out)
            self.procs[worker_id] = subprocess.Popen(
                self.command, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )
            log.info("started worker %s (pid %d): %s", worker_id, self.procs[worker_id].pid, " ".join(self.command))
            ids.append(worker_id)
        return ids

    def kill(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one worker's whole process group (the crash tests use SIGKILL)."""
        proc = self.procs[worker_id]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        proc.wait(timeout=10)

    def stop(self, grace_s: float = 2.0) -> None:
        """SIGTERM every worker group, then SIGKILL what is left after ``grace_s``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            try:  # the forked ping process outlives its parent unless its group is killed
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(timeout=5)
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def alive(self) -> list[str]:
        return [wid for wid, proc in self.procs.items() if proc.poll() is None]
