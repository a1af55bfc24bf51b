"""``python -m swarm.endpoint serve``: prints what clients and workers need, serves, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from swarm.endpoint.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
KEY = "rpa_CLITESTKEY0123456789012345"


def _serve(port: int, endpoint_id: str) -> subprocess.Popen[str]:
    """``swarm endpoint serve`` with one demo worker, its banner on ``stdout``."""
    worker = f"{sys.executable} -u -m swarm.endpoint.demo_worker"
    return subprocess.Popen(
        [sys.executable, "-m", "swarm.endpoint", "serve", "--port", str(port), "--workers", "1", "--api-key", KEY,
         "--endpoint-id", endpoint_id, "--worker-command", worker],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "SWARM_LOG_LEVEL": "WARNING"},
    )


def test_serve_with_a_worker_then_stop_on_ctrl_c(tmp_path: Path) -> None:
    from conftest import free_port

    port = free_port()
    proc = _serve(port, "cli-ep")
    try:
        assert proc.stdout is not None
        banner = []
        deadline = time.monotonic() + 30
        while not any(line.startswith("# started 1 worker") for line in banner):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(banner)
            banner.append(proc.stdout.readline())
        text = "".join(banner)
        assert f"export RUNPOD_API_BASE='http://127.0.0.1:{port}/v2'" in text
        assert f"RUNPOD_WEBHOOK_GET_JOB='http://127.0.0.1:{port}/v2/cli-ep/job-take/$ID?gpu=local'" in text
        # the key the person gave is theirs: the banner names where it is, never prints it back
        assert KEY not in text and "export RUNPOD_API_KEY='<the key you gave: --api-key or $SWARM_ENDPOINT_API_KEY>'" in text
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v2/cli-ep", headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        state = client.post("/runsync", json={"input": {"echo": "cli"}}).json()
        assert state["status"] == "COMPLETED" and state["output"]["output"]["echo"] == "cli"
        worker_pid = state["output"]["output"]["pid"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    deadline = time.monotonic() + 10
    while _alive(worker_pid):
        assert time.monotonic() < deadline, "the worker outlived the endpoint"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_negative_worker_count_is_refused() -> None:
    assert main(["serve", "--workers", "-1"]) == 2


def test_a_key_made_here_is_printed_once_a_given_one_never() -> None:
    from swarm.endpoint.server import EndpointServer, Settings, banner

    made = EndpointServer(Settings(endpoint_id="ep", api_key="rpa_MADEHERE0123456789abcdef"), port=0)
    try:
        assert "export RUNPOD_API_KEY='rpa_MADEHERE0123456789abcdef'" in banner(made)
        given = banner(made, key_given=True)
        assert "rpa_MADEHERE0123456789abcdef" not in given and "$SWARM_ENDPOINT_API_KEY" in given
    finally:
        made._sock.close()


def test_a_worker_stops_when_its_endpoint_is_killed() -> None:
    """kill -9 of `swarm endpoint serve` left its workers polling the closed port for ever (they
    passed to init); each now ends its process group once its endpoint is gone."""
    from conftest import free_port

    port = free_port()
    proc = _serve(port, "kill-ep")
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while not proc.stdout.readline().startswith("# started 1 worker"):
            assert time.monotonic() < deadline and proc.poll() is None
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v2/kill-ep", headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        worker_pid = client.post("/runsync", json={"input": {"echo": "hi"}}).json()["output"]["output"]["pid"]
    finally:
        proc.kill()  # SIGKILL: no handler of the endpoint runs
        proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    while _alive(worker_pid):
        assert time.monotonic() < deadline, "the worker outlived its killed endpoint"
        time.sleep(0.2)


def test_a_port_in_use_or_out_of_range_is_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    """`swarm endpoint serve --port <taken>` printed an OSError traceback, and --port 99999 an OverflowError."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--workers", "0"]) == 2
        assert f"error: --port {port} is used by another program on 127.0.0.1" in capsys.readouterr().err
    assert main(["serve", "--port", "99999", "--workers", "0"]) == 2
    assert "error: --port 99999: a port is 0 to 65535" in capsys.readouterr().err
