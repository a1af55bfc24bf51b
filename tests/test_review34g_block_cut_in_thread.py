"""A revision on a thread whose draft alone is past the window is cut inside its draft, not refused.

With a thread's earlier turns before it, the revise prompt is a conversation: context fitting left
out the earlier turns and never cut the last message, so a draft past the window alone was sent
whole, the server refused it, and the job stopped at revise with no revision. Once no earlier turn
is left, a last message the swarm made of tagged blocks (``<task>``, ``<answer>``) is now cut
inside them as a prompt of one message is; a question as asked (no blocks, or not opening with
one) still never is. End to end: a delegation job through the dispatcher, litellm over real HTTP
to loopback OpenAI-compatible servers that refuse, as llama.cpp's does, a prompt past the window.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI
from test_review34e_revise_cut import APPROVE, DRAFT, MARKER, REJECT, REVISED, TASK, block, delegation_config

from providers.llm import token_counts
from providers.llm.context_fit import ContextFit, opens_with_blocks

INSTRUCTION = "Rewrite the answer to fix them. Reply with the full improved answer only."


@pytest.fixture(autouse=True)
def no_counts_cached() -> Iterator[None]:
    token_counts._server_counts.clear()
    yield
    token_counts._server_counts.clear()


def thread(turns: int, chars: int) -> list[dict[str, Any]]:
    return [{"n": n, "role": "user" if n % 2 else "assistant", "model": None if n % 2 else "writer",
             "content": f"turn {n} " + "lorem ipsum " * (chars // 12)} for n in range(1, turns + 1)]


async def test_a_revision_on_a_thread_past_the_window_is_cut_inside_its_draft(make_context: Any) -> None:
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router
    from swarm.dispatcher import dispatch

    with FakeOpenAI() as wide, FakeOpenAI() as server:
        server.context_tokens = 4096
        wide.script("writer-up", Behaviour.answer(DRAFT), Behaviour.fail(500))  # down when asked to revise
        server.script("small-up", Behaviour.answer(REVISED))
        server.script("critic-up", Behaviour.answer(REJECT), Behaviour.answer(APPROVE))
        cfg = delegation_config(wide, server)
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        job_input = {"task": TASK, "kind": "critical", "thread_id": "thr-" + "a" * 32, "history": thread(4, 800)}
        result = await dispatch({"project": "swarm", "action": "delegate", "input": job_input},
                                make_context(router, cfg))
        revises = server.requests_for("small-up")
    # before: every revise request held the whole draft, was refused, and the job stopped at revise
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == REVISED and result["output"]["revisions"] == 1
    [revise] = revises  # the first one fitted: nothing refused
    assert server.prompt_tokens(revise.body) + 512 <= 4096
    system, last = revise.body["messages"]  # every earlier turn left out
    assert system["role"] == "system" and last["role"] == "user"
    prompt = last["content"]
    assert prompt.startswith(f"<task>\n{TASK}\n</task>\n\n<answer>\nDRAFT-OPENS") and prompt.endswith(INSTRUCTION)
    draft = block(prompt, "answer")
    assert draft.startswith("DRAFT-OPENS") and draft.endswith("DRAFT-ENDS")
    [cut] = MARKER.findall(prompt)
    assert MARKER.findall(draft) == [cut]  # cut inside the draft only
    assert server.prompt_tokens(revise.body) > 4096 * 0.5  # what fits is kept, not a sliver
    step = next(s for s in result["trace"] if s["step"] == "revise" and s["model"] == "small")
    assert step["outcome"] == "ok"
    assert (step["detail"] or "").startswith(
        f"left out 4 earlier turns and left out {int(cut):,} characters of the answer to fit small's 4096-token")


def conversation(last: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be careful."},
            {"role": "user", "content": "Q1 " + "why? " * 400}, {"role": "assistant", "content": "A1 " + "yes. " * 400},
            {"role": "user", "content": last}]


def test_only_a_last_message_that_opens_with_tagged_blocks_is_cut() -> None:
    """By estimate: the turns go first, then a revise prompt is cut inside its blocks; a user's
    question that quotes a tagged block, past the window alone, is sent as asked (the server says why)."""
    revise = f"<task>\n{TASK}\n</task>\n\n<answer>\n{DRAFT}\n</answer>\n\n{INSTRUCTION}"
    fit = ContextFit("small", {"messages": conversation(revise), "max_tokens": 512}, 4096)
    [system, last] = fit.params["messages"]
    assert system["content"] == "Be careful." and fit.left_out == 2 and fit.cut_of == "the answer"
    assert block(last["content"], "task") == TASK and last["content"].endswith(INSTRUCTION)
    assert fit.note == (f"left out 2 earlier turns and left out {fit.cut_chars:,} characters of the answer"
                        " to fit small's 4096-token context")

    question = f"What does this do?\n<code>\n{DRAFT}\n</code>"
    fit = ContextFit("small", {"messages": conversation(question), "max_tokens": 512}, 4096)
    assert fit.left_out == 2 and fit.cut_chars == 0 and fit.params["messages"][-1]["content"] == question
    assert not opens_with_blocks(question) and opens_with_blocks(revise)
    assert not opens_with_blocks("plain " + "why? " * 2000)
    # a question that opens with pasted markup is someone's question, never cut (a review finding)
    assert not opens_with_blocks(f"<code>\n{DRAFT}\n</code>\nWhat does this do?")


def test_a_refusal_after_the_cut_cuts_more_from_the_text_as_given() -> None:
    """The server counts more tokens than estimated: fitted again from its count, the draft is cut
    more, its marker counting every character the model does not see (not those of the first cut)."""
    revise = f"<task>\n{TASK}\n</task>\n\n<answer>\n{DRAFT}\n</answer>\n\n{INSTRUCTION}"
    fit = ContextFit("small", {"messages": conversation(revise), "max_tokens": 512}, 4096)
    first = fit.cut_chars
    error = ("This model's maximum context length is 4096 tokens. However, you requested 5800 tokens"
             " (5288 in the messages, 512 in the completion).")
    assert fit.refit(error) is True
    last = fit.params["messages"][-1]["content"]
    [cut] = MARKER.findall(last)
    assert int(cut) == fit.cut_chars > first and len(revise) - len(last) < fit.cut_chars
    assert block(last, "task") == TASK and fit.left_out == 2
