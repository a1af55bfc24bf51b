"""What keeps failing over cheap, through real litellm against a loopback server.

A failed call is what the router waits for before it tries the next model, so litellm must do
no work of its own on it: no retries, and none of its failure logging (which formats, redacts
and packs the whole traceback before the exception reaches us). The trace must stay complete.
The speed itself is measured in ``bench/bench_failover.py``, not here.
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_openai import FakeOpenAI, RefusedPort, make_swarm_config
from test_llm_litellm import ASK, KEY_ENV, SECRET, clean, server  # noqa: F401  # the loopback server, its reset

from core.errors import ProviderUnavailable
from providers.base import LLMConfig
from providers.circuit import CircuitBoard
from providers.llm import litellm_loader
from providers.llm.litellm_backend import LiteLLMModel
from providers.llm.litellm_loader import load_litellm
from providers.llm.router import LLMRouter, build_llm_router


@pytest.fixture
def litellm_failure_logs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The exceptions litellm's own failure logging was run for, by class name."""
    load_litellm()
    from litellm.litellm_core_utils.litellm_logging import Logging

    seen: list[str] = []
    original = Logging.failure_handler

    def spy(self: Any, exception: Exception, *args: Any, **kwargs: Any) -> Any:
        seen.append(type(exception).__name__)
        return original(self, exception, *args, **kwargs)

    monkeypatch.setattr(Logging, "failure_handler", spy)
    return seen


def spec(upstream: str, base: str, family: str) -> dict[str, object]:
    return {
        "family": family,
        "litellm_model": f"openai/{upstream}",
        "api_base": f"{base}/v1",
        "api_key_env": KEY_ENV,
        "timeout_s": 2,
    }


def router(primary_base: str, primary_upstream: str, server: FakeOpenAI) -> LLMRouter:  # noqa: F811 (the imported fixture)
    cfg = make_swarm_config(
        {
            "primary": spec(primary_upstream, primary_base, "first"),
            "backup": spec("good", server.url, "second"),
        },
        fallback_chain=["backup"],
    )
    return build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())


@pytest.mark.parametrize("failure", ["refused", "HTTP 500"])
async def test_failover_trace_is_complete_and_litellm_does_no_work_of_its_own(
    server: FakeOpenAI, litellm_failure_logs: list[str], failure: str  # noqa: F811 (the imported fixture)
) -> None:
    with RefusedPort() as refused:
        base, upstream = (refused.url, "good") if failure == "refused" else (server.url, "status-500")
        answer = await router(base, upstream, server).complete(ASK, LLMConfig())
    assert answer.text == "ok from good"
    failed, ok = answer.attempts
    assert (failed.model, failed.outcome, failed.error_class) == ("primary", "error", "ProviderUnavailable")
    assert (ok.model, ok.outcome) == ("backup", "ok")
    assert failed.latency_ms is not None and failed.latency_ms > 0
    assert failed.detail and "Traceback" not in failed.detail and SECRET not in failed.detail
    if failure == "HTTP 500":
        assert len(server.requests_for(upstream)) == 1  # no retry inside litellm or openai
    assert litellm_failure_logs == []  # litellm's failure logging was skipped for our calls


async def test_other_litellm_callers_keep_their_failure_logging(
    server: FakeOpenAI, litellm_failure_logs: list[str]  # noqa: F811 (the imported fixture)
) -> None:
    litellm = load_litellm()
    model = LiteLLMModel("m", make_swarm_config({"m": spec("status-500", server.url, "first")}).models["m"])
    with pytest.raises(ProviderUnavailable):
        await model.complete(ASK, LLMConfig())
    assert litellm_failure_logs == []
    # Our call's switch was reset when it ended: a plain litellm call right after still logs.
    with pytest.raises(litellm.InternalServerError):
        await litellm.acompletion(
            model="openai/status-500",
            api_base=f"{server.url}/v1",
            api_key="none",
            messages=[{"role": "user", "content": "hi"}],
            num_retries=0,
            max_retries=0,
        )
    assert litellm_failure_logs == ["InternalServerError"]


async def test_without_litellms_switch_a_failure_still_falls_over(
    server: FakeOpenAI, litellm_failure_logs: list[str], monkeypatch: pytest.MonkeyPatch  # noqa: F811 (the imported fixture)
) -> None:
    monkeypatch.setattr(litellm_loader, "_litellm_internal_call", None)  # a litellm without the flag
    answer = await router(server.url, "status-500", server).complete(ASK, LLMConfig())
    assert [(s.model, s.outcome, s.error_class) for s in answer.attempts] == [
        ("primary", "error", "ProviderUnavailable"),
        ("backup", "ok", None),
    ]
    assert litellm_failure_logs == ["InternalServerError"]  # slower, but nothing else changes
