"""The research writer's "stop before this family" skip is read from the trace step's ``skip``
field, not from the wording of its detail.

``writer_chain.ask_writer`` found the model the router stopped before by the words "not asked: "
at the start of a skipped step's detail: a skip whose reason happened to read so was taken for the
stop (and the report said a model was "not asked" that the chain had passed over for another
reason), and a stop reworded anywhere would no longer be seen. The router's step now says it in a
field (``TraceStep.skip == "stopped"``), its detail still there for a person. End to end: real
litellm over HTTP to a loopback OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from test_review33r_research_writer import KEY_ENV, LOCAL_UPSTREAM, NOT_ASKED, _router

from core.errors import AllProvidersFailed
from graphs.research.writer_chain import ask_writer
from providers.base import LLMConfig, Message, TraceStep
from providers.testing import FunctionLLM

WRITE = [Message(role="user", content="Write the report.")]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    server.reset()
    monkeypatch.setenv(KEY_ENV, "sk-test-r34e-0123456789abcdef")


async def test_the_router_s_stop_step_says_so_in_a_field_and_in_its_detail(server: FakeOpenAI) -> None:
    response, trace, error, stopped = await ask_writer(_router(server), WRITE, LLMConfig(step="write"), "local")
    assert response is None and stopped == "local" and not server.requests_for(LOCAL_UPSTREAM)
    assert [(s["model"], s["outcome"], s["skip"]) for s in trace] == [
        ("deepseek-x", "error", None), ("local", "skipped", "stopped")], trace
    assert trace[-1]["detail"] == NOT_ASKED  # the human-readable reason is kept
    assert error == "deepseek-x: ProviderUnavailable"


def failing_chain(*steps: TraceStep) -> FunctionLLM:
    """An LLM provider whose chain ran dry with ``steps`` as its attempts."""
    def fail(messages: list[Message], config: LLMConfig) -> Any:
        raise AllProvidersFailed("llm", list(steps))

    return FunctionLLM(fail)


async def test_a_skip_whose_reason_reads_not_asked_is_no_stop() -> None:
    """A model passed over for a reason of its own that starts "not asked: " was taken for the
    stop: the writer said it was left out on purpose, and its failure went unreported."""
    llm = failing_chain(TraceStep(step="write", model="deepseek-x", outcome="skipped",
                                  detail="not asked: its key was refused earlier in this job"))
    _, trace, error, stopped = await ask_writer(llm, WRITE, LLMConfig(step="write"), "local")
    assert stopped is None and trace[0]["skip"] is None
    assert "not asked: its key was refused" in error  # the chain's own failure, not "local not asked"


async def test_a_stop_is_found_by_its_field_whatever_its_detail_says() -> None:
    llm = failing_chain(
        TraceStep(step="write", model="deepseek-x", outcome="error", error_class="ProviderTimeout", detail="slow"),
        TraceStep(step="write", model="local", outcome="skipped", skip="stopped", detail="the chain ends here"))
    _, _, error, stopped = await ask_writer(llm, WRITE, LLMConfig(step="write"), "local")
    assert stopped == "local" and error == "deepseek-x: ProviderTimeout"

