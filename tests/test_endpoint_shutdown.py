"""``swarm endpoint serve`` stopped by SIGTERM (what ``kill``, systemd and ``docker stop`` send)
stops its workers as Ctrl-C does: uvicorn re-raised the captured SIGTERM with the default
action, which ended the process before its ``finally`` stopped the pool, and the workers went on
polling a closed port ("Failed to get job ... Connect call failed")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
KEY = "rpa_SHUTDOWNTESTKEY012345678901"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_sigterm_stops_the_workers_too() -> None:
    port = free_port()
    worker = f"{sys.executable} -u -m swarm.endpoint.demo_worker"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.endpoint", "serve", "--port", str(port), "--workers", "1", "--api-key", KEY,
         "--endpoint-id", "term-ep", "--worker-command", worker],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "SWARM_LOG_LEVEL": "WARNING"}, start_new_session=True,
    )
    worker_pid = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while not proc.stdout.readline().startswith("# started 1 worker"):
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start its worker"
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v2/term-ep",
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        state = client.post("/runsync", json={"input": {"echo": "term"}}).json()
        assert state["status"] == "COMPLETED", state
        worker_pid = state["output"]["output"]["pid"]
        time.sleep(2)  # the worker is back in its long poll (the flood came from there)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while _alive(worker_pid):
            assert time.monotonic() < deadline, "the worker outlived the endpoint stopped by SIGTERM"
            time.sleep(0.1)
        assert code == 0  # a clean stop, as on Ctrl-C
        # the workers stop when the signal comes, not after the graceful shutdown: meanwhile they
        # polled the closed port, thousands of "Failed to get job" lines in 3 s
        rest = proc.stdout.read()
        assert "Failed to get job" not in rest, rest[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if worker_pid is not None and _alive(worker_pid):
            os.killpg(worker_pid, signal.SIGKILL)  # the worker leads its own process group
