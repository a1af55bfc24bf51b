"""Review 32c: a model skipped because its half-open circuit's probe is still in flight says when
it will next be tried, as a skip for an open circuit does ("open until ... (another N s)"). It
said only "a probe call is already in flight": a reader could not tell a minute's wait from none."""

from __future__ import annotations

import pytest
from fake_openai import make_swarm_config

from core.errors import AllProvidersFailed, ProviderUnavailable
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter
from providers.testing import FakeLLM


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _half_open_with_a_probe(clock: Clock) -> CircuitBoard:
    board = CircuitBoard(failure_threshold=2, cooldown_s=30.0, clock=clock)
    board.record_failure("m", "HTTP 500: boom")
    board.record_failure("m", "HTTP 500: boom")
    clock.now += 31.0  # cooldown over: half-open
    assert board.acquire("m") is None  # this caller is the probe
    clock.now += 2.5
    return board


def test_a_caller_skipped_while_the_probe_runs_is_told_when_the_model_is_tried_again() -> None:
    board = _half_open_with_a_probe(Clock())
    reason = board.acquire("m") or ""
    assert reason.startswith("circuit half-open after 2 consecutive failures: a probe call is in flight"), reason
    assert "(for 2.5 s)" in reason, reason  # how long it has run
    # when the model is tried next: as soon as the probe answers, or a cooldown after it fails
    assert "tried again as soon as it succeeds, or another 30.0 s after it fails" in reason, reason
    assert reason.endswith("; last: HTTP 500: boom"), reason


async def test_the_skip_step_in_the_trace_says_it_too() -> None:
    clock = Clock()
    board = _half_open_with_a_probe(clock)
    cfg = make_swarm_config({"m": {"family": "m", "litellm_model": "openai/m"},
                             "other": {"family": "other", "litellm_model": "openai/other"}},
                            default="m", fallback_chain=["other"], circuit={"failure_threshold": 2, "cooldown_s": 30})
    down = ProviderUnavailable("other", "down", model="other")
    router = LLMRouter(cfg.providers.llm, cfg.models, {"m": FakeLLM(), "other": FakeLLM([down])}, board)  # type: ignore[arg-type]
    with pytest.raises(AllProvidersFailed) as failed:
        await router.complete([Message(role="user", content="hi")], LLMConfig())
    skipped = failed.value.attempts[0]
    assert skipped.model == "m" and skipped.outcome == "skipped", skipped
    assert "another 30.0 s after it fails" in (skipped.detail or ""), skipped.detail
