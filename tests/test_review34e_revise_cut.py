"""A revision whose draft alone is past its model's window keeps its task whole and every tag.

The revise prompt is one message: ``<task>...</task>``, ``<answer>...</answer>`` (the draft), then
the review and the instruction. Only a message of repeated tags was cut block by block; this one,
of two distinct blocks, was cut by position: the task lost its end, and ``</task>`` and
``<answer>`` went with it, so the model read where the task stopped and the draft began from
nothing. Now any tagged blocks are cut inside the largest of them, with the same marker, never a
tag. End to end: a delegation job through the dispatcher, litellm over real HTTP to a loopback
OpenAI-compatible server that refuses, as llama.cpp's does, a prompt past its window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

from graphs.delegation.prompts import review_messages, revise_messages
from graphs.turns import Turn
from providers.llm import token_counts
from providers.llm.context_fit import ContextFit, TokenCounts, shorten_blocks, shorten_single, tagged_blocks

MARKER = re.compile(r"\n\[\.\.\. (\d+) earlier characters left out to fit the model's context window \.\.\.\]\n")
TASK = "TASK-OPENS Write the design of a rate limiter. " + "Cover this requirement in full. " * 80 + "TASK-ENDS"
DRAFT = "DRAFT-OPENS " + "The limiter keeps a bucket of tokens per client. " * 1200 + "DRAFT-ENDS"
REVISED = "A token bucket per client, refilled at a fixed rate."
REJECT = '{"approved": false, "score": 3, "issues": ["too long"], "suggestion": "Say it in one line."}'
APPROVE = '{"approved": true, "score": 9, "issues": [], "suggestion": "none"}'


@pytest.fixture(autouse=True)
def no_counts_cached() -> Iterator[None]:
    token_counts._server_counts.clear()
    yield
    token_counts._server_counts.clear()


def delegation_config(wide: FakeOpenAI, narrow: FakeOpenAI) -> Any:
    """A drafter of long answers (on ``wide``), then a model of a 4,096-token window after it (the
    chain's fallback), and a reviewer of another family with that window too (on ``narrow``)."""
    def spec(server: FakeOpenAI, upstream: str, family: str, window: int | None, cap: int) -> dict[str, Any]:
        return {"family": family, "litellm_model": f"openai/{upstream}", "api_base": f"{server.url}/v1",
                "timeout_s": 20, "max_output_tokens": cap, **({"context_tokens": window} if window else {})}

    cfg = make_swarm_config({"writer": spec(wide, "writer-up", "deepseek", None, 20000),
                             "small": spec(narrow, "small-up", "qwen", 4096, 512),
                             "critic": spec(narrow, "critic-up", "claude", 4096, 512)}, fallback_chain=["small"])
    data = cfg.model_dump()
    data["routing"]["delegation"] = {"critical": {"primary": "writer", "reviewer": "critic"}}
    return type(cfg).model_validate(data)


def block(prompt: str, name: str) -> str:
    """The text of ``prompt``'s one ``<name>`` block, whose tags must both be there."""
    assert prompt.count(f"<{name}>\n") == 1 and prompt.count(f"\n</{name}>") == 1, prompt[:300]
    return prompt[prompt.index(f"<{name}>\n") + len(name) + 3:prompt.index(f"\n</{name}>")]


async def test_a_revision_past_the_window_keeps_its_task_and_cuts_inside_its_draft(make_context: Any) -> None:
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
        job = {"project": "swarm", "action": "delegate", "input": {"task": TASK, "kind": "critical"}}
        result = await dispatch(job, make_context(router, cfg))
        [revise] = server.requests_for("small-up")
        [review, _] = server.requests_for("critic-up")
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == REVISED and result["output"]["revisions"] == 1
    for sent in (review, revise):  # each fitted, and it did fit
        assert server.prompt_tokens(sent.body) + 512 <= 4096
    prompt = revise.body["messages"][-1]["content"]
    assert prompt.startswith(f"<task>\n{TASK}\n</task>\n\n<answer>\nDRAFT-OPENS")  # the task whole, tags and all
    assert prompt.endswith("Rewrite the answer to fix them. Reply with the full improved answer only.")
    draft = block(prompt, "answer")
    assert draft.startswith("DRAFT-OPENS") and draft.endswith("DRAFT-ENDS") and len(MARKER.findall(draft)) == 1
    assert len(MARKER.findall(prompt)) == 1  # cut inside the draft only
    cut = int(MARKER.findall(prompt)[0])
    assert server.prompt_tokens(revise.body) > 4096 * 0.5  # what fits is kept, not a sliver
    assert block(review.body["messages"][-1]["content"], "task") == TASK  # the reviewer's too
    step = next(s for s in result["trace"] if s["step"] == "revise" and s["model"] == "small")
    assert (step["detail"] or "").startswith(f"left out {cut:,} characters of the answer to fit small's 4096-token")


def chat_of(messages: list[Any]) -> list[dict[str, Any]]:
    return [m.model_dump() for m in messages]


def test_the_largest_of_distinct_blocks_is_cut_first_and_each_keeps_its_tags() -> None:
    """A review prompt: an earlier conversation, the task and the answer; the answer is the longest
    and is cut first, then the conversation, to an equal share; the task, within it, stays whole."""
    history = [Turn(n=1, role="user", content="Q1 " + "why? " * 600),
               Turn(n=2, role="assistant", model="writer", content="A1 " + "because. " * 400)]
    [_, message] = chat_of(review_messages(TASK, DRAFT, history))
    text = message["content"]
    short, cut, what = shorten_blocks(text, 9000) or ("", 0, "")
    assert what == "the conversation and the answer" and len(short) <= 9000
    assert [n for n, _ in tagged_blocks(short) or []] == ["conversation", "task", "answer"]
    assert block(short, "task") == TASK
    conversation, answer = block(short, "conversation"), block(short, "answer")
    assert abs(len(conversation) - len(answer)) <= 1
    assert len(MARKER.findall(conversation)) == 1 and len(MARKER.findall(answer)) == 1
    assert conversation.startswith("user: Q1") and answer.endswith("DRAFT-ENDS")
    assert cut == sum(int(n) for n in MARKER.findall(short)) and short.endswith("Your JSON verdict:")


def test_a_revise_prompt_fitted_by_estimate_names_what_it_cut() -> None:
    chat = chat_of(revise_messages(TASK, "critical", DRAFT, {"issues": ["too long"], "suggestion": "shorter"}))
    fit = ContextFit("local", {"messages": chat, "max_tokens": 512}, 4096)
    sent = fit.params["messages"][-1]["content"]
    assert fit.cut_of == "the answer" and block(sent, "task") == TASK
    assert fit.note == f"left out {fit.cut_chars:,} characters of the answer to fit local's 4096-token context"


WELL_FORMED = f"<task>\n{TASK}\n</task>\n\n<answer>\n{DRAFT}\n</answer>\n\nRewrite it."


def fitted(text: str) -> tuple[str, int, str | None]:
    [_, message], cut, what = shorten_single([{"role": "system", "content": "s"}, {"role": "user", "content": text}],
                                             3000, TokenCounts())
    return message["content"], cut, what


@pytest.mark.parametrize("broken", [
    WELL_FORMED.replace("<answer>\nDRAFT-OPENS", "<answer>\n<answer>inner</answer> DRAFT-OPENS"),  # nested
    WELL_FORMED.replace("\n</answer>", ""),  # an answer never closed
    WELL_FORMED.replace("</task>", "</task> </answer>"),  # a stray end outside the blocks
    f"plain {TASK} <b>x</b> {DRAFT} end",  # a small block in a long plain text: too little room beside it
], ids=["nested-own-name", "unclosed", "stray-end", "text-outside"])
def test_blocks_not_known_or_without_room_fall_back_to_the_middle_cut(broken: str) -> None:
    """The well-formed prompt is cut inside its answer; each broken one in its middle, as before."""
    short, _, what = fitted(WELL_FORMED)
    assert what == "the answer" and block(short, "task") == TASK
    short, cut, what = fitted(broken)
    assert what is None and cut > 0 and len(MARKER.findall(short)) == 1
    assert short.startswith(broken[:40]) and short.endswith(broken[-40:])
