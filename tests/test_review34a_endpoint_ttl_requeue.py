"""The local endpoint keeps RunPod's ``policy.ttl`` over a job's whole life and the queue's priority
on a requeue.

RunPod: "``ttl``: Total lifespan of the job. Timer starts when submitted and covers queue time,
execution time [...]. If TTL expires while a job is running, the job is immediately removed and
status checks return 404" (docs.runpod.io, serverless/endpoints/send-requests). The endpoint
counted the ttl only while the job waited: a running job outlived it. And a job handed to a worker
whose poll went away was put back at the very front of the queue, ahead of the normal jobs queued
meanwhile even when it was ``lowPriority``.

Driven by hand over loopback HTTP on both sides, as ``test_endpoint_api`` is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import JobStore, Settings

KEY = "rpa_REVIEW34AKEY0123456789012345"
FAST: dict[str, Any] = dict(endpoint_id="ep-a", api_key=KEY, take_hold_s=0.3, stop_hold_s=0.3, worker_lost_s=30,
                            reap_interval_s=0.05, policy_minimums=False)
LONG_RUN = 60_000  # ms: the execution timeout never ends these jobs, only the ttl can


class Sides:
    def __init__(self, server: EndpointServer) -> None:
        base = f"{server.api_base}/ep-a"
        self.server = server
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=15)
        self.worker = httpx.Client(base_url=base, headers={"Authorization": KEY}, timeout=15)

    def submit(self, **policy: Any) -> str:
        response = self.client.post("/run", json={"input": {"n": 1}, "policy": policy})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def take(self, worker_id: str = "w1") -> str | None:
        response = self.worker.get(f"/job-take/{worker_id}", params={"gpu": "local", "job_in_progress": "0"})
        return None if response.status_code == 204 else str(response.json()["id"])

    def done(self, job_id: str, output: Any, worker_id: str = "w1") -> httpx.Response:
        return self.worker.post(f"/job-done/{worker_id}/{job_id}", params={"gpu": "local", "isStream": "false"},
                                content=json.dumps({"output": output}))

    def stop_signals(self, worker_id: str = "w1") -> list[str]:
        response = self.worker.get(f"/job-stop/{worker_id}", params={"gpu": "local"})
        return [] if response.status_code == 204 else list(response.json()["jobsToStop"])

    def status_when_gone(self, job_id: str, timeout_s: float = 15) -> httpx.Response:
        """The job's /status once it is no longer IN_PROGRESS (or the last one, at the deadline)."""
        deadline = time.monotonic() + timeout_s
        while True:
            response = self.client.get(f"/status/{job_id}")
            if response.status_code != 200 or response.json()["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
                return response
            time.sleep(0.05)


@pytest.fixture
def sides() -> Iterator[Sides]:
    with EndpointServer(Settings(**FAST)) as server:
        yield Sides(server)


def test_a_job_still_running_when_its_ttl_runs_out_is_removed_and_its_worker_stopped(sides: Sides) -> None:
    kept = sides.submit(ttl=600, executionTimeout=LONG_RUN)
    assert sides.take() == kept
    assert sides.done(kept, "in time").json() == {"status": "COMPLETED"}
    job_id = sides.submit(ttl=600, executionTimeout=LONG_RUN)
    assert sides.take() == job_id

    response = sides.status_when_gone(job_id)
    assert response.status_code == 404, response.text  # RunPod: "status checks return 404"
    error = response.json()["error"]
    assert job_id in error and "ttl of 0.6 s" in error and "policy.ttl" in error, error
    assert KEY not in error
    assert job_id in sides.stop_signals()  # the worker is told to stop the job
    late = sides.done(job_id, "too late")
    assert late.status_code == 404 and "ttl" in late.json()["error"], late.text
    assert sides.client.get("/health").json()["jobs"]["inProgress"] == 0
    # a result is kept for its retention, whatever the ttl: the job that ended in time is still there
    ended = sides.client.get(f"/status/{kept}").json()
    assert (ended["status"], ended["output"]) == ("COMPLETED", "in time"), ended


def test_a_runsync_waiting_on_a_job_its_ttl_removed_hears_why(sides: Sides) -> None:
    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(sides.client.post(
        "/runsync", params={"wait": "20000"}, json={"input": {}, "policy": {"ttl": 1500, "executionTimeout": LONG_RUN}})))
    waiting.start()
    job_id = None
    while job_id is None and waiting.is_alive():  # the job is taken late in its ttl, not at once
        time.sleep(0.6)
        job_id = sides.take()
    waiting.join(30)
    assert answers and job_id, "the /runsync never ended or its job was never taken"
    body = answers[0].json()
    assert body["id"] == job_id and body["status"] == "TIMED_OUT", body  # not IN_PROGRESS after the 20 s wait
    assert "ttl of 1.5 s" in body["error"] and "queue time included" in body["error"], body
    assert sides.client.get(f"/status/{job_id}").status_code == 404


def test_a_requeued_low_priority_job_still_waits_behind_normal_ones(sides: Sides) -> None:
    low = sides.submit(lowPriority=True)
    assert sides.take("w-gone") == low
    normal = sides.submit()
    # the answer to w-gone's poll never reached it: the endpoint puts the job back (api.job_take)
    sides.server.call(lambda store: store.requeue([store.jobs[low]]))
    assert [sides.take("w2"), sides.take("w2")] == [normal, low]


def test_a_requeued_batch_keeps_its_order_ahead_of_the_rest_of_its_priority(sides: Sides) -> None:
    first, low_first = sides.submit(), sides.submit(lowPriority=True)
    batch = sides.worker.get("/job-take-batch/w-gone", params={"gpu": "local", "batch_size": "2"}).json()
    assert [job["id"] for job in batch] == [first, low_first]
    later, low_later = sides.submit(), sides.submit(lowPriority=True)

    def put_back(store: JobStore) -> None:
        store.requeue([store.jobs[first], store.jobs[low_first]])

    sides.server.call(put_back)
    assert [sides.take("w2") for _ in range(4)] == [first, later, low_first, low_later]
