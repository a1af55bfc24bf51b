"""Review 31h: "every backend failed" names whose each failure was, not only the model's alias.

Config names models as the operator likes (``fast``, ``cheap``): the error a user reads in their
MCP client said "fast: error ProviderUnavailable ...; cheap: error ...", and could not tell
DeepSeek's failure from Gemini's. Each attempt now reads ``provider/model``.
"""

from __future__ import annotations

import pytest
from fake_openai import make_swarm_config

from core.errors import AllProvidersFailed, ProviderUnavailable
from providers.base import LLMConfig, Message, TraceStep
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter
from providers.testing import FakeLLM


async def test_each_attempt_of_the_one_line_error_names_its_provider() -> None:
    cfg = make_swarm_config(
        {"fast": {"family": "deepseek", "litellm_model": "openai/x"},
         "cheap": {"family": "gemini", "litellm_model": "openai/y"}},
        tiers={"fast": ["fast", "cheap"], "balanced": ["fast"], "premium": ["fast"]}, fallback_chain=["gemini"],
    )
    models = {
        "fast": FakeLLM([ProviderUnavailable("deepseek", "HTTP 503: overloaded", model="fast")]),
        "cheap": FakeLLM([ProviderUnavailable("gemini", "cannot connect", model="cheap")]),
    }
    with pytest.raises(AllProvidersFailed) as err:
        await LLMRouter(cfg.providers.llm, cfg.models, models, CircuitBoard()).complete(
            [Message(role="user", content="hi")], LLMConfig())
    text = str(err.value)
    assert "deepseek/fast: error ProviderUnavailable HTTP 503: overloaded (" in text, text
    assert "gemini/cheap: error ProviderUnavailable cannot connect (" in text, text
    assert text == err.value.to_dict()["message"]  # what a client reads is the same line


def test_a_step_without_a_model_of_its_own_is_named_once() -> None:
    """A storage or search step has only a provider; a model named as its provider is not doubled."""
    steps = [TraceStep(step="put", kind="storage", provider="s3", outcome="error", error_class="ProviderUnavailable"),
             TraceStep(step="search", kind="search", provider="searxng", model="searxng", outcome="error")]
    text = str(AllProvidersFailed("storage", steps))
    assert "every backend failed: s3: error ProviderUnavailable (0 ms); searxng: error (0 ms)" in text, text
