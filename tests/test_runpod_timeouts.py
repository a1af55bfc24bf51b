"""A RunPod endpoint that answers a status poll too late, on loopback: the poll is asked again,
as one whose connection dropped, and following the job goes on (one ReadTimeout on ``/status``
ended following it: the job was reported FAILED while it ran on, and was billed, on RunPod); an
endpoint that stops answering until the wait runs out says the job may still be running, with its
id and the steps its worker had reported, not a plain FAILED."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_runpod_dropped import Answer, ScriptedEndpoint

from providers.base import TraceStep
from swarm.executors.runpod import RunPodExecutor
from swarm.executors.runpod_progress import steps_update

KEY = "rpa_TIMEOUTTEST0123456789abcdef"
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi."}, "job_id": "local-job-1"}
DONE = {"job_id": "local-job-1", "project": "swarm", "action": "delegate", "status": "COMPLETED",
        "output": {"text": "hi"}, "trace": [], "totals": {}, "elapsed_ms": 5}
#: how long this side waits for an answer, and how late the slow answers come
READ_TIMEOUT_S, LATE_S = 0.2, 0.6
STEP = TraceStep(step="draft", provider="fake", model="m1").model_dump()
RUNNING = {"id": "rp-1", "status": "IN_PROGRESS", "output": {"stage": "draft", "message": "drafting", **steps_update([STEP])}}
COMPLETED = {"id": "rp-1", "status": "COMPLETED", "output": DONE}


@pytest.fixture
def endpoint() -> Iterator[Any]:
    started: list[ScriptedEndpoint] = []

    def start(script: dict[str, list[Answer | None]]) -> ScriptedEndpoint:
        started.append(ScriptedEndpoint(script))
        return started[-1]

    yield start
    for server in started:
        server.close()


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=2.0))


def _recorder() -> tuple[list[str], Any]:
    said: list[str] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        said.append(f"[{stage}] {message}")

    return said, progress


QUEUED: list[Answer | None] = [(0, 200, {"id": "rp-1", "status": "IN_QUEUE"})]


@pytest.mark.parametrize("max_retries", [0, 5], ids=["followed again", "asked again"])
async def test_a_status_poll_answered_too_late_is_asked_again_and_the_job_completes(endpoint: Any, max_retries: int) -> None:
    """max_retries 0: the follower asks again itself; 5: the request is retried first."""
    server = endpoint({"run": QUEUED, "status": [(LATE_S, 200, RUNNING), (0, 200, COMPLETED)]})
    said, progress = _recorder()

    async with _client() as http:
        runner = RunPodExecutor(server.url, "ep1", KEY, http, max_retries=max_retries, poll_interval_s=0.05)
        envelope = await runner.run(dict(JOB), progress, wait_budget_s=30)

    assert envelope["status"] == "COMPLETED" and envelope["output"] == {"text": "hi"}, envelope
    assert server.seen == [("POST", "run"), ("GET", "status"), ("GET", "status")]  # submitted once
    if max_retries == 0:
        assert any("did not answer status in time (ReadTimeout)" in line and "the job may still run there" in line
                   for line in said), said
    assert KEY not in json.dumps(envelope) + " ".join(said)


async def test_an_endpoint_that_stops_answering_says_the_job_may_still_be_running_with_its_steps(endpoint: Any) -> None:
    """It said FAILED (ProviderTimeout) while the job ran on there, and dropped the finished steps."""
    server = endpoint({"run": QUEUED, "status": [(0, 200, RUNNING), (LATE_S, 200, RUNNING)]})

    async with _client() as http:
        runner = RunPodExecutor(server.url, "ep1", KEY, http, max_retries=1, poll_interval_s=0.05, follow_stream=False)
        envelope = await runner.run(dict(JOB), None, wait_budget_s=2.0)

    error = envelope["error"]
    assert envelope["status"] == "IN_PROGRESS" and error["type"] == "StillRunning", envelope
    assert error["message"].startswith("RunPod job rp-1 may still be running there (IN_PROGRESS when the endpoint last"
                                       " answered): the endpoint gave no answer to its status polls"), error
    assert "did not answer status in time (ReadTimeout)" in error["message"], error
    assert "run this job again with job id local-job-1 to follow it" in error["message"], error
    assert [(s["step"], s["provider"]) for s in envelope["trace"]] == [("draft", "fake"), ("runpod", "runpod")]
    assert envelope["trace"][-1]["detail"].startswith("job rp-1 IN_PROGRESS")
    assert [kind for _, kind in server.seen].count("run") == 1 and len(server.seen) > 3  # asked again, never resubmitted
    assert KEY not in json.dumps(envelope)


async def test_a_job_its_endpoint_fails_after_it_ran_a_while_keeps_its_finished_steps(endpoint: Any) -> None:
    """A poll answered about the job (404: gone) ends it FAILED, with the steps its worker had reported (paid for)."""
    server = endpoint({"run": QUEUED, "status": [(0, 200, RUNNING), (0, 404, {"error": "request does not exist"})]})

    async with _client() as http:
        envelope = await RunPodExecutor(server.url, "ep1", KEY, http, poll_interval_s=0.05, follow_stream=False).run(dict(JOB))

    message = envelope["error"]["message"]
    assert envelope["status"] == "FAILED" and "HTTP 404" in message, envelope
    # RunPod's answer names no cause: both are said, and that running it again is the way on
    assert message.startswith("RunPod endpoint ep1 has no record of job rp-1: its result expired, or the endpoint"
                              " restarted since"), message
    assert "submit the job again to run it" in message and message.endswith("(HTTP 404): request does not exist"), message
    assert [s["step"] for s in envelope["trace"]] == ["draft", "runpod"]


@pytest.mark.parametrize("kind", ["status", "stream", "cancel"])
async def test_a_status_stream_or_cancel_answered_too_late_is_asked_again(endpoint: Any, kind: str) -> None:
    """None of them changes anything on RunPod when sent twice (a ``/run`` does: it is not sent again)."""
    server = endpoint({kind: [(LATE_S, 200, {"id": "rp-1", "status": "IN_PROGRESS"}), (0, 200, {"id": "rp-1", "status": "CANCELLED"})]})

    async with _client() as http:
        runner = RunPodExecutor(server.url, "ep1", KEY, http, max_retries=2)
        answer = await getattr(runner, kind)("rp-1")

    assert answer["status"] == "CANCELLED"
    assert [k for _, k in server.seen] == [kind, kind]


async def test_a_stream_that_does_not_answer_costs_the_wait_nothing(endpoint: Any) -> None:
    """The relay's /stream read (progress only) was retried 5 times on timeouts, past the job's
    wait: a 1 s budget took 6.9 s. Now it is read once per poll; a late one is read at the next."""
    import time

    server = endpoint({"run": QUEUED, "status": [(0, 200, RUNNING)], "stream": [(LATE_S, 200, {"status": "IN_PROGRESS", "stream": []})]})
    said, progress = _recorder()

    async with _client() as http:
        runner = RunPodExecutor(server.url, "ep1", KEY, http, max_retries=5, poll_interval_s=0.05)
        started = time.perf_counter()
        envelope = await runner.run(dict(JOB), progress, wait_budget_s=1.0)
        took = time.perf_counter() - started

    assert envelope["status"] == "IN_PROGRESS" and envelope["error"]["type"] == "StillRunning", envelope
    assert "is still IN_PROGRESS after the wait budget" in envelope["error"]["message"]
    assert took < 4.0, took  # not the retries past the budget (6.9 s before); one read may run past it
    kinds = [k for _, k in server.seen]
    assert kinds.count("stream") == kinds.count("status")  # one read per poll, none retried


async def test_an_endpoint_that_never_answered_a_poll_does_not_claim_a_last_status(endpoint: Any) -> None:
    """It said 'IN_QUEUE when the endpoint last answered' of an endpoint that answered no poll."""
    server = endpoint({"run": QUEUED, "status": [(LATE_S, 200, RUNNING)]})

    async with _client() as http:
        runner = RunPodExecutor(server.url, "ep1", KEY, http, max_retries=0, poll_interval_s=0.05, follow_stream=False)
        envelope = await runner.run(dict(JOB), None, wait_budget_s=1.0)

    message = envelope["error"]["message"]
    assert envelope["error"]["type"] == "StillRunning", envelope
    assert message.startswith("RunPod job rp-1 may still be running there (the endpoint answered no status poll):"), message


async def test_an_endpoint_gone_for_a_while_is_told_once_then_briefly(endpoint: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 400-character 'unreachable ... To fix ...' line came every 11 s for the 10 minutes of the
    wait; now it is said whole once, then a short line a minute, and the polls back off to 30 s."""
    import swarm.executors.runpod as runpod

    monkeypatch.setattr(runpod, "SILENT_NOTICE_S", 0.0)  # every poll may say it: the short form shows
    monkeypatch.setattr(runpod, "SILENT_POLL_MAX_S", 0.3)  # polls 0.3 s apart, not 2, 4, 8 ... 30
    server = endpoint({"run": QUEUED, "status": [(0, 200, RUNNING), (LATE_S, 200, RUNNING)]})
    said, progress = _recorder()
    async with _client() as http:
        runner = RunPodExecutor(server.url, "ep1", KEY, http, max_retries=0, poll_interval_s=0.05, follow_stream=False)
        envelope = await runner.run(dict(JOB), progress, wait_budget_s=2.5)

    assert envelope["error"]["type"] == "StillRunning"
    told = [line for line in said if line.startswith("[runpod]")]
    assert len(told) >= 2 and "did not answer status in time (ReadTimeout)" in told[0], said
    assert all(line.startswith("[runpod] RunPod endpoint ep1 still gives no answer about job rp-1 (") for line in told[1:]), told
    assert all(len(line) < 200 for line in told[1:])
