"""The REAL runpod SDK worker loop against the local endpoint.

Workers are subprocesses running ``runpod.serverless.start`` unmodified (the demo handler in
``swarm.endpoint.demo_worker``: no models, so each job costs what the SDK costs), pointed at
the endpoint by the ``RUNPOD_WEBHOOK_*`` environment. One endpoint with two workers serves the
module; tests that kill workers start their own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.executors.runpod import RunPodExecutor

DEMO = [sys.executable, "-u", "-m", "swarm.endpoint.demo_worker"]
SETTINGS = dict(endpoint_id="ep-workers", take_hold_s=2, stop_hold_s=2, worker_lost_s=6, policy_minimums=False)


def _client(server: EndpointServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.api_base}/{server.settings.endpoint_id}",
        headers={"Authorization": f"Bearer {server.settings.api_key}"},
        timeout=60,
    )


def _wait(client: httpx.Client, job_id: str, wanted: set[str], timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        state = dict(client.get(f"/status/{job_id}").json())
        if state["status"] in wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def _wait_workers(server: EndpointServer, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while len(server.call(lambda store: list(store.workers))) < count:
        assert time.monotonic() < deadline, f"workers did not attach; logs in {server.pool.log_dir}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointServer]:
    logs = tmp_path_factory.mktemp("worker-logs")
    server = EndpointServer(
        Settings(**SETTINGS), workers=2, worker_command=DEMO, log_dir=logs, worker_env_extra={"RUNPOD_LOG_LEVEL": "INFO"}
    )
    with server:
        _wait_workers(server, 2)
        yield server


@pytest.fixture
def client(endpoint: EndpointServer) -> Iterator[httpx.Client]:
    with _client(endpoint) as c:
        yield c


def runner_for(server: EndpointServer, **kw: Any) -> RunPodExecutor:
    return RunPodExecutor(server.api_base, server.settings.endpoint_id, server.settings.api_key, poll_interval_s=0.2, **kw)


def test_runsync_completes_on_a_real_worker(endpoint: EndpointServer, client: httpx.Client) -> None:
    state = client.post("/runsync", json={"input": {"echo": "hello"}}).json()
    assert state["status"] == "COMPLETED", state
    assert state["output"]["output"]["echo"] == "hello"
    assert state["workerId"] in endpoint.pool.procs
    assert state["id"].startswith("sync-")


def test_run_moves_through_the_states(client: httpx.Client) -> None:
    job_id = client.post("/run", json={"input": {"sleep_s": 0.8, "echo": 7}}).json()["id"]
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = client.get(f"/status/{job_id}").json()
        if not seen or seen[-1] != state["status"]:
            seen.append(state["status"])
        if state["status"] == "COMPLETED":
            break
        time.sleep(0.05)
    assert seen[-2:] == ["IN_PROGRESS", "COMPLETED"], seen
    assert state["output"]["output"]["echo"] == 7


def _both_workers_free(client: httpx.Client, endpoint: EndpointServer) -> None:
    """Two jobs run at once, one on each worker: no worker is stuck on an old job.

    Each worker runs one job at a time, so two jobs IN_PROGRESS together are on two workers,
    whatever the machine's load: a stuck worker leaves the second one queued until the deadline.
    Both are then cancelled and stopped, which leaves the workers free again.
    """
    ids = [client.post("/run", json={"input": {"sleep_s": 60}}).json()["id"] for _ in range(2)]
    deadline = time.monotonic() + 30
    while (states := [client.get(f"/status/{i}").json() for i in ids]) and {s["status"] for s in states} != {"IN_PROGRESS"}:
        assert time.monotonic() < deadline, f"the two jobs never ran at once: {states}"
        time.sleep(0.05)
    workers = {s["workerId"]: s["id"] for s in states}
    assert set(workers) == set(endpoint.pool.procs)
    for worker_id, job_id in workers.items():
        assert client.post(f"/cancel/{job_id}").json()["status"] == "CANCELLED"
        assert _stopped_by_sdk(endpoint, worker_id, job_id)


def _stopped_by_sdk(endpoint: EndpointServer, worker_id: str, job_id: str, timeout_s: float = 20) -> bool:
    """The worker's own log says the SDK cancelled the job's task (``Job stopped.``)."""
    assert endpoint.pool.log_dir is not None
    log = endpoint.pool.log_dir / f"{worker_id}.log"
    needle = f'"requestId": "{job_id}", "message": "Job stopped."'
    deadline = time.monotonic() + timeout_s
    while needle not in log.read_text(encoding="utf-8", errors="replace"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_cancel_of_a_running_job_stops_it_on_the_worker(endpoint: EndpointServer, client: httpx.Client) -> None:
    job_id = client.post("/run", json={"input": {"sleep_s": 60}}).json()["id"]
    state = _wait(client, job_id, {"IN_PROGRESS"})
    assert state["status"] == "IN_PROGRESS"
    # Cancel at once: the SDK may not have started the job's task yet and then ignores the
    # first stop signal; the endpoint repeats it while the worker's pings still list the job.
    assert client.post(f"/cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    assert client.get(f"/status/{job_id}").json()["status"] == "CANCELLED"
    assert _stopped_by_sdk(endpoint, state["workerId"], job_id)
    _both_workers_free(client, endpoint)


def test_execution_timeout_ends_timed_out_and_frees_the_worker(endpoint: EndpointServer, client: httpx.Client) -> None:
    job_id = client.post("/run", json={"input": {"sleep_s": 60}, "policy": {"executionTimeout": 1000}}).json()["id"]
    state = _wait(client, job_id, {"TIMED_OUT", "COMPLETED", "FAILED"})
    assert state["status"] == "TIMED_OUT"
    assert _stopped_by_sdk(endpoint, state["workerId"], job_id)
    _both_workers_free(client, endpoint)


def test_sdk_endpoint_client_works_against_it(endpoint: EndpointServer) -> None:
    import runpod

    old = runpod.api_key, runpod.endpoint_url_base
    runpod.api_key, runpod.endpoint_url_base = endpoint.settings.api_key, endpoint.api_base
    try:
        sdk_endpoint = runpod.Endpoint(endpoint.settings.endpoint_id)
        output = sdk_endpoint.run_sync({"echo": "via sdk"}, timeout=30)
        assert output["output"]["echo"] == "via sdk"
        assert sdk_endpoint.health()["jobs"]["completed"] >= 1
    finally:
        runpod.api_key, runpod.endpoint_url_base = old


async def test_runner_forwards_progress_and_returns_the_envelope(endpoint: EndpointServer) -> None:
    updates: list[tuple[str, str, Any]] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        updates.append((stage, message, fraction))

    envelope = await runner_for(endpoint).run({"progress": 3, "sleep_s": 1.0, "echo": "p"}, progress)
    assert envelope["status"] == "COMPLETED", envelope
    assert envelope["output"]["echo"] == "p"
    assert envelope["error"] is None
    # a loaded machine may poll before a worker takes the job: then the first update says so
    stages = [stage for stage, _, _ in updates]
    if stages and stages[0] == "queued":
        assert "no worker has taken it yet" in updates[0][1]
        stages = stages[1:]
    assert stages and all(stage == "demo" for stage in stages), updates
    assert updates[-1][1] == "step 3"
    assert envelope["trace"][-1]["provider"] == "runpod"


async def test_runner_maps_a_failed_job_to_its_error(endpoint: EndpointServer) -> None:
    envelope = await runner_for(endpoint).run({"fail": "task: too long (limit 20000)"})
    assert envelope["status"] == "FAILED"
    assert envelope["error"] == {"type": "InputError", "message": "task: too long (limit 20000)"}
    assert envelope["job_id"].endswith("-u1")


async def test_runner_drops_the_traceback_of_a_handler_that_raised(endpoint: EndpointServer) -> None:
    envelope = await runner_for(endpoint).run({"raise": "kaboom"})
    assert envelope["status"] == "FAILED"
    assert envelope["error"]["type"] == "RuntimeError"
    assert envelope["error"]["message"] == "kaboom"
    assert "Traceback" not in str(envelope)


async def test_runner_returns_cancelled_and_timed_out_as_final(endpoint: EndpointServer) -> None:
    runner = runner_for(endpoint, execution_timeout_s=1.0)
    envelope = await runner.run({"sleep_s": 60})
    assert envelope["status"] == "FAILED"
    assert envelope["error"]["type"] == "JobTimedOut"
    assert "TIMED_OUT" in envelope["error"]["message"]


async def test_cancelling_the_caller_cancels_the_runpod_job(endpoint: EndpointServer) -> None:
    task = asyncio.create_task(runner_for(endpoint).run({"sleep_s": 60, "echo": "to-cancel"}))

    def running(store: Any) -> list[str]:
        return [j.id for j in store.jobs.values() if j.status == "IN_PROGRESS" and j.input.get("echo") == "to-cancel"]

    deadline = time.monotonic() + 30
    while not (ids := endpoint.call(running)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert endpoint.call(lambda store: store.jobs[ids[0]].status) == "CANCELLED"


async def test_wait_budget_leaves_the_job_running_and_says_so(endpoint: EndpointServer, client: httpx.Client) -> None:
    envelope = await runner_for(endpoint).run({"sleep_s": 3}, wait_budget_s=0.5)
    assert envelope["status"] in {"IN_QUEUE", "IN_PROGRESS"}
    assert envelope["error"]["type"] == "StillRunning"
    assert _wait(client, envelope["job_id"], {"COMPLETED"})["status"] == "COMPLETED"


def _taking(server: EndpointServer, timeout_s: float = 30) -> None:
    """Both workers attached, idle, each holding its take and its stop long-poll open at once."""
    deadline = time.monotonic() + timeout_s
    while server.call(lambda store: [w.open_polls for w in store.workers.values()]) != [2, 2]:
        assert time.monotonic() < deadline, f"the workers are not both polling; logs in {server.pool.log_dir}"
        time.sleep(0.05)


def test_twenty_concurrent_jobs_spread_over_two_workers(tmp_path: Path) -> None:
    """A worker runs at most 4 jobs at once, each for 1 s: alone it needs 5 s for the 20 jobs, far
    longer than the other, already polling, takes to answer; they were 0.1 s jobs posted before
    the second worker had even started, which the first could finish alone on a loaded machine."""
    server = EndpointServer(
        Settings(**SETTINGS), workers=2, worker_command=DEMO, log_dir=tmp_path,
        worker_env_extra={"DEMO_WORKER_CONCURRENCY": "4", "RUNPOD_LOG_LEVEL": "INFO"},
    )
    with server, _client(server) as client:
        _taking(server)
        ids = [client.post("/run", json={"input": {"sleep_s": 1.0, "echo": n}}).json()["id"] for n in range(20)]
        states = [_wait(client, i, {"COMPLETED", "FAILED"}, timeout_s=90) for i in ids]
        assert [s["status"] for s in states] == ["COMPLETED"] * 20
        assert [s["output"]["output"]["echo"] for s in states] == list(range(20))
        assert {s["workerId"] for s in states} == set(server.pool.procs)
        assert client.get("/health").json()["jobs"]["completed"] == 20


def test_a_worker_killed_mid_job_leaves_the_job_failed(tmp_path: Path) -> None:
    """A worker nobody watches (``restart=None``, as one started by hand) is lost by its silence;
    one the endpoint watches is noticed at its exit (``test_endpoint_restarts``)."""
    server = EndpointServer(
        Settings(**{**SETTINGS, "worker_lost_s": 1.5}), workers=1, worker_command=DEMO, log_dir=tmp_path,
        worker_env_extra={"RUNPOD_LOG_LEVEL": "INFO"}, restart=None,
    )
    with server, _client(server) as client:
        job_id = client.post("/run", json={"input": {"sleep_s": 60}}).json()["id"]
        state = _wait(client, job_id, {"IN_PROGRESS"})
        assert state["status"] == "IN_PROGRESS"
        server.pool.kill(state["workerId"])
        state = _wait(client, job_id, {"FAILED", "COMPLETED"}, timeout_s=20)
        assert state["status"] == "FAILED"
        assert "stopped responding" in state["error"]
        assert client.get("/health").json()["workers"] == {"idle": 0, "running": 0}
