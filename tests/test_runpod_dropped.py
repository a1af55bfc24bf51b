"""A RunPod endpoint whose connection drops before it answers, on loopback: a status poll is
asked again and following the job goes on (it was marked FAILED for good while the job ran, and
billed, on RunPod); a ``/run`` is not sent again, and its error and its runpod step both say the
job may have been queued (the step said 'not queued' under an error saying it may have been);
a base URL without its scheme fails the job naming ``runner.runpod.base_url``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from loopback_http import LoopbackHTTP, QuietHandler

from mcp_server import jobremote
from mcp_server.jobremote import follow_remote
from swarm.executors.runpod import RunPodExecutor

KEY = "rpa_DROPPEDTEST0123456789abcdef"
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi."}}
DONE = {"job_id": "job-1", "project": "swarm", "action": "delegate", "status": "COMPLETED", "output": {"text": "hi"},
        "trace": [], "totals": {}, "elapsed_ms": 5}


#: one answer of a fake endpoint: (seconds before it, HTTP status, JSON body); ``DROP``: hang up
#: without one (no status line, no body)
Answer = tuple[float, int, dict[str, Any]]
DROP = None


class ScriptedEndpoint(LoopbackHTTP):
    """A loopback RunPod API: the n-th request of each kind (``run``, ``status``, ``stream``,
    ``cancel``) gets the n-th entry of ``script[kind]``, the last one again once they run out; an
    answer that comes later than this side waits finds it gone."""

    def __init__(self, script: dict[str, list[Answer | None]]) -> None:
        self.seen: list[tuple[str, str]] = []
        self.bodies: list[Any] = []  # each POST's JSON body, in order
        owner = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.command == "POST":
                    owner.bodies.append(json.loads(raw) if raw else None)
                kind = self.path.split("/")[3]
                owner.seen.append((self.command, kind))
                entries = script[kind]
                entry = entries[min(sum(k == kind for _, k in owner.seen), len(entries)) - 1]
                if entry is DROP:
                    self.close_connection = True
                    return
                delay, status, body = entry
                time.sleep(delay)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # answered too late: this side hung up
                    self.close_connection = True

            do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

        super().__init__(Handler)


@pytest.fixture
def endpoint() -> Iterator[Any]:
    """Starts a ``ScriptedEndpoint`` that drops the first ``drops[kind]`` requests of each kind,
    then gives ``answers[kind]`` (HTTP status, JSON body)."""
    started: list[ScriptedEndpoint] = []

    def start(drops: dict[str, int], answers: dict[str, tuple[int, dict[str, Any]]]) -> ScriptedEndpoint:
        started.append(ScriptedEndpoint({kind: [DROP] * drops.get(kind, 0) + [(0.0, *answer)] for kind, answer in answers.items()}))
        return started[-1]

    yield start
    for server in started:
        server.close()


class _Store:
    def get(self, job_id: str) -> dict[str, Any]:
        return {"created_at": time.time()}


def _runpod_step(envelope: dict[str, Any]) -> dict[str, Any]:
    return [step for step in envelope["trace"] if step.get("provider") == "runpod"][-1]


async def test_a_status_poll_whose_connection_drops_is_asked_again(endpoint: Any) -> None:
    server = endpoint({"status": 2}, {"status": (200, {"id": "job-1", "status": "IN_PROGRESS"})})
    runner = RunPodExecutor(server.url, "ep1", KEY, max_retries=5)

    state = await runner.status("job-1")

    assert state["status"] == "IN_PROGRESS"
    assert server.seen == [("GET", "status")] * 3


async def test_following_a_job_goes_on_through_dropped_connections(endpoint: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over MCP the job was marked FAILED for good (follow_remote raised RemoteProtocolError)."""
    monkeypatch.setattr(jobremote, "UNREACHABLE_POLL_MAX_S", 0.05)
    server = endpoint({"status": 2}, {"status": (200, {"id": "job-1", "status": "COMPLETED", "output": DONE})})
    runner = RunPodExecutor(server.url, "ep1", KEY, max_retries=0, poll_interval_s=0.01)
    said: list[str] = []

    async def progress(step: str, detail: str, data: Any) -> None:
        said.append(detail)

    envelope = await follow_remote(runner, "job-1", JOB, progress, store=_Store(), closing=lambda: False)  # type: ignore[arg-type]

    assert envelope["status"] == "COMPLETED" and envelope["output"] == {"text": "hi"}, envelope
    assert any("dropped before RunPod answered status" in line and "the job runs on there" in line for line in said), said
    assert KEY not in json.dumps(envelope) + " ".join(said)


async def test_a_run_whose_connection_drops_is_not_sent_again_and_may_have_been_queued(endpoint: Any) -> None:
    server = endpoint({"run": 1}, {"run": (200, {"id": "job-1", "status": "IN_QUEUE"})})
    runner = RunPodExecutor(server.url, "ep1", KEY, max_retries=5)

    envelope = await runner.run(JOB)

    assert server.seen == [("POST", "run")]  # a second /run might start a second, paid job
    error = envelope["error"]
    assert envelope["status"] == "FAILED" and error["type"] == "ProviderUnavailable", error
    assert "dropped before RunPod answered run" in error["message"] and "may have been queued all the same" in error["message"]
    step = _runpod_step(envelope)["detail"]
    assert "may have been queued on endpoint ep1" in step and "not queued" not in step, step


@pytest.mark.parametrize("answer", ["HTTP 502", "ReadTimeout"])
async def test_the_runpod_step_of_a_run_that_got_no_usable_answer_says_it_may_have_been_queued(answer: str) -> None:
    """The error said 'the job may have been queued all the same', its step 'the job was not queued'."""
    def handle(request: httpx.Request) -> httpx.Response:
        if answer == "ReadTimeout":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(502, text="bad gateway")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        envelope = await RunPodExecutor("https://api.example/v2", "ep1", KEY, http, max_retries=0).run(JOB)

    assert "may have been queued all the same" in envelope["error"]["message"], envelope["error"]
    step = _runpod_step(envelope)["detail"]
    assert "may have been queued on endpoint ep1" in step and "not queued" not in step, step


async def test_a_base_url_without_its_scheme_fails_the_job_naming_the_key() -> None:
    """RUNPOD_API_BASE=api.runpod.ai/v2: httpx's UnsupportedProtocol came out of run() raw."""
    envelope = await RunPodExecutor("api.runpod.ai/v2", "ep1", KEY).run(JOB)

    error = envelope["error"]
    assert envelope["status"] == "FAILED" and error["type"] == "ConfigError", error
    assert error["message"].startswith("runner.runpod.base_url is 'api.runpod.ai/v2': its scheme (https://) is missing"), error
    assert "RUNPOD_API_BASE" in error["message"]
    assert "the job was not queued on endpoint ep1" in _runpod_step(envelope)["detail"]
