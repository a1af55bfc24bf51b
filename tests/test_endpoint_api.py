"""The local endpoint's HTTP contract, driven by hand on both sides (no worker process).

The client side is RunPod's public API; the worker side is exactly the requests the runpod
SDK's worker loop makes (job-take, job-stop, job-done, job-stream), so states, limits,
auth, timeouts and lost workers are checked here quickly and deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import MB, Settings

FAST = dict(take_hold_s=0.3, stop_hold_s=0.3, worker_lost_s=30, reap_interval_s=0.05, policy_minimums=False)


class Sides:
    """A client and a hand-driven worker for one endpoint."""

    def __init__(self, server: EndpointServer) -> None:
        self.server = server
        eid = server.settings.endpoint_id
        key = server.settings.api_key
        self.client = httpx.Client(base_url=f"{server.api_base}/{eid}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        # The SDK's worker sends the key bare, not as a bearer token.
        self.worker = httpx.Client(base_url=f"{server.api_base}/{eid}", headers={"Authorization": key}, timeout=10)

    def submit(self, job_input: Any = None, **extra: Any) -> str:
        response = self.client.post("/run", json={"input": job_input or {"n": 1}, **extra})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "IN_QUEUE"
        return str(response.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/status/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def take(self, worker_id: str = "w1") -> dict[str, Any] | None:
        response = self.worker.get(f"/job-take/{worker_id}", params={"gpu": "local", "job_in_progress": "0"})
        return None if response.status_code == 204 else dict(response.json())

    def done(self, job_id: str, body: dict[str, Any], worker_id: str = "w1") -> dict[str, Any]:
        # The SDK posts JSON text with a form content type; the endpoint must read it anyway.
        import json

        response = self.worker.post(
            f"/job-done/{worker_id}/{job_id}",
            params={"gpu": "local", "isStream": "false"},
            content=json.dumps(body),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def stop_signals(self, worker_id: str = "w1") -> list[str]:
        response = self.worker.get(f"/job-stop/{worker_id}", params={"gpu": "local"})
        return [] if response.status_code == 204 else list(response.json()["jobsToStop"])

    def wait_status(self, job_id: str, wanted: str, timeout_s: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.status(job_id)
            if state["status"] == wanted or time.monotonic() > deadline:
                return state
            time.sleep(0.05)


@pytest.fixture
def endpoint() -> Iterator[Callable[..., Sides]]:
    servers: list[EndpointServer] = []

    def start(**settings: Any) -> Sides:
        server = EndpointServer(Settings(endpoint_id="ep-test", **{**FAST, **settings})).start()
        servers.append(server)
        return Sides(server)

    yield start
    for server in servers:
        server.stop()


def test_job_goes_through_every_state_and_health_counts_it(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    job_id = sides.submit({"task": "x"})
    assert job_id.endswith("-u1")
    assert sides.status(job_id)["status"] == "IN_QUEUE"
    assert sides.client.get("/health").json()["jobs"]["inQueue"] == 1

    taken = sides.take()
    assert taken == {"id": job_id, "input": {"task": "x"}}
    state = sides.status(job_id)
    assert state["status"] == "IN_PROGRESS" and state["workerId"] == "w1"

    assert sides.done(job_id, {"status": "IN_PROGRESS", "output": {"stage": "draft"}}) == {"status": "progress"}
    assert sides.status(job_id)["output"] == {"stage": "draft"}
    health = sides.client.get("/health").json()
    assert health["jobs"]["inProgress"] == 1 and health["workers"]["running"] == 1

    assert sides.done(job_id, {"output": {"answer": 42}})["status"] == "COMPLETED"
    state = sides.status(job_id)
    assert state["status"] == "COMPLETED" and state["output"] == {"answer": 42}
    assert {"delayTime", "executionTime"} <= set(state)
    health = sides.client.get("/health").json()
    assert health["jobs"] == {"completed": 1, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0}
    assert health["workers"] == {"idle": 1, "running": 0}


@pytest.mark.parametrize("failed_output", [False, True])
def test_post_status_and_failed_result_keep_the_error(endpoint: Callable[..., Sides], failed_output: bool) -> None:
    """A FAILED job's ``output`` is dropped, as the SDK's own local API does, unless
    ``Settings.failed_output`` keeps it; the error string stays either way."""
    sides = endpoint(failed_output=failed_output)
    job_id = sides.submit()
    sides.take()
    sides.done(job_id, {"output": {"partial": True}, "error": '{"type": "InputError", "message": "bad"}'})
    state = sides.client.post(f"/status/{job_id}").json()
    assert state["status"] == "FAILED" and state.get("output") == ({"partial": True} if failed_output else None)
    assert state["error"] == '{"type": "InputError", "message": "bad"}'


def test_an_error_that_is_no_string_ends_the_job_as_runpod_does(endpoint: Callable[..., Sides]) -> None:
    """RunPod takes ``error`` as a string only; a dict ends the job COMPLETED with no output
    (runpod-python#299): the local endpoint does the same, so a handler that sends one fails here."""
    sides = endpoint()
    job_id = sides.submit()
    sides.take()
    sides.done(job_id, {"output": {"partial": True}, "error": {"type": "InputError", "message": "bad"}})
    state = sides.client.post(f"/status/{job_id}").json()
    assert state["status"] == "COMPLETED" and state.get("output") is None and "error" not in state


def test_no_work_answers_204_after_the_hold(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    assert sides.take() is None
    assert sides.stop_signals() == []


def test_batch_take_hands_out_several_jobs(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    ids = [sides.submit({"n": i}) for i in range(3)]
    response = sides.worker.get("/job-take-batch/w1", params={"gpu": "local", "batch_size": "2", "job_in_progress": "0"})
    assert [j["id"] for j in response.json()] == ids[:2]
    assert sides.take()["id"] == ids[2]  # type: ignore[index]


def test_bearer_auth_is_required(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    eid = sides.server.settings.endpoint_id
    bare = httpx.Client(base_url=f"{sides.server.api_base}/{eid}", timeout=10)
    response = bare.post("/run", json={"input": {}})
    assert response.status_code == 401
    assert "API key" in response.json()["error"]
    wrong = bare.get("/health", headers={"Authorization": "Bearer rpa_WRONGKEY000000000000000"})
    assert wrong.status_code == 401
    assert bare.get("/job-take/w1", headers={"Authorization": "nope"}).status_code == 401
    assert sides.client.get("/health").status_code == 200


def test_unknown_endpoint_is_404(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    response = sides.client.post(f"{sides.server.api_base}/other-endpoint/run", json={"input": {}})
    assert response.status_code == 404
    assert "other-endpoint" in response.json()["error"]


def test_payload_limits_are_413_with_a_clear_message(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint(run_limit_bytes=1 * MB, runsync_limit_bytes=2 * MB)
    big = {"input": {"blob": "x" * (1 * MB + 10)}}
    response = sides.client.post("/run", json=big)
    assert response.status_code == 413
    message = response.json()["error"]
    assert "/run" in message and "1 MB" in message and "storage" in message
    # /runsync allows twice as much, like RunPod's 10 MB / 20 MB.
    assert sides.client.post("/runsync", params={"wait": "1"}, json=big).status_code == 200
    huge = {"input": {"blob": "x" * (2 * MB + 10)}}
    assert sides.client.post("/runsync", json=huge).status_code == 413


def test_chunked_oversize_body_is_refused_too(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint(run_limit_bytes=1 * MB)

    def body() -> Iterator[bytes]:
        yield b'{"input": {"blob": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    response = sides.client.post("/run", content=body())
    assert response.status_code == 413


@pytest.mark.parametrize(
    "payload, needle",
    [
        ({"inputs": {}}, "'input'"),
        ({"input": {}, "policy": {"executionTimeout": "soon"}}, "executionTimeout"),
        ({"input": {}, "policy": {"executionTimeout": -5}}, "executionTimeout"),
    ],
)
def test_malformed_requests_are_400(endpoint: Callable[..., Sides], payload: dict[str, Any], needle: str) -> None:
    sides = endpoint()
    response = sides.client.post("/run", json=payload)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert sides.client.post("/run", content=b"{not json").status_code == 400


def test_unknown_job_is_404(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    response = sides.client.get("/status/nope-u1")
    assert response.status_code == 404
    # an endpoint that restarted forgot its jobs too: it says when it started, not only how long it keeps them
    assert "keeps results 30 min after /run" in response.json()["error"]
    assert "in memory only, since it started at " in response.json()["error"]


def test_cancel_queued_job(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    job_id = sides.submit()
    assert sides.client.post(f"/cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    assert sides.take() is None  # never handed out


def test_cancel_running_job_signals_its_worker_and_ignores_a_late_result(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    job_id = sides.submit()
    sides.take("w1")
    assert sides.client.post(f"/cancel/{job_id}").json()["status"] == "CANCELLED"
    assert sides.stop_signals("w1") == [job_id]
    assert sides.stop_signals("w1") == []  # handed out once
    assert sides.done(job_id, {"output": "late"}) == {"status": "ignored"}
    assert sides.status(job_id)["status"] == "CANCELLED"


def test_execution_timeout_from_policy_times_out_and_stops_the_job(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    job_id = sides.submit(policy={"executionTimeout": 300})
    sides.take("w1")
    state = sides.wait_status(job_id, "TIMED_OUT")
    assert state["status"] == "TIMED_OUT"
    assert "execution timeout of 0.3 s" in state["error"]
    assert job_id in sides.stop_signals("w1")


def test_default_execution_timeout_applies(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint(execution_timeout_s=0.3)
    job_id = sides.submit()
    sides.take()
    assert sides.wait_status(job_id, "TIMED_OUT")["status"] == "TIMED_OUT"


def test_retry_requeues_a_failed_job_under_the_same_id(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    job_id = sides.submit({"k": "v"})
    sides.take()
    sides.done(job_id, {"error": "boom"})
    assert sides.client.post(f"/retry/{job_id}").json() == {"id": job_id, "status": "IN_QUEUE"}
    assert sides.take() == {"id": job_id, "input": {"k": "v"}}
    sides.done(job_id, {"output": "fine"})
    assert sides.status(job_id)["output"] == "fine"
    assert sides.client.get("/health").json()["jobs"]["retried"] == 1
    refused = sides.client.post(f"/retry/{job_id}")
    assert refused.status_code == 400 and "COMPLETED" in refused.json()["error"]


def test_purge_queue_cancels_waiting_jobs_only(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    running = sides.submit()
    sides.take()
    waiting = [sides.submit() for _ in range(3)]
    assert sides.client.post("/purge-queue").json() == {"removed": 3, "status": "completed"}
    assert {sides.status(j)["status"] for j in waiting} == {"CANCELLED"}
    assert sides.status(running)["status"] == "IN_PROGRESS"


def test_stream_chunks_are_handed_out_once(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    job_id = sides.submit()
    sides.take()
    for n in range(3):
        sides.worker.post(f"/job-stream/w1/{job_id}", params={"isStream": "false"}, content=f'{{"output": {n}}}')
    first = sides.client.get(f"/stream/{job_id}").json()
    assert first["status"] == "IN_PROGRESS"
    assert first["stream"] == [{"output": 0}, {"output": 1}, {"output": 2}]
    assert sides.client.get(f"/stream/{job_id}").json()["stream"] == []


def test_runsync_waits_then_reports_the_state(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    pending = sides.client.post("/runsync", params={"wait": "200"}, json={"input": {}}).json()
    assert pending["status"] == "IN_QUEUE" and pending["id"].startswith("sync-")
    assert sides.client.post("/runsync", params={"wait": "soon"}, json={"input": {}}).status_code == 400


def test_results_expire_after_retention(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint(async_retention_s=0.3)
    job_id = sides.submit()
    sides.take()
    sides.done(job_id, {"output": 1})
    assert sides.status(job_id)["status"] == "COMPLETED"
    deadline = time.monotonic() + 5
    while sides.client.get(f"/status/{job_id}").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sides.client.get(f"/status/{job_id}").status_code == 404


def test_a_silent_worker_loses_its_job(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint(worker_lost_s=0.5)
    job_id = sides.submit()
    sides.take("w-gone")
    state = sides.wait_status(job_id, "FAILED")
    assert state["status"] == "FAILED"
    assert "w-gone" in state["error"] and "/retry/" in state["error"]
    assert sides.done(job_id, {"output": "too late"}, worker_id="w-gone") == {"status": "ignored"}


def test_a_job_taken_late_in_a_long_poll_is_not_lost(endpoint: Callable[..., Sides]) -> None:
    """A job that arrived more than worker_lost_s into an idle worker's job-take long poll was
    FAILED ("stopped responding") the moment that worker took it, and its real result ignored."""
    import threading

    sides = endpoint(worker_lost_s=0.5, take_hold_s=3)
    taken: list[dict[str, Any] | None] = []
    poll = threading.Thread(target=lambda: taken.append(sides.take("w-polling")))
    poll.start()
    time.sleep(1.2)  # past worker_lost_s since the worker was last seen (the poll began)
    job_id = sides.submit()
    poll.join(10)
    assert taken and taken[0] and taken[0]["id"] == job_id
    time.sleep(0.3)  # the reaper runs every 0.05 s
    assert sides.status(job_id)["status"] == "IN_PROGRESS"
    assert sides.done(job_id, {"output": "done"}, worker_id="w-polling") == {"status": "COMPLETED"}


def test_queue_ttl_times_out_an_untaken_job(endpoint: Callable[..., Sides]) -> None:
    sides = endpoint()
    job_id = sides.submit(policy={"ttl": 200})
    assert sides.wait_status(job_id, "TIMED_OUT")["status"] == "TIMED_OUT"
    assert sides.take() is None
