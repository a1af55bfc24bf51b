"""Fault injection for every provider kind: LLM, search, S3, RunPod endpoint.

Polite faults (HTTP 500, 429, hangs) come from tests/fake_openai.py; byte-level ones (a body
cut short, a TCP reset, a response of the wrong shape, a trickle) from tests/hostile_http.py.
Each case asserts what a user notices: which error class, that the chain fell back, that the
circuit skipped a dead model without a request, that one structured error lists every attempt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fake_openai import Behaviour, FakeOpenAI, RefusedPort, make_swarm_config
from hostile_http import Act, HostileServer

from core.errors import ProviderError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable
from providers.base import LLMConfig, Message

ASK = [Message(role="user", content="say hi")]
KEY_ENV = "SWARM_RELIABILITY_FAKE_KEY"
KEY = "sk-reliability-planted-key-0001"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def _spec(alias: str, base: str, family: str, timeout_s: float = 1.0) -> dict[str, Any]:
    return {"family": family, "litellm_model": f"openai/{alias}", "api_base": f"{base}/v1",
            "api_key_env": KEY_ENV, "timeout_s": timeout_s}


def _router(primary_base: str, backup_base: str, *, clock: Callable[[], float] | None = None,
            threshold: int = 3, primary_alias: str = "primary-model") -> Any:
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router

    config = make_swarm_config(
        {"primary": _spec(primary_alias, primary_base, "first"), "backup": _spec("backup-model", backup_base, "second")},
        fallback_chain=["backup"], circuit={"failure_threshold": threshold, "cooldown_s": 30},
    )
    circuits = CircuitBoard(clock=clock) if clock else CircuitBoard()
    return build_llm_router(config.providers.llm, config.models, circuits=circuits)


# --- LLM: byte-level faults through litellm, then the fallback -------------------------------

WRONG_SHAPES = [
    Act.truncated(),
    Act.reset(),
    Act.json({"choices": []}),
    Act.json({"choices": [{"message": None}]}),
    Act.json({"id": "x", "object": "chat.completion"}),
    Act.json(["not", "an", "object"]),
    Act.status(200, b"\x00\xff\xfe garbage", content_type="application/octet-stream"),
    Act.status(502, "<html>bad gateway</html>", content_type="text/html"),
]


@pytest.mark.parametrize("act", WRONG_SHAPES, ids=["truncated", "reset", "no-choices", "null-message",
                                                    "no-choices-key", "json-list", "binary", "html-502"])
async def test_llm_byte_level_faults_fall_back_with_a_provider_error(fake: FakeOpenAI, act: Act) -> None:
    fake.script("backup-model", Behaviour.answer("backup answered"))
    with HostileServer(act) as hostile:
        answer = await _router(hostile.url, fake.url).complete(ASK, LLMConfig())
    assert answer.text == "backup answered"
    failed = answer.attempts[0]
    assert (failed.model, failed.outcome) == ("primary", "error")
    assert failed.error_class in {"ProviderError", "ProviderUnavailable", "ProviderTimeout"}, failed
    assert KEY not in (failed.detail or "")


async def test_llm_slow_trickle_times_out_and_falls_back(fake: FakeOpenAI) -> None:
    with HostileServer(Act.slow(30)) as hostile:
        answer = await _router(hostile.url, fake.url).complete(ASK, LLMConfig())
    assert answer.attempts[0].error_class == "ProviderTimeout"
    assert answer.attempts[-1].model == "backup" and answer.attempts[-1].outcome == "ok"


async def test_llm_circuit_opens_skips_without_a_request_then_closes(fake: FakeOpenAI) -> None:
    now = [0.0]
    router = _router(fake.url, fake.url, clock=lambda: now[0], threshold=2, primary_alias="flaky")
    fake.script("flaky", Behaviour.fail(500))
    for _ in range(2):
        await router.complete(ASK, LLMConfig())
    assert router.circuits.state("primary") == "open"
    sent = len(fake.requests_for("flaky"))
    skipped = await router.complete(ASK, LLMConfig())
    assert skipped.attempts[0].outcome == "skipped" and "circuit open" in (skipped.attempts[0].detail or "")
    assert len(fake.requests_for("flaky")) == sent  # an open circuit sends nothing
    now[0] += 31  # past the cooldown: one probe goes through
    fake.script("flaky", Behaviour.answer("back again"))
    probe = await router.complete(ASK, LLMConfig())
    assert probe.text == "back again" and router.circuits.state("primary") == "closed"


# --- every provider of the shipped chain down: one structured error ---------------------------


async def test_whole_llm_chain_down_returns_one_error_listing_every_attempt(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.runtime import Runtime

    with HostileServer(Act.reset()) as deepseek:
        monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
        monkeypatch.setenv("DEEPSEEK_API_BASE", deepseek.url + "/v1")
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(fake.port))
        fake.script("smollm2-135m-instruct", Behaviour.fail(503))
        runtime = Runtime()
        started = time.perf_counter()
        try:
            result = await runtime.run({"project": "swarm", "action": "delegate",
                                        "input": {"task": "hello", "kind": "critical"}})
        finally:
            await runtime.aclose()
        elapsed = time.perf_counter() - started
    print(f"whole chain down: FAILED after {elapsed:.2f} s")  # recorded in docs/RELIABILITY.md
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "AllProvidersFailed"
    steps = [(s["model"], s["outcome"]) for s in result["trace"] if s["kind"] == "llm"]
    assert steps == [("claude-sonnet-5-5", "skipped"), ("deepseek-v3.1-q8", "error"),
                     ("gemini-2.5-flash-lite", "skipped"), ("local", "error")]
    for name in ("claude-sonnet-5-5", "deepseek-v3.1-q8", "gemini-2.5-flash-lite", "local"):
        assert name in result["error"]["message"]
    assert KEY not in json.dumps(result)


# --- search backends -------------------------------------------------------------------------

SEARCH_FAULTS = [
    (Act.status(500, {"error": "x"}), ProviderUnavailable),
    (Act.status(429, {"error": "slow down"}, headers={"Retry-After": "3"}), ProviderRateLimited),
    (Act.reset(), ProviderUnavailable),
    (Act.truncated(b'{"results": [{"url": "https://a.example"'), ProviderError),
    (Act.status(200, "{not json"), ProviderError),
    (Act.json(["a", "list"]), ProviderError),
    (Act.json({"results": 5}), ProviderError),
    (Act.json({"results": True}), ProviderError),
]
SEARCH_IDS = ["500", "429-retry-after", "reset", "truncated", "malformed", "json-list", "results-int", "results-bool"]


def _searxng(url: str) -> Any:
    from providers.search.searxng import SearxngSearch

    return SearxngSearch(url, timeout_s=1)


def _tavily(url: str) -> Any:
    from providers.search.tavily import TavilySearch

    return TavilySearch("tvly-planted-reliability-key", base_url=url, timeout_s=1)


@pytest.mark.parametrize("make", [_searxng, _tavily], ids=["searxng", "tavily"])
@pytest.mark.parametrize(("act", "error"), SEARCH_FAULTS, ids=SEARCH_IDS)
async def test_search_faults_become_provider_errors(make: Callable[[str], Any], act: Act, error: type) -> None:
    with HostileServer(act) as hostile:
        with pytest.raises(error) as info:
            await make(hostile.url).search("q")
    if isinstance(info.value, ProviderRateLimited):
        assert info.value.retry_after == 3
    assert "tvly-planted" not in str(info.value)


@pytest.mark.parametrize("make", [_searxng, _tavily], ids=["searxng", "tavily"])
async def test_search_timeout_and_refused(make: Callable[[str], Any]) -> None:
    with HostileServer(Act.slow(30)) as hostile:
        with pytest.raises(ProviderTimeout):
            await make(hostile.url).search("q")
    with RefusedPort() as refused, pytest.raises(ProviderUnavailable):
        await make(refused.url).search("q")


@pytest.mark.parametrize("body", [{"results": []}, {}, {"results": [{"title": "no url"}, 7, None]}])
async def test_search_empty_answers_are_no_results_not_errors(body: dict[str, Any]) -> None:
    with HostileServer(Act.json(body)) as hostile:
        assert await _searxng(hostile.url).search("q") == []


# --- S3 --------------------------------------------------------------------------------------


def _s3(url: str, monkeypatch: pytest.MonkeyPatch, timeout_s: float = 1.0) -> Any:
    from providers.storage.s3 import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-planted-reliability-0001")
    return S3Storage("bucket", prefix="swarm", endpoint_url=url, timeout_s=timeout_s)


S3_ERROR = "<Error><Code>{code}</Code><Message>planted</Message></Error>"


@pytest.mark.parametrize(("status", "code", "error"), [
    (500, "InternalError", ProviderUnavailable),
    (502, "BadGateway", ProviderUnavailable),
    (503, "SlowDown", ProviderRateLimited),
])
async def test_s3_server_errors_are_translated_after_bounded_retries(
    monkeypatch: pytest.MonkeyPatch, status: int, code: str, error: type
) -> None:
    act = Act.status(status, S3_ERROR.format(code=code), content_type="application/xml")
    with HostileServer(act) as hostile:
        store = _s3(hostile.url, monkeypatch)
        with pytest.raises(error) as info:
            await store.get("jobs/1/out.png")
        attempts = len(hostile.requests)
    assert 1 <= attempts <= 3  # botocore's standard mode: max_attempts=2 retries after the first call
    assert "aws-secret-planted" not in str(info.value)


async def test_s3_slow_response_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with HostileServer(Act.slow(30)) as hostile:
        with pytest.raises(ProviderTimeout, match="timed out"):
            await _s3(hostile.url, monkeypatch, timeout_s=0.5).put("a.txt", b"x")


async def test_s3_reset_and_refused_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with HostileServer(Act.reset()) as hostile:
        with pytest.raises(ProviderError):
            await _s3(hostile.url, monkeypatch).get("a.txt")
    with RefusedPort() as refused, pytest.raises(ProviderUnavailable, match="cannot reach"):
        await _s3(refused.url, monkeypatch).get("a.txt")


# --- RunPod endpoint -------------------------------------------------------------------------

JOB = {"project": "swarm", "action": "delegate", "input": {"task": "hi"}}


def _runpod(handler: Callable[[httpx.Request], httpx.Response]) -> Any:
    from swarm.executors.runpod import RunPodExecutor

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RunPodExecutor("http://runpod.test/v2", "ep1", "rpa_PLANTEDKEY0123456789ABCDEF", http, poll_interval_s=0.01)


def _scripted(statuses: list[httpx.Response]) -> tuple[Callable[[httpx.Request], httpx.Response], list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/run"):
            return statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return httpx.Response(200, json={"id": "rp-1", "status": "COMPLETED", "output": {"status": "COMPLETED", "output": {"text": "ok"}}})

    return handler, seen


async def test_runpod_429_with_retry_after_is_retried_then_succeeds() -> None:
    handler, seen = _scripted([
        httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "slow"}),
        httpx.Response(429, json={"error": "slow"}),
        httpx.Response(200, json={"id": "rp-1", "status": "IN_QUEUE"}),
    ])
    result = await _runpod(handler).run(JOB)
    assert result["status"] == "COMPLETED" and result["output"] == {"text": "ok"}
    assert seen.count("POST /v2/ep1/run") == 3


async def test_runpod_5xx_to_run_ends_in_a_clear_error_without_a_second_job() -> None:
    handler, seen = _scripted([httpx.Response(502, json={"error": "bad gateway"})])
    runner = _runpod(handler)
    runner.max_retries = 2
    result = await runner.run(JOB)
    assert result["status"] == "FAILED" and result["error"]["type"] == "ProviderUnavailable"
    assert "502" in result["error"]["message"] and seen.count("POST /v2/ep1/run") == 1
    assert "rpa_PLANTEDKEY" not in json.dumps(result)


@pytest.mark.parametrize(("state", "error_type"), [
    ({"status": "FAILED", "error": "boom\nTraceback (most recent call last): secret"}, "WorkerError"),
    ({"status": "TIMED_OUT"}, "JobTimedOut"),
    ({"status": "CANCELLED"}, "JobCancelled"),
])
async def test_runpod_final_states_become_failed_envelopes(state: dict[str, Any], error_type: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/run"):
            return httpx.Response(200, json={"id": "rp-2", "status": "IN_QUEUE"})
        return httpx.Response(200, json={"id": "rp-2", **state})

    result = await _runpod(handler).run(JOB)
    assert result["status"] == "FAILED" and result["error"]["type"] == error_type
    assert "Traceback" not in json.dumps(result)


async def test_runpod_malformed_200_is_a_failed_envelope_not_a_crash() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>captive portal</html>")

    result = await _runpod(handler).run(JOB)
    assert result["status"] == "FAILED"
