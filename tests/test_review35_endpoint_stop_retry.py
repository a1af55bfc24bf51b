"""The local endpoint's stop signals: one for a job no ping listed is let go after a few pings, and
a retried job's new run never gets the stop meant for its earlier one (review of 2a0047c: such a
stop was sent on every ping for the 30 minutes the job was kept, and killed the retried run)."""

from __future__ import annotations

import time

from swarm.endpoint.liveness import STOP_UNLISTED_PINGS
from swarm.endpoint.state import JobStore, Settings


async def test_a_stop_for_a_job_no_ping_listed_is_sent_a_few_times_then_let_go() -> None:
    store = JobStore(Settings(endpoint_id="e", api_key="k"))
    store.seen("w1")
    job = store.submit({"n": 1}, sync=False)
    store.take("w1", 1)
    store.cancel(job)
    worker = store.workers["w1"]
    sent = []
    for _ in range(STOP_UNLISTED_PINGS + 3):
        worker.stop.clear()  # the worker took the stop (/job-stop) and its task ended before any ping
        store.pinged("w1", "")
        sent.append(job.id in worker.stop)
    assert sent == [True] * STOP_UNLISTED_PINGS + [False] * 3, sent


async def test_a_retried_job_is_not_stopped_by_its_earlier_runs_stop() -> None:
    store = JobStore(Settings(endpoint_id="e", api_key="k"))
    store.seen("w1")
    job = store.submit({"n": 2}, sync=False, policy={"executionTimeout": 1})
    store.take("w1", 1)
    time.sleep(0.01)
    store.reap()
    assert job.status == "TIMED_OUT"
    worker = store.workers["w1"]
    worker.stop.clear()
    store.pinged("w1", "")
    assert store.retry(job)
    assert store.take("w1", 1) == [job]
    store.pinged("w1", job.id)  # the new run is listed
    assert job.id not in worker.stop and job.status == "IN_PROGRESS", (worker.stop, job.status)
