"""The shipped config asks DeepSeek for a model its API still serves.

DeepSeek retired the model names ``deepseek-chat`` and ``deepseek-reasoner`` on 2026-07-24; the
shipped ``deepseek/deepseek-chat`` failed every call of a user who set ``DEEPSEEK_API_KEY``, and the
chain fell through to Gemini, Claude and the local model. It asks for ``deepseek-flash`` with
thinking off (``deepseek-chat`` was V4 Flash without thinking; V4 thinks by default, which changes
latency, tokens and the answer's shape), through litellm's real DeepSeek route, on loopback.
"""

from __future__ import annotations

import json

import pytest
from fake_openai import Behaviour, FakeOpenAI


async def test_a_deepseek_key_gets_answers_from_v4_flash_without_thinking(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.runtime import Runtime

    with FakeOpenAI() as server:
        monkeypatch.setenv("DEEPSEEK_API_BASE", server.url + "/v1")
        monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-deepseek-v4-0000")
        server.script("deepseek-flash", Behaviour.answer("answer from DeepSeek"))
        runtime = Runtime()
        try:
            result = await runtime.run({"project": "swarm", "action": "delegate",
                                        "input": {"task": "Say hi.", "kind": "bulk_content"}})
        finally:
            await runtime.aclose()
        sent = server.requests_for("deepseek-flash")
    assert result["status"] == "COMPLETED", result["error"]
    draft = next(s for s in result["trace"] if s["kind"] == "llm" and s["step"] == "draft" and s["outcome"] == "ok")
    assert draft["model"] == "deepseek-v3.1-q8", result["trace"]
    assert sent, "DeepSeek was never asked"
    body = sent[0].body
    assert body["model"] == "deepseek-flash" and body.get("thinking") == {"type": "disabled"}, body
    assert "sk-test-deepseek-v4-0000" not in json.dumps(result)


def test_the_self_hosted_deepseek_takes_its_served_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import load_config

    monkeypatch.setenv("DEEPSEEK_Q4_MODEL", "my-vllm-deepseek")
    assert load_config().models["deepseek-v3.1-q4"].litellm_model == "deepseek/my-vllm-deepseek"
    monkeypatch.delenv("DEEPSEEK_Q4_MODEL")
    assert load_config().models["deepseek-v3.1-q4"].litellm_model == "deepseek/deepseek-flash"
