"""A server's HTTP 408 is said as the server's, not as our clock running out: litellm maps a 408 to
its ``Timeout``, and the trace read "no answer within 60 s" for a call that failed in 90 ms."""

from __future__ import annotations

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

from core.errors import ProviderTimeout
from providers.base import LLMConfig, Message
from providers.llm.litellm_backend import LiteLLMModel


def model(server: FakeOpenAI, timeout_s: float) -> LiteLLMModel:
    spec = {"family": "m", "litellm_model": "openai/m1", "api_base": f"{server.url}/v1", "timeout_s": timeout_s}
    return LiteLLMModel("p", make_swarm_config({"p": spec}).models["p"])


async def test_a_servers_408_is_said_as_the_servers() -> None:
    with FakeOpenAI() as server:
        server.script("m1", Behaviour.fail(408))
        with pytest.raises(ProviderTimeout) as caught:
            await model(server, 60).complete([Message(role="user", content="hi")], LLMConfig())
    said = caught.value.message
    assert said.startswith("HTTP 408 (the server timed the request out)"), said
    assert "fake upstream error 408" in said and "within 60 s" not in said, said


async def test_our_own_clock_running_out_is_still_said_so() -> None:
    with FakeOpenAI() as server:
        server.script("m1", Behaviour.hang(5))
        with pytest.raises(ProviderTimeout) as caught:
            await model(server, 0.5).complete([Message(role="user", content="hi")], LLMConfig())
    assert caught.value.message == "no answer within 0.5 s", caught.value.message
