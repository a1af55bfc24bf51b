"""A worker's progress updates reach its endpoint in the order they were made, the newest of a
job winning: the SDK posts each on a thread of its own, and an older update that lands last
left a client reading the route for a whole five-second draft (seen in CI)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import handler
from swarm.executors.ordered_progress import OrderedProgress


def test_the_handlers_updates_land_in_the_order_they_were_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the SDK's own sending code: each update takes less time to post than the one
    before it (as when the first opens the connection), so one thread per update lands them
    backwards; the worker's sender lands them in order, the last one last."""
    from runpod.serverless.modules import rp_progress

    landed: list[int] = []
    lock = threading.Lock()

    def post(job: dict[str, Any], data: dict[str, Any]) -> None:
        time.sleep(0.05 * (5 - data["n"]))
        with lock:
            landed.append(data["n"])

    monkeypatch.setattr(rp_progress, "_thread_target", post)
    monkeypatch.setenv("RUNPOD_WEBHOOK_POST_OUTPUT", "http://127.0.0.1:9/job-done")
    monkeypatch.setattr(handler, "_ordered", None, raising=False)
    job = {"id": "job-1", "input": {}}
    for n in range(5):
        handler._progress_update(job, {"stage": "s", "n": n})
    deadline = time.monotonic() + 10
    while len(landed) < 5 and landed[-1:] != [4] and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # anything still on its way lands
    assert landed and landed == sorted(landed) and landed[-1] == 4, landed


def test_a_waiting_update_is_replaced_by_the_newer_one_of_its_job() -> None:
    release, taken = threading.Event(), threading.Event()
    sent: list[tuple[str, int]] = []

    def post(job: dict[str, Any], data: int) -> None:
        if not sent:
            taken.set()
            release.wait(10)  # the first update is on the wire while the others are made
        sent.append((job["id"], data))

    ordered = OrderedProgress(post)
    ordered.send({"id": "a"}, 1)
    assert taken.wait(10)  # the sender has taken update 1
    for job_id, data in (("a", 2), ("b", 1), ("a", 3), ("b", 2)):
        ordered.send({"id": job_id}, data)
    release.set()
    assert ordered.flush("a", 10) and ordered.flush("b", 10)
    assert sent == [("a", 1), ("a", 3), ("b", 2)]  # each job's newest; "a" was waiting first


def test_a_failed_update_does_not_stop_the_next_and_flush_is_bounded() -> None:
    gate = threading.Event()
    sent: list[int] = []

    def post(job: dict[str, Any], data: int) -> None:
        if data == 1:
            raise OSError("connection refused")
        gate.wait(10)
        sent.append(data)

    ordered = OrderedProgress(post)
    ordered.send({"id": "a"}, 1)
    assert ordered.flush("a", 10)
    ordered.send({"id": "a"}, 2)
    started = time.monotonic()
    assert not ordered.flush("a", 0.2)  # still being sent: the caller goes on after its bound
    assert time.monotonic() - started < 5
    gate.set()
    assert ordered.flush("a", 10) and sent == [2]


def test_an_update_still_waiting_when_flush_gives_up_is_dropped() -> None:
    """It would land after the job's result."""
    gate, taken = threading.Event(), threading.Event()
    sent: list[tuple[str, int]] = []

    def post(job: dict[str, Any], data: int) -> None:
        if job["id"] == "slow":
            taken.set()
            gate.wait(10)
        sent.append((job["id"], data))

    ordered = OrderedProgress(post)
    ordered.send({"id": "slow"}, 1)
    assert taken.wait(10)
    ordered.send({"id": "done-job"}, 1)
    assert not ordered.flush("done-job", 0.1)
    gate.set()
    assert ordered.flush("slow", 10)
    time.sleep(0.2)
    assert sent == [("slow", 1)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the point
def test_a_sender_that_dies_is_replaced_by_the_next_send() -> None:
    sent: list[int] = []

    def post(job: dict[str, Any], data: int) -> None:
        if data == 1:
            raise SystemExit  # not an Exception: it ends the sender's thread
        sent.append(data)

    ordered = OrderedProgress(post)
    ordered.send({"id": "a"}, 1)
    assert ordered.flush("a", 10)  # not stuck on the dead sender
    ordered.send({"id": "a"}, 2)
    assert ordered.flush("a", 10) and sent == [2]
