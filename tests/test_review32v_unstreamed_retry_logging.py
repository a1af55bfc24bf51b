"""Review 32v: the retry without streaming after a stream that failed before its first token
(``_fitted_exchange``, for a model with a known context window) ran with litellm's own failure
logging on: the formatting and redaction of the whole traceback on the event loop that
``litellm_logging_off`` keeps out of every other call (5-11 ms a failure, most of a failover)."""

from __future__ import annotations

import pytest
from fake_openai import RefusedPort, make_swarm_config
from test_failover_speed_paths import litellm_failure_logs, spec  # noqa: F401  # the fixture
from test_llm_litellm import ASK, KEY_ENV, SECRET

from core.errors import ProviderUnavailable
from providers.base import LLMConfig
from providers.llm.litellm_backend import LiteLLMModel


async def test_the_unstreamed_retry_runs_without_litellms_failure_logging(
    litellm_failure_logs: list[str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811 (the imported fixture)
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with RefusedPort() as refused:
        entry = {**spec("good", refused.url, "first"), "stop_on_loop": True, "context_tokens": 4096}
        model = LiteLLMModel("m", make_swarm_config({"m": entry}).models["m"])
        with pytest.raises(ProviderUnavailable):
            await model.complete(ASK, LLMConfig())
    assert litellm_failure_logs == []
