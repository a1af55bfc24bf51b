"""Review 31h: a trace step's detail is capped where the router records it, redacted first.

Only litellm's own error text was cut to 300 characters; a local llama server's crash report
(three log lines of any length) went into the trace, the error and the job's result whole. The
router now caps every attempt's detail (failures, skips and answers alike), after redaction, so a
cut never leaves part of a key that redaction would have masked whole. A cut keeps the start (the
crash) and the end (how the call ended), and drops the middle (the log lines).
"""

from __future__ import annotations

import pytest
from fake_openai import make_swarm_config

from core.errors import AllProvidersFailed, ProviderUnavailable
from providers.base import LLMConfig, LLMResponse, Message, TraceStep
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter
from providers.testing import FakeLLM, FunctionLLM

KEY_ENV = "SWARM_TEST_REVIEW31H_KEY"
SECRET = "sk-review31h-" + "q7Zx" * 8  # 45 characters
ASK = [Message(role="user", content="hi")]
#: what a crashed llama server's log said: three long lines
CRASH = " | ".join(f"llama_model_load: error loading model tensor {n}: " + "blk.0.ffn_down.weight " * 40 for n in range(3))


def _router(models: dict[str, object]) -> LLMRouter:
    cfg = make_swarm_config({"local": {"family": "local", "litellm_model": "openai/local"},
                             "other": {"family": "other", "litellm_model": "openai/other"}},
                            fallback_chain=["other"])
    return LLMRouter(cfg.providers.llm, cfg.models, models, CircuitBoard())  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


async def test_a_crash_report_of_any_length_is_capped_in_the_trace_and_the_error() -> None:
    crashed = ProviderUnavailable(
        "local", f"the server exited (code -9): {CRASH}; started it again and asked once more: HTTP 500: decode failed",
        model="local")
    with pytest.raises(AllProvidersFailed) as err:
        await _router({"local": FakeLLM([crashed]), "other": FakeLLM([crashed])}).complete(ASK, LLMConfig())
    details = [step.detail or "" for step in err.value.attempts]
    assert len(CRASH) > 2000 and all(len(d) <= 300 for d in details), [len(d) for d in details]
    assert all(d.startswith("the server exited (code -9): llama_model_load") for d in details), details
    assert all(d.endswith("; started it again and asked once more: HTTP 500: decode failed") for d in details), details
    assert len(str(err.value)) < 1000, len(str(err.value))


async def test_redacted_before_it_is_cut_so_no_half_key_shows() -> None:
    # a key straddles each end of the cut: cut first, a part of each would be left, unredactable
    message = "x" * 140 + SECRET + "y" * 400 + SECRET + "z" * 140
    with pytest.raises(AllProvidersFailed) as err:
        await _router({"local": FakeLLM([ProviderUnavailable("local", message, model="local")]),
                       "other": FakeLLM([ProviderUnavailable("other", "down", model="other")])}).complete(ASK, LLMConfig())
    detail = err.value.attempts[0].detail or ""
    assert len(detail) <= 300 and detail.startswith("x" * 140) and detail.endswith("z" * 140), detail
    for part in (SECRET[:7], SECRET[-8:]):
        assert part not in detail and part not in str(err.value.to_dict()), part


async def test_an_answer_after_a_restart_carries_a_capped_crash_report() -> None:
    """The local server crashed mid-call and was started again: the answer's step says so, capped."""
    def answer(messages: list[Message], config: LLMConfig) -> LLMResponse:
        step = TraceStep(step=config.step, provider="local", model="local",
                         detail=f"the server exited and was started again: {CRASH} {SECRET}")
        return LLMResponse.from_step("hello", step, finish_reason="stop")

    response = await _router({"local": FunctionLLM(answer), "other": FakeLLM()}).complete(ASK, LLMConfig())
    detail = response.attempts[-1].detail or ""
    assert response.text == "hello" and len(detail) <= 300, len(detail)
    assert detail.startswith("the server exited and was started again: llama_model_load"), detail
