"""A cancel that reaches a worker before it has started the job's task is not lost to a stale ping.

The SDK ignores a stop signal for a job whose task it has not started yet, so the endpoint repeats
the signal while the worker's pings still list the job. But a ping's list is read by the SDK's
heartbeat process before the request goes out: one read before the worker had the job arrived
after the cancel, said "not running", and the endpoint forgot the stop. The next pings listed
the job, no stop came again, and a cancelled job ran on to its end, its worker busy meanwhile
(``test_cancel_of_a_running_job_stops_it_on_the_worker`` failed that way on a loaded machine).

Driven by hand over loopback HTTP on both sides, as ``test_endpoint_api`` is; each ping is the one
the SDK's heartbeat sends (``job_id``: the comma-joined ids it runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings

KEY = "rpa_REVIEW35AKEY0123456789012345"
FAST: dict[str, Any] = dict(endpoint_id="ep-a", api_key=KEY, take_hold_s=0.3, stop_hold_s=0.3, worker_lost_s=30,
                            reap_interval_s=0.05)


class Worker:
    """The worker's side of the protocol, as the SDK speaks it."""

    def __init__(self, server: EndpointServer, worker_id: str = "w1") -> None:
        base = f"{server.api_base}/ep-a"
        self.id = worker_id
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=15)
        self.http = httpx.Client(base_url=base, headers={"Authorization": KEY}, timeout=15)

    def submit(self) -> str:
        return str(self.client.post("/run", json={"input": {"n": 1}}).json()["id"])

    def take(self) -> str:
        response = self.http.get(f"/job-take/{self.id}", params={"gpu": "local", "job_in_progress": "0"})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def ping(self, *running: str) -> None:
        response = self.http.get(f"/ping/{self.id}", params={"job_id": ",".join(running), "runpod_version": "1.12.0"})
        assert response.status_code == 200, response.text

    def stop_signals(self) -> list[str]:
        response = self.http.get(f"/job-stop/{self.id}", params={"gpu": "local"})
        return [] if response.status_code == 204 else list(response.json()["jobsToStop"])


@pytest.fixture
def worker() -> Iterator[Worker]:
    with EndpointServer(Settings(**FAST)) as server:
        side = Worker(server)
        yield side
        side.client.close()
        side.http.close()


def test_a_ping_read_before_the_worker_had_the_job_does_not_drop_its_stop(worker: Worker) -> None:
    job_id = worker.submit()
    assert worker.take() == job_id
    assert worker.client.post(f"/cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    assert worker.stop_signals() == [job_id]  # reaches the SDK before the job's task: ignored there
    worker.ping()  # the heartbeat read its list before the worker had the job
    worker.ping(job_id)  # now the worker runs it: the stop must come again
    assert worker.stop_signals() == [job_id]
    worker.ping(job_id)  # still running (the SDK ignored that one too): again
    assert worker.stop_signals() == [job_id]
    # stopped at last: the next ping leaves it out, and an id listed after that gets no stop
    worker.ping()
    worker.ping(job_id)
    assert worker.stop_signals() == []
