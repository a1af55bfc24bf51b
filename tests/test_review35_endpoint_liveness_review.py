"""The local endpoint's liveness, from the review of 49110bf: a worker the endpoint started whose
process runs but never polls (stopped, wedged) loses its job after ``worker_stall_s``; a poll the
worker dropped is no sign of life; the pool's liveness check never reaps a child its watcher reads."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from swarm.endpoint.state import JobStore, Settings
from swarm.endpoint.workers import WorkerPool


def _running_job(store: JobStore, worker_id: str) -> str:
    store.seen(worker_id)
    job = store.submit({"n": 1}, sync=False)
    assert store.take(worker_id, 1) == [job]
    return job.id


async def test_a_started_worker_whose_process_runs_but_never_polls_loses_its_job() -> None:
    store = JobStore(Settings(endpoint_id="e", api_key="k", worker_lost_s=0.05, worker_stall_s=0.3))
    store.process_alive = lambda worker_id: True  # its process runs (SIGSTOPped, say)
    job_id = _running_job(store, "w1")
    time.sleep(0.1)
    store.reap()  # past worker_lost_s, within worker_stall_s: its loop may be busy, it keeps the job
    assert store.jobs[job_id].status == "IN_PROGRESS"
    time.sleep(0.3)
    store.reap()
    assert store.jobs[job_id].status == "FAILED", store.jobs[job_id].error


async def test_a_poll_the_worker_dropped_is_no_sign_of_life() -> None:
    store = JobStore(Settings(endpoint_id="e", api_key="k", worker_lost_s=0.2))
    job_id = _running_job(store, "w1")
    worker = store.workers["w1"]
    worker.open_polls += 1
    time.sleep(0.25)
    store.poll_ended(worker, left=True)  # the connection dropped: the worker died
    store.reap()
    assert store.jobs[job_id].status == "FAILED", store.jobs[job_id].status


def test_the_pools_liveness_check_leaves_the_exit_to_its_watcher() -> None:
    pool = WorkerPool([sys.executable, "-c", "pass"])
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    proc.returncode = None  # as if not reaped yet: only the watcher's poll may reap it
    pool.procs = {"w1": proc}
    stop = threading.Event()
    pool._watcher = threading.Thread(target=stop.wait, daemon=True)
    pool._watcher.start()
    try:
        assert pool.running("w1") is True and proc.returncode is None  # not polled here
    finally:
        stop.set()
    pool._watcher.join()
    assert pool.running("w1") is False  # no watcher: it polls itself
