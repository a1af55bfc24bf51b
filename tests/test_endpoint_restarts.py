"""What the local endpoint does when a worker it started dies, and what a job from before its own
restart says: real worker processes and real endpoints on loopback.

A worker of its own that exits is logged (id, pid, exit code or signal), its running jobs fail at
once and another worker takes its place; one that keeps exiting at start is given up, with the end
of its log. An endpoint keeps jobs in memory, so after a restart it says it has no record of an
earlier job id, not that the result expired.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.endpoint.workers import RestartPolicy
from swarm.executors.runpod import RunPodExecutor
from swarm.executors.runpod_envelope import RunPodError

DEMO = [sys.executable, "-u", "-m", "swarm.endpoint.demo_worker"]
# worker_lost_s is long: a job that fails fast failed because the endpoint saw its worker exit
SETTINGS = dict(endpoint_id="ep-restarts", take_hold_s=1, stop_hold_s=1, worker_lost_s=60)
WORKERS_LOG = "swarm.endpoint.workers"


def _client(server: EndpointServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.api_base}/{server.settings.endpoint_id}",
                        headers={"Authorization": f"Bearer {server.settings.api_key}"}, timeout=30)


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return found


def _said(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == WORKERS_LOG and r.levelno == level]


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_killed_worker_is_named_in_the_log_its_job_fails_at_once_and_another_takes_its_place(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=WORKERS_LOG)
    # it is killed once it runs a job, past quick_exit_s: replaced at once, with no back-off
    server = EndpointServer(Settings(**SETTINGS), workers=1, worker_command=DEMO, log_dir=tmp_path,
                            restart=RestartPolicy(quick_exit_s=0.5, check_interval_s=0.05))
    with server, _client(server) as client:
        job_id = client.post("/run", json={"input": {"sleep_s": 60}}).json()["id"]
        state = _until(lambda: (s := client.get(f"/status/{job_id}").json())["status"] == "IN_PROGRESS" and s, 30,
                       f"no worker took the job; logs in {tmp_path}")
        dead = state["workerId"]
        pid = server.pool.procs[dead].pid
        os.kill(pid, signal.SIGKILL)  # the worker alone, as the out-of-memory killer does: its ping process lives on

        state = _until(lambda: (s := client.get(f"/status/{job_id}").json())["status"] != "IN_PROGRESS" and s, 5,
                       "the dead worker's job still shows IN_PROGRESS")
        assert state["status"] == "FAILED", state
        assert f"worker {dead} was killed by SIGKILL" in state["error"] and f"/retry/{job_id}" in state["error"], state
        exited = [line for line in _said(caplog, logging.WARNING) if dead in line]
        assert len(exited) == 1, _said(caplog, logging.WARNING)
        assert f"(pid {pid}) was killed by SIGKILL" in exited[0] and "starting another in its place now" in exited[0]
        _until(lambda: _group_gone(pid), 5, "the dead worker's ping process outlived it")

        # the replacement, a new worker id, runs the next job
        answer = client.post("/runsync", params={"wait": 20000}, json={"input": {"echo": "after"}}).json()
        assert answer["status"] == "COMPLETED", answer
        assert answer["workerId"] != dead and list(server.pool.procs) == [answer["workerId"]]
        assert server.pool.exits == {dead: -signal.SIGKILL}
        assert client.get("/health").json()["workers"] == {"idle": 1, "running": 0}

    # stopping the endpoint stops its workers: that is no exit to report or make up for
    assert len(_said(caplog, logging.WARNING)) == 1 and not _said(caplog, logging.ERROR)
    assert len([line for line in _said(caplog, logging.INFO) if line.startswith("started worker")]) == 2


def test_a_worker_that_exits_at_start_is_given_up_after_a_few_tries_with_the_end_of_its_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bad config or an import error: not started again in a tight loop. The lines quoted from
    its log are redacted (this one prints the endpoint's key, as a careless traceback might)."""
    caplog.set_level(logging.INFO, logger=WORKERS_LOG)
    crash = [sys.executable, "-c", "import os, sys; print('loading config'); sys.stderr.write("
             "'ConfigError: providers.llm has no backend; key ' + os.environ['RUNPOD_AI_API_KEY'] + '\\n'); sys.exit(3)"]
    server = EndpointServer(Settings(**SETTINGS), workers=1, worker_command=crash, log_dir=tmp_path,
                            restart=RestartPolicy(quick_exit_s=5, max_quick_exits=3, first_delay_s=0.1, check_interval_s=0.05))
    with server:
        given_up = _until(lambda: _said(caplog, logging.ERROR), 15, "the crashing worker was never given up")
        time.sleep(0.5)  # past the back-off it was on: nothing more is started
        started = [line for line in _said(caplog, logging.INFO) if line.startswith("started worker")]
        assert len(started) == 3 and server.pool.procs == {} and len(server.pool.exits) == 3
        assert set(server.pool.exits.values()) == {3}

    warned = _said(caplog, logging.WARNING)
    assert len(warned) == 2 and "in 0.1 s (quick exit 1 of 3 in a row)" in warned[0], warned
    assert "in 0.2 s (quick exit 2 of 3 in a row)" in warned[1], warned
    [line] = given_up
    assert "exited with code 3" in line and "3 times in a row" in line and "not started again" in line, line
    assert "runs 0 worker(s)" in line and f"{tmp_path}" in line, line
    assert "loading config | ConfigError: providers.llm has no backend; key" in line, line
    assert server.settings.api_key not in caplog.text


def test_a_worker_that_ran_past_its_start_is_started_again_however_often_it_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The back-off is for exits at start only: with one quick exit allowed, a worker that lives
    past ``quick_exit_s`` before each exit is still replaced every time."""
    caplog.set_level(logging.INFO, logger=WORKERS_LOG)
    lives = [sys.executable, "-c", "import sys, time; time.sleep(0.4); sys.exit(1)"]
    server = EndpointServer(Settings(**SETTINGS), workers=1, worker_command=lives, log_dir=tmp_path,
                            restart=RestartPolicy(quick_exit_s=0.2, max_quick_exits=1, check_interval_s=0.05))
    with server:
        _until(lambda: len(server.pool.exits) >= 3, 15, "the worker was not replaced each time it ended")
    assert not _said(caplog, logging.ERROR)
    assert all("exited with code 1" in line and line.endswith("starting another in its place now")
               for line in _said(caplog, logging.WARNING)), _said(caplog, logging.WARNING)


async def test_a_job_from_before_the_endpoint_restarted_is_unknown_to_it_not_expired() -> None:
    """Resuming a job id the old endpoint process knew: the new one has no record of it (it keeps
    jobs in memory); the client says so, and a re-run of the same local job submits it anew."""
    said: list[str] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        said.append(message)

    job = {"project": "demo", "action": "sleep", "input": {}, "job_id": "local-restart-1"}
    settings = Settings(**SETTINGS, api_key="rpa_" + "RESTART0123456789" * 2 + "ABCDEF")
    with EndpointServer(settings) as before:
        runner = RunPodExecutor(before.api_base, settings.endpoint_id, settings.api_key, poll_interval_s=0.1)
        first = await runner.run(dict(job), None, wait_budget_s=0.3)
        assert first["status"] == "IN_QUEUE", first
        old_id = first["trace"][-1]["detail"].split()[1]
    with EndpointServer(settings, port=before.port) as after:  # the same address: a restart
        with pytest.raises(RunPodError) as lost:
            await runner.status(old_id)
        assert lost.value.http_status == 404
        message = lost.value.message
        assert f"RunPod endpoint ep-restarts has no record of job {old_id}: its result expired, or the endpoint" \
               " restarted since" in message, message
        assert "since it started at" in message and "in memory only" in message, message

        again = await runner.run(dict(job), progress, wait_budget_s=0.3)
        assert again["status"] == "IN_QUEUE"
        assert any(f"RunPod job {old_id}, submitted earlier for this job id, is unknown to the endpoint now (its result"
                   " expired, or the endpoint restarted since); submitting it anew" in line for line in said), said
        assert after.call(lambda store: len(store.jobs)) == 1
