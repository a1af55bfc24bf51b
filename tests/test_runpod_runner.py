"""RunPodExecutor against scripted HTTP answers (httpx.MockTransport), and make_executor's choice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import WORKER_QUEUE

from core.errors import ConfigError
from swarm.executors import make_executor
from swarm.executors.local import LocalExecutor
from swarm.executors.runpod import RunPodExecutor
from swarm.executors.runpod_envelope import worker_error

KEY = "rpa_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "t"}}


def scripted(answers: dict[str, list[httpx.Response]]) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """Answers per path suffix (``run``, ``status``, ``cancel``, ``stream``), played in order; the last repeats."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        kind = request.url.path.split("/")[3]
        queue = answers[kind]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), seen


def ok(body: dict[str, Any], status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def runner(http: httpx.AsyncClient, **kw: Any) -> RunPodExecutor:
    return RunPodExecutor("https://api.example/v2", "ep1", KEY, http, poll_interval_s=0.01, **kw)


async def test_completed_job_returns_the_workers_envelope_and_a_runpod_step() -> None:
    envelope = {"job_id": "j1", "project": "swarm", "action": "delegate", "status": "COMPLETED", "output": {"text": "hi"}, "trace": [], "totals": {}, "elapsed_ms": 5}
    http, seen = scripted({
        "run": [ok({"id": "j1", "status": "IN_QUEUE"})],
        "status": [ok({"id": "j1", "status": "IN_QUEUE"}), ok({"id": "j1", "status": "COMPLETED", "output": envelope, "delayTime": 3, "executionTime": 9, "workerId": "w"})],
    })
    result = await runner(http).run(JOB)
    assert result["status"] == "COMPLETED" and result["output"] == {"text": "hi"} and result["error"] is None
    assert result["trace"][-1]["provider"] == "runpod" and "ran 9 ms on w" in result["trace"][-1]["detail"]
    assert json.loads(seen[0].content) == {"input": JOB}
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("output", [[{"choices": [{"text": "zebra-answer"}]}], "zebra-answer", {"choices": [], "usage": {}}, {}])
async def test_an_endpoint_that_answers_no_swarm_result_is_a_worker_error_naming_the_endpoint(output: Any) -> None:
    """A vLLM endpoint's id set by mistake: a list or a string crashed the MCP server and the CLI
    (``'list' object has no attribute 'get'``), a dict came back as an empty COMPLETED answer."""
    http, _ = scripted({"run": [ok({"id": "j1", "status": "IN_QUEUE"})],
                        "status": [ok({"id": "j1", "status": "COMPLETED", "output": output})]})
    result = await runner(http).run(JOB)
    assert result["status"] == "FAILED" and result["output"] is None, result
    error = result["error"]
    assert error["type"] == "WorkerError" and "no runpod-swarm result" in error["message"]
    assert "is RUNPOD_ENDPOINT_ID (ep1) the endpoint running this project's worker image?" in error["message"]
    assert "zebra" not in error["message"]  # what the foreign handler said is not repeated


async def test_429_on_run_and_5xx_on_status_are_retried_with_backoff() -> None:
    http, seen = scripted({
        "run": [ok({}, 429, **{"retry-after": "0"}), ok({}, 429), ok({"id": "j2", "status": "IN_QUEUE"})],
        "status": [ok({}, 502), ok({}, 503), ok({"id": "j2", "status": "COMPLETED", "output": {
            "job_id": "j2", "project": "swarm", "action": "delegate", "status": "COMPLETED", "output": {"text": "x"},
            "trace": [], "totals": {}, "elapsed_ms": 5}})],
    })
    result = await runner(http).run(JOB)
    assert result["status"] == "COMPLETED" and result["output"] == {"text": "x"}
    assert [r.url.path.split("/")[3] for r in seen] == ["run", "run", "run", "status", "status", "status"]


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_a_5xx_to_run_is_not_sent_again_so_a_queued_job_never_runs_twice(code: int) -> None:
    http, seen = scripted({"run": [ok({"error": "upstream timed out"}, code), ok({"id": "j3", "status": "IN_QUEUE"})]})
    result = await runner(http).run(JOB)
    assert [r.url.path.split("/")[3] for r in seen] == ["run"]
    assert result["status"] == "FAILED" and result["error"]["type"] == "ProviderUnavailable"
    assert f"HTTP {code} to /run" in result["error"]["message"] and "second job" in result["error"]["message"]


async def test_persistent_429_becomes_a_rate_limit_error() -> None:
    http, _ = scripted({"run": [ok({}, 429, **{"retry-after": "0"})]})
    result = await runner(http, max_retries=2).run(JOB)
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "ProviderRateLimited"


async def test_bad_key_is_a_config_error_that_never_shows_the_key() -> None:
    http, _ = scripted({"run": [httpx.Response(401, text=f"Unauthorized key {KEY}")]})
    result = await runner(http).run(JOB)
    assert result["error"]["type"] == "ConfigError"
    assert "api_key_env" in result["error"]["message"]
    assert KEY not in json.dumps(result)


async def test_unknown_endpoint_is_a_config_error() -> None:
    http, _ = scripted({"run": [ok({"error": "endpoint 'ep1' not found"}, 404)]})
    result = await runner(http).run(JOB)
    assert result["error"]["type"] == "ConfigError" and "endpoint_id" in result["error"]["message"]


@pytest.mark.parametrize("final, kind", [("CANCELLED", "JobCancelled"), ("TIMED_OUT", "JobTimedOut")])
async def test_cancelled_and_timed_out_are_final(final: str, kind: str) -> None:
    http, seen = scripted({"run": [ok({"id": "j3", "status": "IN_QUEUE"})], "status": [ok({"id": "j3", "status": final, "error": "execution timeout of 600 s exceeded"})]})
    result = await runner(http).run(JOB)
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == kind and final in result["error"]["message"]
    assert len(seen) == 2  # no polling past a final state


async def test_failed_job_keeps_the_handlers_error_and_trace() -> None:
    output = {"job_id": "j4", "project": "swarm", "action": "delegate", "status": "FAILED", "output": None, "trace": [{"step": "dispatch"}], "totals": {}, "elapsed_ms": 1}
    http, _ = scripted({
        "run": [ok({"id": "j4", "status": "IN_QUEUE"})],
        "status": [ok({"id": "j4", "status": "FAILED", "output": output, "error": {"type": "AllProvidersFailed", "message": "every model failed"}})],
    })
    result = await runner(http).run(JOB)
    assert result["error"] == {"type": "AllProvidersFailed", "message": "every model failed"}
    assert result["trace"][0] == {"step": "dispatch"}


async def test_progress_comes_from_status_and_stream() -> None:
    http, _ = scripted({
        "run": [ok({"id": "j5", "status": "IN_QUEUE"})],
        "status": [
            ok({"id": "j5", "status": "IN_PROGRESS", "output": {"stage": "draft", "message": "drafting", "fraction": 0.5}}),
            ok({"id": "j5", "status": "IN_PROGRESS", "output": {"stage": "draft", "message": "drafting", "fraction": 0.5}}),
            ok({"id": "j5", "status": "COMPLETED", "output": {"x": 1}}),
        ],
        "stream": [ok({"id": "j5", "status": "IN_PROGRESS", "stream": [{"output": {"stage": "chunk", "message": "c1"}}]}), ok({"stream": []})],
    })
    updates: list[tuple[str, str, Any]] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        updates.append((stage, message, fraction))

    await runner(http).run(JOB, progress)
    assert updates == [("chunk", "c1", None), ("draft", "drafting", 0.5)]  # a repeated update is sent once


async def test_oversized_job_is_refused_before_it_is_sent() -> None:
    http, seen = scripted({"run": [ok({"id": "never"})]})
    big = {**JOB, "input": {"image": "A" * (10 * 1024 * 1024 + 1)}}
    result = await runner(http).run(big)
    assert result["error"]["type"] == "InputError" and "storage keys" in result["error"]["message"]
    assert seen == []


async def test_unreachable_endpoint_is_provider_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    result = await runner(http, max_retries=1).run(JOB)
    assert result["error"]["type"] == "ProviderUnavailable"
    # no model was reached: the runpod step is no provider call ("1 provider calls" was said)
    assert result["totals"] == {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "provider_calls": 0}
    from mcp_server.outputs import TraceStepOut
    from mcp_server.texts import handle_text

    plan = TraceStepOut(step="plan", kind="node", provider="graph", latency_ms=1.0, outcome="ok")
    assert "finished so far" not in handle_text("j1", None, None, [plan])  # "finished so far: " and nothing was shown


async def test_caller_cancellation_cancels_the_remote_job() -> None:
    http, seen = scripted({
        "run": [ok({"id": "j6", "status": "IN_QUEUE"})],
        "status": [ok({"id": "j6", "status": "IN_PROGRESS"})],
        "stream": [ok({"stream": []})],
        "cancel": [ok({"id": "j6", "status": "CANCELLED"})],
    })
    task = asyncio.create_task(runner(http).run(JOB))
    while not any(r.url.path.endswith("/status/j6") for r in seen):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[-1].method == "POST" and seen[-1].url.path == "/v2/ep1/cancel/j6"


async def test_every_executor_answers_with_the_same_envelope_keys() -> None:
    from swarm.dispatcher import dispatch
    from swarm.envelope import ENVELOPE_KEYS

    async def no_context(job_id: str) -> Any:
        raise AssertionError("a job for an unknown project never builds a context")

    local = await dispatch({"project": "nope", "action": "x", "job_id": "j8"}, no_context)
    # RunPod's SDK drops a null "error" from the handler's answer, and totals may be missing.
    sent = {"job_id": "j7", "project": "swarm", "action": "delegate", "status": "COMPLETED", "output": {"text": "hi"}, "trace": []}
    http, _ = scripted({"run": [ok({"id": "j7"})], "status": [ok({"id": "j7", "status": "COMPLETED", "output": sent})]})
    remote = await runner(http).run(JOB)
    plain, _ = scripted({"run": [ok({"id": "j9"})], "status": [ok({"id": "j9", "status": "TIMED_OUT"})]})
    timed_out = await runner(plain).run(JOB)
    assert tuple(local) == tuple(remote) == tuple(timed_out) == ENVELOPE_KEYS
    assert local["status"] == "FAILED" and local["error"]["type"] == "InputError" and local["job_id"] == "j8"
    assert remote["error"] is None and remote["totals"]["provider_calls"] == 0 and remote["output"] == {"text": "hi"}
    assert timed_out["project"] == "swarm" and timed_out["job_id"] == "j9" and timed_out["error"]["type"] == "JobTimedOut"


def test_worker_error_shapes() -> None:
    sdk = json.dumps({"error_type": "<class 'ValueError'>", "error_message": f"bad {KEY}", "error_traceback": "Traceback (most recent call last): ..."})
    assert worker_error(sdk) == {"type": "ValueError", "message": "bad [REDACTED]"}
    assert worker_error("handler: boom \ntraceback: Traceback ...") == {"type": "WorkerError", "message": "handler: boom "}
    assert worker_error({"type": "InputError", "message": "m"}) == {"type": "InputError", "message": "m"}
    assert worker_error(None)["type"] == "WorkerError"


# --- make_executor ----------------------------------------------------------------------------


@pytest.fixture
def config_with(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    from core.config import load_config

    def load(**env: str) -> Any:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_config(config_file)

    return load


def test_auto_is_local_without_endpoint_or_key(config_with: Callable[..., Any]) -> None:
    assert isinstance(make_executor(config_with(), runtime=object()), LocalExecutor)
    assert isinstance(make_executor(config_with(RUNPOD_ENDPOINT_ID="ep"), runtime=object()), LocalExecutor)


def test_an_endpoint_without_its_key_runs_locally_and_says_so_once_except_on_a_worker(
        config_with: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import swarm.executors

    monkeypatch.setattr(swarm.executors, "_warned", set())
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.delenv("RUNPOD_WEBHOOK_GET_JOB", raising=False)
    monkeypatch.setenv("RUNPOD_POD_ID", "gpu-pod-1")  # a GPU pod is a client like any machine: warned
    cfg = config_with(RUNPOD_ENDPOINT_ID="ep-noid")
    with caplog.at_level("WARNING", logger="swarm.executors"):
        for _ in range(3):  # asked per job
            assert isinstance(make_executor(cfg, runtime=object()), LocalExecutor)
    said = [r.getMessage() for r in caplog.records if "ep-noid" in r.getMessage()]
    assert len(said) == 1 and "$RUNPOD_API_KEY is empty: jobs run in-process" in said[0]

    caplog.clear()  # a RunPod worker has RUNPOD_ENDPOINT_ID from RunPod and rightly no key: no warning
    monkeypatch.setattr(swarm.executors, "_warned", set())
    monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", WORKER_QUEUE)
    with caplog.at_level("WARNING", logger="swarm.executors"):
        assert isinstance(make_executor(cfg, runtime=object()), LocalExecutor)
    assert not [r for r in caplog.records if "ep-noid" in r.getMessage()]


def test_auto_is_runpod_with_endpoint_and_key(config_with: Callable[..., Any]) -> None:
    chosen = make_executor(config_with(RUNPOD_ENDPOINT_ID="ep9", RUNPOD_API_KEY=KEY, RUNPOD_API_BASE="http://127.0.0.1:1/v2"), runtime=object())
    assert isinstance(chosen, RunPodExecutor)
    assert chosen.root == "http://127.0.0.1:1/v2/ep9"
    assert KEY not in repr(chosen)


def test_forced_runpod_without_key_names_the_variable(config_with: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="RUNPOD_API_KEY"):
        make_executor(config_with(SWARM_RUNNER="runpod", RUNPOD_ENDPOINT_ID="ep"), runtime=object())
    with pytest.raises(ConfigError, match="endpoint_id"):
        make_executor(config_with(SWARM_RUNNER="runpod", RUNPOD_ENDPOINT_ID=""), runtime=object())


async def test_local_runner_calls_the_runtime() -> None:
    class Runtime:
        async def run(self, job: dict[str, Any], progress: Any = None) -> dict[str, Any]:
            return {"status": "COMPLETED", "job": job}

    assert (await LocalExecutor(Runtime()).run(JOB))["job"] == JOB
