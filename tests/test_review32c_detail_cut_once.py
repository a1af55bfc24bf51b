"""Review 32c: a long upstream error is cut once, where the router records it, redacted first.

``translate_error`` cut litellm's text to 300 characters and added "..."; the router's cap then
cut that again, keeping its start and its end: the end it kept was the first cut's "...", so the
trace said " ... " and "..." both and lost how the upstream's message ended (its cause).
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

from core.errors import AllProvidersFailed
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router

KEY = "sk-proj-" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2H1g0"
CAUSE = "decode failed: the KV cache is full"
#: a long upstream message whose end says what went wrong, a key near each end
LONG = f"upstream trouble using {KEY} " + "while serving the batch " * 40 + f"{KEY} {CAUSE}"


class Verbose(FakeOpenAI):
    """The fake, whose ``verbose`` model fails with HTTP 500 and a long message."""

    async def _respond(self, how: Behaviour, model: str, body: dict[str, Any], request_key: str = "",
                       recorded: Any = None) -> Any:
        from starlette.responses import JSONResponse

        if model == "verbose":
            return JSONResponse({"error": {"message": LONG, "type": "server_error"}}, status_code=500)
        return await super()._respond(how, model, body, request_key, recorded)


async def test_a_long_upstream_error_keeps_its_end_with_one_cut_and_no_key() -> None:
    with Verbose() as server:
        cfg = make_swarm_config({"verbose": {"family": "v", "litellm_model": "openai/verbose",
                                             "api_base": f"{server.url}/v1", "timeout_s": 5}})
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        with pytest.raises(AllProvidersFailed) as failed:
            await router.complete([Message(role="user", content="hi")], LLMConfig())
    detail = failed.value.attempts[0].detail or ""
    assert detail.startswith("HTTP 500: ") and len(detail) <= 300, detail
    assert detail.endswith(CAUSE), detail  # how it ended: the first cut had dropped it
    assert detail.count("...") == 1, detail  # one cut, one marker
    assert KEY[:12] not in str(failed.value.to_dict()) and KEY[-8:] not in str(failed.value.to_dict()), detail
