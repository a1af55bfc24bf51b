"""The local endpoint against RunPod's documented API, over loopback HTTP, and the runner against
its answers: a request's ``webhook`` is POSTed the job's ``/status`` answer when the job ends
(again, 10 s apart, up to twice more, when it gets no 2xx); a request's ``s3Config`` reaches the
worker with the job and no client; a job that ends TIMED_OUT, CANCELLED or FAILED with no
envelope keeps, in the runner's answer, the steps its worker had reported finished."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.base import TraceStep
from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.executors.runpod import RunPodExecutor
from swarm.executors.runpod_progress import steps_update

KEY = "rp-test-key"
FAST: dict[str, Any] = dict(endpoint_id="ep-u", api_key=KEY, take_hold_s=0.3, stop_hold_s=0.3, worker_lost_s=30, reap_interval_s=0.05,
                            policy_minimums=False)  # jobs that time out within a second


class Receiver:
    """A loopback webhook target: records each POST body, answers ``codes`` in turn, then 200."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.bodies: list[Any] = []
        codes = list(codes or [])
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(codes.pop(0) if codes else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout_s: float = 10) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.bodies


@pytest.fixture
def server() -> Iterator[EndpointServer]:
    with EndpointServer(Settings(**FAST, webhook_retry_delay_s=0.1)) as started:
        yield started


def _clients(server: EndpointServer) -> tuple[httpx.Client, httpx.Client]:
    base = f"{server.api_base}/ep-u"
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    worker = httpx.Client(base_url=base, headers={"Authorization": KEY}, timeout=10)  # the SDK sends it bare
    return client, worker


def _finish(worker: httpx.Client, job_id: str, body: dict[str, Any]) -> None:
    response = worker.post(f"/job-done/w1/{job_id}", params={"gpu": "local", "isStream": "false"}, content=json.dumps(body))
    assert response.status_code == 200, response.text


def test_webhook_gets_the_status_answer_when_the_job_completes(server: EndpointServer) -> None:
    receiver = Receiver()
    client, worker = _clients(server)
    job_id = client.post("/run", json={"input": {"n": 1}, "webhook": receiver.url}).json()["id"]
    assert worker.get("/job-take/w1").json()["id"] == job_id
    _finish(worker, job_id, {"output": {"answer": 42}})
    bodies = receiver.wait(1)
    assert bodies and bodies[0] == client.get(f"/status/{job_id}").json()
    assert bodies[0]["status"] == "COMPLETED" and bodies[0]["output"] == {"answer": 42}


def test_webhook_is_called_again_after_an_answer_that_is_no_2xx(server: EndpointServer) -> None:
    receiver = Receiver(codes=[500, 503])
    client, worker = _clients(server)
    job_id = client.post("/run", json={"input": {}, "webhook": receiver.url, "policy": {"executionTimeout": 200}}).json()["id"]
    worker.get("/job-take/w1")
    bodies = receiver.wait(3)
    assert [b["status"] for b in bodies] == ["TIMED_OUT"] * 3 and {b["id"] for b in bodies} == {job_id}
    time.sleep(0.3)
    assert len(receiver.bodies) == 3  # delivered at the third call: no fourth


def test_s3_config_reaches_the_worker_and_no_client(server: EndpointServer) -> None:
    s3 = {"accessId": "AKIDLOCAL", "accessSecret": "s3cr3t", "bucketName": "b", "endpointUrl": "http://127.0.0.1:9"}
    client, worker = _clients(server)
    job_id = client.post("/run", json={"input": {"n": 1}, "s3Config": s3}).json()["id"]
    taken = worker.get("/job-take/w1").json()
    assert taken == {"id": job_id, "input": {"n": 1}, "s3Config": s3}
    _finish(worker, job_id, {"output": "ok"})
    assert "s3Config" not in client.get(f"/status/{job_id}").json()


@pytest.mark.parametrize("ending", ["TIMED_OUT", "CANCELLED", "FAILED"])
def test_an_end_with_no_envelope_keeps_the_steps_the_worker_reported(server: EndpointServer, tmp_path: Path,
                                                                      ending: str) -> None:
    step = TraceStep(step="search", kind="search", provider="tavily", detail="3 results").model_dump()
    runner = RunPodExecutor(server.api_base, "ep-u", KEY, poll_interval_s=0.1, jobs_dir=tmp_path,
                            execution_timeout_s=1.5 if ending == "TIMED_OUT" else None)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "t"}}

    async def scenario() -> dict[str, Any]:
        running = asyncio.create_task(runner.run(job, wait_budget_s=20))
        base = f"{server.api_base}/ep-u"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": KEY}, timeout=10) as worker:
            taken = None
            while taken is None:
                answer = await worker.get("/job-take/w1")
                taken = answer.json() if answer.status_code == 200 else None
            update = {"status": "IN_PROGRESS", "output": {"stage": "search", "message": "searching", **steps_update([step])}}
            await worker.post(f"/job-done/w1/{taken['id']}", content=json.dumps(update))
            await asyncio.sleep(0.6)  # the runner's polls see the update
            if ending == "CANCELLED":
                await worker.post(f"/cancel/{taken['id']}", headers={"Authorization": f"Bearer {KEY}"})
            elif ending == "FAILED":  # RunPod's own words for a worker it lost: no envelope in them
                await worker.post(f"/job-done/w1/{taken['id']}", content=json.dumps({"error": "worker exited with exit code 137"}))
        return await running

    envelope = asyncio.run(scenario())
    assert envelope["status"] == "FAILED"
    kinds = {"TIMED_OUT": "JobTimedOut", "CANCELLED": "JobCancelled", "FAILED": "WorkerError"}
    assert envelope["error"]["type"] == kinds[ending]
    assert [s["step"] for s in envelope["trace"]] == ["search", "runpod"], envelope["trace"]
    assert envelope["trace"][0]["detail"] == "3 results"


def test_the_mcp_servers_follower_keeps_the_steps_of_a_timed_out_job(server: EndpointServer, tmp_path: Path) -> None:
    """The MCP server follows its RunPod jobs itself (``mcp_server.jobremote.follow_remote``): a job
    that ended TIMED_OUT lost the steps its worker had reported there too."""
    from mcp_server.jobremote import follow_remote
    from mcp_server.jobstore import JobStore

    step = TraceStep(step="search", kind="search", provider="tavily", detail="3 results").model_dump()
    runner = RunPodExecutor(server.api_base, "ep-u", KEY, poll_interval_s=0.1, jobs_dir=tmp_path, execution_timeout_s=1.5)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "t"}}
    store = JobStore(tmp_path / "jobs.sqlite")

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        pass

    async def scenario() -> dict[str, Any]:
        job_id = await runner.submit(job)
        store.create(job_id, "local", job, None, remote=True)
        following = asyncio.create_task(follow_remote(runner, job_id, job, progress, store=store, closing=lambda: False))
        async with httpx.AsyncClient(base_url=f"{server.api_base}/ep-u", headers={"Authorization": KEY}, timeout=10) as worker:
            taken = None
            while taken is None:
                answer = await worker.get("/job-take/w1")
                taken = answer.json() if answer.status_code == 200 else None
            update = {"status": "IN_PROGRESS", "output": {"stage": "search", "message": "searching", **steps_update([step])}}
            await worker.post(f"/job-done/w1/{taken['id']}", content=json.dumps(update))
        return await following

    try:
        envelope = asyncio.run(scenario())
    finally:
        store.close()
    assert envelope["status"] == "FAILED" and envelope["error"]["type"] == "JobTimedOut", envelope
    assert [s["step"] for s in envelope["trace"]][:1] == ["search"], envelope["trace"]
