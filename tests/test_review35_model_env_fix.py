"""A model name the provider does not serve, read from a variable: the fix names that variable
(``DEEPSEEK_Q4_MODEL`` for the self-hosted DeepSeek), not only the config key that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_review33q_model_not_served import SECRET, Providers

from core.config import load_config
from core.errors import AllProvidersFailed
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_q4_model_knows_its_name_comes_from_deepseek_q4_model() -> None:
    config = load_config(ROOT / "config.yaml", env={})
    assert config.models["deepseek-v3.1-q4"].litellm_model_env == ("DEEPSEEK_Q4_MODEL",)
    assert config.models["claude-sonnet-5-5"].litellm_model_env == ()


async def test_a_self_hosted_server_that_does_not_serve_the_name_says_to_set_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = Providers()
    try:
        monkeypatch.setenv("DEEPSEEK_API_KEY", SECRET)
        monkeypatch.setenv("DEEPSEEK_Q4_MODEL", "my-vllm-deepseek")
        monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", server.url)
        config = load_config(ROOT / "config.yaml")
        llm = config.providers.llm.model_copy(update={"tiers": {"fast": ["deepseek-v3.1-q4"]}, "fallback_chain": []})
        router = build_llm_router(llm, config.models, circuits=CircuitBoard())
        with pytest.raises(AllProvidersFailed) as caught:
            await router.complete([Message(role="user", content="Say hello.")], LLMConfig(tier="fast"))
    finally:
        server.close()
    [step] = caught.value.attempts
    assert step.error_class == "ModelNotServed", step
    assert ("DeepSeek does not serve the model 'my-vllm-deepseek' (retired or misspelt): set DEEPSEEK_Q4_MODEL"
            " (read by models.deepseek-v3.1-q4.litellm_model in config.yaml)") in (step.detail or ""), step.detail
    assert SECRET not in str(caught.value)
