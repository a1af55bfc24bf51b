"""A research writer passed over for the job's budget is named so in the warning, in full words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import BudgetSpec, load_config
from core.errors import ProviderUnavailable
from graphs.budget import BudgetedLLM, job_scope
from graphs.research.writer_chain import ask_writer, unanswered
from providers.base import LLMConfig, Message, PlannedAttempt
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter
from providers.testing import FakeLLM

ROOT = Path(__file__).resolve().parents[1]


def test_a_writer_passed_over_for_the_budget_is_said_briefly_not_cut_at_80_characters() -> None:
    reason = ("the balanced budget would be passed: $0.4900 spent, ~$0.6539 after this call > max_cost_usd 0.5;"
              " it is asked for up to 16384 output tokens, at its price")
    steps = [{"model": "claude-opus-5-5", "outcome": "skipped", "skip": "over_budget", "detail": reason},
             {"model": "deepseek-v3.1-q8", "outcome": "error", "error_class": "ProviderUnavailable"}]
    said = unanswered(steps)
    assert said == "claude-opus-5-5: it would pass the job's budget; deepseek-v3.1-q8: ProviderUnavailable", said


class _Planned(FakeLLM):
    """A fake model that says what it will send (``PlansAttempts``), as the litellm backend does."""

    def __init__(self, replies: list[Any], model: str, cap: int) -> None:
        super().__init__(replies, model=model)
        self.cap = cap

    def plan_attempt(self, messages: list[Message], config: LLMConfig) -> PlannedAttempt:
        return PlannedAttempt(model=self.model, input_tokens=100, max_tokens=self.cap)


async def test_auto_mode_quotes_when_the_budget_passes_a_writer_over_and_the_others_fail(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer the budget passes over (8,192 tokens against 5,000), the affordable ones down, the
    chain stopped before the local model: the call ends unanswered with the warning's reasons (the
    sources are then quoted), not with the job's BudgetExceeded and its "raise budgets.balanced"."""
    for key in ("DEEPSEEK_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(key, "sk-test-x")
    config = load_config(ROOT / "config.yaml")
    config = config.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=5000)}})
    models: dict[str, Any] = {name: _Planned(["REPORT"], name, 512) for name in config.models}
    models["claude-sonnet-5-5"] = _Planned(["REPORT"], "claude-sonnet-5-5", 8192)
    for name in ("deepseek-v3.1-q8", "deepseek-v3.1-q4", "gemini-2.5-flash-lite"):
        models[name] = _Planned([ProviderUnavailable(name, "down")], name, 1024)
    llm = BudgetedLLM(LLMRouter(config.providers.llm, config.models, models, CircuitBoard()))
    with job_scope(config, {}, {"tier": "balanced"}):
        response, trace, error, stopped = await ask_writer(
            llm, [Message(role="user", content="write")],
            LLMConfig(tier="balanced", prefer="claude", max_tokens=2000, step="write"), "local")
    assert response is None and stopped == "local", (response, stopped)
    assert error.startswith("claude-sonnet-5-5: it would pass the job's budget;"), error
    assert "deepseek-v3.1-q8: ProviderUnavailable" in error
    assert any(s.get("skip") == "over_budget" for s in trace) and not models["local"].calls
