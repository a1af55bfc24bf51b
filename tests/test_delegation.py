"""Delegation graph and dispatcher with the shipped fakes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest

from core.errors import AllProvidersFailed, ProviderUnavailable
from providers.base import LLMConfig, Message
from providers.testing import FakeLLM, FunctionLLM
from swarm.dispatcher import dispatch

APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}
REJECT = {"approved": False, "score": 3, "issues": ["misses the second point"], "suggestion": "cover both"}


def job(task: str = "Write two lines about rivers.", **extra: Any) -> dict[str, Any]:
    return {"project": "swarm", "action": "delegate", "input": {"task": task, **extra}}


async def test_draft_review_revise_then_approve(make_context: Any) -> None:
    llm = FakeLLM(["first draft", REJECT, "second draft", APPROVE])
    result = await dispatch(job(), make_context(llm))
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == "second draft"
    assert result["output"]["revisions"] == 1
    assert result["output"]["review"]["approved"] is True
    steps = [(s["step"], s["kind"]) for s in result["trace"]]
    assert steps == [("draft", "llm"), ("draft", "node"), ("review", "llm"), ("review", "node"),
                     ("revise", "llm"), ("revise", "node"), ("review", "llm"), ("review", "node"),
                     ("dispatch", "node")]
    # the reviewer is asked for structured output, and preferred from the route's family
    review_config: LLMConfig = llm.calls[1][1]
    assert review_config.json_schema is not None and review_config.prefer == "claude"
    assert llm.calls[0][1].prefer == "deepseek"
    # the revise prompt carries the reviewer's issues
    assert "misses the second point" in llm.calls[2][0][-1].content


@pytest.mark.parametrize(("score", "warned"), [(1, True), (3, True), (4, False), (None, False)])
async def test_an_approval_with_a_failing_score_is_warned_of(make_context: Any, score: int | None, warned: bool) -> None:
    """A reviewer saw the keyless local model's self-review read "approved, score 1/10" on every
    answer, and nothing said the verdict contradicted itself."""
    verdict = {"approved": True, "score": score, "issues": [], "suggestion": ""}
    result = await dispatch(job(), make_context(FakeLLM(["a draft", verdict])))
    assert result["status"] == "COMPLETED", result["error"]
    said = [w for w in result["output"]["warnings"] if "contradicts itself" in w]
    assert said == ([f"the review approved the answer but scored it {score}/10: its verdict contradicts itself,"
                     " so take neither as a check of the answer"] if warned else [])


async def test_a_draft_cut_at_its_token_limit_says_so_in_the_trace(make_context: Any) -> None:
    """A keyless answer ended mid-word with nothing saying the model's token limit had cut it."""
    class CutShort(FakeLLM):
        async def complete(self, messages: Any, config: LLMConfig) -> Any:
            response = await super().complete(messages, config)
            return response.model_copy(update={"finish_reason": "length"}) if config.step == "draft" else response

    result = await dispatch(job(), make_context(CutShort(["a draft that ends mid-wo", APPROVE])))
    assert result["status"] == "COMPLETED", result["error"]
    draft = next(s for s in result["trace"] if s["step"] == "draft" and s["kind"] == "node")
    assert draft["detail"] == "drafted by fake (cut at its token limit: the answer may end mid-sentence)"
    review = next(s for s in result["trace"] if s["step"] == "review" and s["kind"] == "node")
    assert "token limit" not in review["detail"]
    assert result["output"]["warnings"] == ["the answer was cut at its token limit and may end mid-sentence"]


#: what SmolLM2-135M does at times: one sentence or two, over and over until its token limit
LOOP = "Rivers reach the sea. " + "The same sentence comes again and again. And so does this one. " * 40
LOOPED = "the answer was stopped where the model began repeating itself (the repeats are left out)"


async def test_a_draft_stopped_where_the_model_looped_says_so_in_trace_result_text_and_cli(
        make_context: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The loop guard ended a local model's looping answer (finish reason ``loop``) and nothing
    said so: the answer read as whole, where one cut at its token limit was marked. Streamed
    through litellm from a loopback server, as the local model's answers are."""
    import argparse

    from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

    from mcp_server.results import delegate_output
    from mcp_server.texts import result_text
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router
    from swarm.cli import _report

    with FakeOpenAI() as server:
        server.script("small", Behaviour.answer(LOOP, token_delay_s=0.001))
        cfg = make_swarm_config({"local": {"family": "local", "litellm_model": "openai/small", "api_base": f"{server.url}/v1",
                                           "stop_on_loop": True, "timeout_s": 5}})
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        result = await dispatch(job(kind="critical"), make_context(router, cfg))
        assert server.requests_for("small")[0].body["stream"] is True
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert out["text"] == "Rivers reach the sea. The same sentence comes again and again. And so does this one."
    assert out["warnings"] == [LOOPED]
    draft = next(s for s in result["trace"] if s["step"] == "draft" and s["kind"] == "node")
    assert draft["detail"] == "drafted by local (stopped where the model began repeating itself: the repeats are left out)"
    text = result_text(delegate_output(result))
    assert f"written by local; not reviewed\nWarning: {LOOPED}\n" in text, text
    assert _report(argparse.Namespace(out=None, json=False, quiet=True), result) == 0
    printed, said = capsys.readouterr()
    assert printed == f"{out['text']}\n" and f"warning: {LOOPED}" in said


@pytest.mark.parametrize(("revision", "warnings"), [("a revision that ends by itself", []), ("", [LOOPED])],
                         ids=["revised", "empty-revision-keeps-the-draft"])
async def test_the_warning_is_the_final_answer_s_not_an_earlier_draft_s(
        make_context: Any, revision: str, warnings: list[str]) -> None:
    class LoopsAtDraft(FakeLLM):
        async def complete(self, messages: Any, config: LLMConfig) -> Any:
            response = await super().complete(messages, config)
            return response.model_copy(update={"finish_reason": "loop"}) if config.step == "draft" else response

    result = await dispatch(job(), make_context(LoopsAtDraft(["a draft that looped", REJECT, revision, APPROVE])))
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == (revision or "a draft that looped")
    assert result["output"]["warnings"] == warnings


async def test_revise_loop_is_bounded_by_config(make_context: Any) -> None:
    llm = FakeLLM(["d1", REJECT, "d2", REJECT, "d3", REJECT])
    result = await dispatch(job(), make_context(llm))
    assert result["output"]["revisions"] == 1  # limits.max_revisions
    assert result["output"]["review"]["approved"] is False
    assert len(llm.calls) == 4


async def test_critical_route_has_no_reviewer(make_context: Any) -> None:
    llm = FakeLLM(["careful answer"])
    result = await dispatch(job(kind="critical"), make_context(llm))
    assert result["output"]["text"] == "careful answer"
    assert result["output"]["review"] is None
    assert len(llm.calls) == 1 and llm.calls[0][1].prefer == "claude"


async def test_unusable_verdict_keeps_draft_and_says_so(make_context: Any) -> None:
    llm = FakeLLM(["a draft", "I think it is fine!"])
    result = await dispatch(job(), make_context(llm))
    assert result["output"]["text"] == "a draft"
    assert result["output"]["review"]["status"] == "unusable"
    assert any(s["step"] == "review" and s["outcome"] == "error" for s in result["trace"])


async def test_a_verdict_cut_at_the_token_limit_says_so_and_its_strings_are_bounded(make_context: Any) -> None:
    """The bundled model's constrained JSON ran the suggestion to its 512-token cap (~16 s) and the
    review came back "held no valid JSON verdict", with nothing saying why."""
    from graphs.delegation.prompts import ISSUE_CHARS, SUGGESTION_CHARS, VERDICT_SCHEMA

    props = VERDICT_SCHEMA["properties"]
    assert props["suggestion"]["maxLength"] == SUGGESTION_CHARS and props["issues"]["items"]["maxLength"] == ISSUE_CHARS

    class CutShort(FakeLLM):
        async def complete(self, messages: Any, config: LLMConfig) -> Any:
            response = await super().complete(messages, config)
            return response.model_copy(update={"finish_reason": "length"}) if config.step == "review" else response

    result = await dispatch(job(), make_context(CutShort(["a draft", '{"approved": true, "score": 8, "issues": [], "suggestion": "Keep it as it is and'])))
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["review"]["error"] == ("the reviewer's answer held no valid JSON verdict"
                                                   " (cut at its token limit before the JSON closed)")


async def test_reviewer_chain_down_returns_draft_with_review_unavailable(make_context: Any) -> None:
    def answer(messages: list[Message], config: LLMConfig) -> str:
        if config.step == "review":
            raise AllProvidersFailed("llm", [])
        return "draft text"

    result = await dispatch(job(), make_context(FunctionLLM(answer)))
    assert result["status"] == "COMPLETED"
    assert result["output"]["review"]["status"] == "unavailable"


async def test_primary_chain_down_fails_with_every_attempt_listed(make_context: Any) -> None:
    from providers.base import TraceStep

    attempts = [TraceStep(step="draft", provider="litellm", model=m, outcome="error", error_class="ProviderUnavailable")
                for m in ("deepseek-v3.1-q8", "local")]

    def answer(messages: list[Message], config: LLMConfig) -> str:
        raise AllProvidersFailed("llm", attempts)

    result = await dispatch(job(), make_context(FunctionLLM(answer)))
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "AllProvidersFailed"
    assert "deepseek-v3.1-q8" in result["error"]["message"] and "local" in result["error"]["message"]
    assert [s["model"] for s in result["trace"] if s["kind"] == "llm"] == ["deepseek-v3.1-q8", "local"]


async def test_a_chain_down_at_the_revision_keeps_the_draft_and_review_as_partial(make_context: Any) -> None:
    from providers.base import TraceStep

    down = [TraceStep(step="revise", provider="litellm", model=m, outcome="error", error_class="ProviderError")
            for m in ("deepseek-v3.1-q8", "local")]
    verdict = {"approved": False, "score": 3, "issues": ["too short"], "suggestion": "add a line"}

    def answer(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "revise":
            raise AllProvidersFailed("llm", down)
        return verdict if config.step == "review" else "first draft"

    result = await dispatch(job(), make_context(FunctionLLM(answer)))
    assert result["status"] == "FAILED" and result["error"]["type"] == "AllProvidersFailed"
    output = result["output"]
    assert output["partial"] is True and output["stopped_at"] == "revise"
    assert output["text"] == "first draft" and output["review"]["approved"] is False and output["revisions"] == 0
    steps = [(s["step"], s["kind"]) for s in result["trace"]]
    assert ("draft", "llm") in steps and ("review", "llm") in steps
    assert [s["model"] for s in result["trace"] if s["step"] == "revise"] == ["deepseek-v3.1-q8", "local"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"project": "nope", "action": "delegate", "input": {}}, "unknown project 'nope'; valid: image_tools, swarm"),
        ({"project": "swarm", "action": "nope", "input": {}}, "valid: consensus, delegate, research"),
        (job(""), "input.task: is empty; say it in plain words"),
        (job("   "), "input.task: must not be empty"),
        ({"project": "swarm", "action": "delegate", "input": {}}, "input.task: Field required"),
        (job(kind="poetry"), "kind: unknown kind 'poetry'; valid: bulk_content, critical, research"),
        (job(tier="ultra"), "input.tier"),
        (job("x" * 20001), "task: is 20,001 characters; the limit is 20,000 (limits.max_task_chars in config)"),
        (job("x" * 3000, kind="research"), "task: is 3,000 characters; a task of kind 'research' is researched"
         " as a question, whose limit is 2,000 (limits.max_question_chars in config)"),
        (job(task=5), "input.task"),
        ({"project": "swarm"}, "job.action: Field required"),
        (job(kind="K" * 2_000_000), "input.kind: String should have at most 100 characters (limit max_length=100)"),
        ({"project": "swarm", "action": "consensus", "input": {"question": "q", "models": ["M" * 1000]}},
         "input.models.0: String should have at most 100 characters"),
        ({"project": "image_tools", "action": "upscale", "input": {"image": "aGk=", "model": "M" * 1000}},
         "input.model: String should have at most 100 characters"),
        ({"project": "swarm", "action": "research", "input": {"question": "q", "backends": ["x" * 100_000]}},
         "input.backends.0: String should have at most 100 characters"),
        ("not an object", "job: must be an object with project, action and input, not str"),
        ({"project": "swarm", "action": "research", "input": {"question": "q", "max_sources": True}},
         "input.max_sources: Input should be a valid integer"),
        ({"project": "swarm", "action": "research", "input": {"question": "q", "max_sources": "5"}},
         "input.max_sources: Input should be a valid integer"),
        ({"project": "image_tools", "action": "upscale", "input": {"image": "aGk=", "inline": 1}},
         "input.inline: Input should be a valid boolean"),
    ],
)
async def test_bad_input_names_field_and_limit(make_context: Any, raw: dict[str, Any], needle: str) -> None:
    llm = FakeLLM(["never called"])
    result = await dispatch(raw, make_context(llm))
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "InputError"
    assert needle in result["error"]["message"]
    assert len(result["error"]["message"]) < 500  # names the field and the limit; never echoes the value
    assert llm.calls == []


async def test_secrets_never_reach_result(make_context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-plantedsecret0123456789")

    def leak(messages: list[Message], config: LLMConfig) -> str:
        raise ProviderUnavailable("deepseek", "auth failed for key sk-plantedsecret0123456789")

    result = await dispatch(job(kind="critical"), make_context(FunctionLLM(leak)))
    assert "sk-plantedsecret0123456789" not in str(result)
    assert result["status"] == "FAILED"


async def test_unexpected_bug_is_reported_without_traceback(make_context: Any) -> None:
    def boom(messages: list[Message], config: LLMConfig) -> str:
        raise ZeroDivisionError("division by zero in /secret/path.py")

    result = await dispatch(job(kind="critical"), make_context(FunctionLLM(boom)))
    assert result["error"]["type"] == "InternalError"
    assert "Traceback" not in str(result) and "/secret/path.py" not in str(result)


def _review_dies_once(calls: list[str]) -> Any:
    """An answer function that drafts, and whose first review raises (a worker dying mid-review)."""
    crash = {"armed": True}

    def answer(messages: list[Message], config: LLMConfig) -> Any:
        calls.append(config.step)
        if config.step == "review" and crash["armed"]:
            crash["armed"] = False
            raise RuntimeError("worker died mid-review")
        return APPROVE if config.step == "review" else "the draft"

    return answer


async def test_same_job_id_resumes_without_rerunning_completed_nodes(make_context: Any) -> None:
    calls: list[str] = []
    make = make_context(FunctionLLM(_review_dies_once(calls)))
    first = await dispatch({**job(), "job_id": "job-resume-1"}, make)
    assert first["status"] == "FAILED"
    second = await dispatch({**job(), "job_id": "job-resume-1"}, make)
    assert second["status"] == "COMPLETED"
    assert second["output"]["text"] == "the draft"
    assert calls == ["draft", "review", "review"]  # the draft was not paid for twice
    # the trace says it resumed, and that a call cut off when it stopped is in no trace
    assert "resumed at review from its checkpoint" in second["trace"][-1]["detail"]
    third = await dispatch({**job(), "job_id": "job-resume-1"}, make)
    assert third["output"]["text"] == "the draft" and calls == ["draft", "review", "review"]
    assert third["trace"][-1]["detail"].startswith("replayed:")


async def test_a_job_past_its_deadline_stops_cleanly_and_resumes_by_id(make_context: Any) -> None:
    import asyncio

    from core.config import load_config

    config = load_config()
    config = config.model_copy(update={"limits": config.limits.model_copy(update={"job_deadline_s": 0.3})})
    calls: list[str] = []
    slow = {"review": True}

    async def answer(messages: list[Message], config_: LLMConfig) -> Any:
        calls.append(config_.step)
        if config_.step == "review" and slow["review"]:
            slow["review"] = False
            await asyncio.sleep(5)  # a hanging reviewer
        return APPROVE if config_.step == "review" else "the draft"

    make = make_context(FunctionLLM(answer), config=config)
    first = await dispatch({**job(), "job_id": "job-deadline-1"}, make)
    assert first["status"] == "FAILED" and first["error"]["type"] == "JobDeadlineExceeded"
    assert "limits.job_deadline_s=0.3" in first["error"]["message"]
    second = await dispatch({**job(), "job_id": "job-deadline-1"}, make)
    assert second["status"] == "COMPLETED" and second["output"]["text"] == "the draft"
    assert calls == ["draft", "review", "review"]  # the draft was not paid for twice


async def test_progress_names_the_model_tried_and_the_one_that_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DeepSeek key, Gemini failing: progress must not claim DeepSeek drafted."""
    from fake_openai import Behaviour, FakeOpenAI, make_swarm_config
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.context import JobContext, Providers
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router

    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    with FakeOpenAI() as server:
        server.script("gem", Behaviour.fail(503))
        base = f"{server.url}/v1"
        models = {
            "deepseek-chat": {"family": "deepseek", "litellm_model": "openai/ds", "api_base": base,
                              "api_key_env": "DEEPSEEK_API_KEY"},
            "gemini-x": {"family": "gemini", "litellm_model": "openai/gem", "api_base": base},
            "local": {"family": "local", "litellm_model": "openai/small", "api_base": base},
        }
        cfg = make_swarm_config(models, fallback_chain=["deepseek", "gemini", "local"])
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        seen: list[tuple[str, str]] = []

        async def progress(stage: str, message: str, fraction: float | None = None) -> None:
            seen.append((stage, message))

        async def make(job_id: str) -> JobContext:
            return JobContext(job_id=job_id, config=cfg, providers=Providers(cfg, {"llm": lambda: router}),
                              checkpointer=InMemorySaver(), progress=progress)

        result = await dispatch(job(kind="critical"), make)
    assert result["status"] == "COMPLETED", result["error"]
    drafts = [m for stage, m in seen if stage == "draft"]
    assert drafts == [
        "drafting with gemini-x (skipped: deepseek-chat)",
        "gemini-x failed (ProviderUnavailable); trying the next model",
        "drafting with local (skipped: deepseek-chat)",
        "drafted by local",
    ], seen
    assert seen[-1] == ("done", "finished"), seen  # every event was delivered before the job returned


async def test_progress_relay_keeps_order_reaches_threads_and_fails_with_its_callback() -> None:
    """``emit`` -> ``relay``: in order even when the callback is slow, from worker threads too,
    all delivered before the block ends; a failing callback fails the run; nothing outside a relay."""
    import asyncio

    from graphs.progress import emit, relay

    seen: list[str] = []

    async def slow(stage: str, message: str, fraction: float | None = None) -> None:
        await asyncio.sleep(0.001 if int(message) % 2 else 0)
        seen.append(message)

    emit("x", "outside")  # nobody listens: dropped, no error
    async with relay(slow):
        for i in range(5):
            emit("x", str(i))
            await asyncio.sleep(0)
        await asyncio.to_thread(emit, "x", "5")
        emit("x", "6")
    assert seen == ["0", "1", "2", "3", "4", "5", "6"]

    async def broken(stage: str, message: str, fraction: float | None = None) -> None:
        raise RuntimeError("the client went away")

    with pytest.raises(RuntimeError, match="went away"):
        async with relay(broken):
            emit("x", "lost")


async def test_a_job_checkpointed_before_the_old_finalize_step_still_finishes(make_context: Any) -> None:
    """Jobs checkpointed by the version with a separate ``finalize`` step (draft -> review ->
    finalize) resume on today's graph after a deploy: the draft is not paid again."""
    from dataclasses import replace

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from graphs.delegation.graph import build_graph
    from graphs.delegation.state import DelegationState
    from graphs.run import run_graph
    from providers.testing import FunctionLLM

    calls: list[str] = []

    def answer(messages: Any, config: Any) -> Any:
        calls.append(config.step)
        return {"approved": True, "score": 9, "issues": [], "suggestion": ""} if config.step == "review" else "old draft"

    saver = InMemorySaver()
    old: Any = StateGraph(DelegationState)
    old.add_node("draft", lambda s: {"draft": "old draft", "drafted_by": "m", "trace": []})
    old.add_node("finalize", lambda s: {"final": "never"})
    old.add_edge(START, "draft")
    old.add_edge("draft", "finalize")
    old.add_edge("finalize", END)
    config = {"configurable": {"thread_id": "upgrade-1"}}
    await old.compile(checkpointer=saver, interrupt_before=["finalize"]).ainvoke(
        {"task": "t", "kind": "critical", "primary": "local", "reviewer": None, "max_revisions": 1, "trace": []}, config)
    ctx = replace(await make_context(FunctionLLM(answer))("upgrade-1"), checkpointer=saver)
    state = await run_graph(build_graph(FunctionLLM(answer), saver), {}, ctx)
    assert state["final"] == "old draft" and calls == []


def test_the_cli_prints_a_failed_job_s_partial_result_marked_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    """Every model failed at revise: the draft the job had made reaches a text-mode user too."""
    import argparse

    from swarm.cli import _report

    result = {"job_id": "j1", "status": "FAILED", "trace": [], "totals": {},
              "error": {"type": "AllProvidersFailed", "message": "every model failed"},
              "output": {"partial": True, "text": "the draft so far", "stopped_at": "revise"}}
    args = argparse.Namespace(out=None, json=False, quiet=True)
    assert _report(args, result) == 1
    out, err = capsys.readouterr()
    assert out == "the draft so far\n"
    assert "partial result (stopped at revise)" in err and "error: AllProvidersFailed: every model failed" in err
    _report(args, {**result, "output": {}})  # nothing made: nothing printed but the error
    assert capsys.readouterr().out == ""


def test_the_cli_runs_a_consensus_and_prints_its_synthesis_and_positions(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """There was no ``swarm consensus``: ``swarm run swarm consensus --input ...`` printed raw JSON."""
    from swarm import cli

    jobs: list[dict[str, Any]] = []

    def run(args: Any, job: dict[str, Any]) -> int:
        jobs.append(job)
        return cli._report(args, {"job_id": "j1", "status": "COMPLETED", "trace": [], "totals": {}, "output": {
            "synthesis": "Both say yes.", "synthesizer": "claude",
            "positions": [{"model": "deepseek-v3.1-q8", "asked": "deepseek", "status": "answered", "stance": "for",
                           "text": "Yes."},  # the family's own model: no stand-in (it read as one)
                          {"model": "local", "asked": "gemini", "status": "stand_in", "text": "Yes!"}],
            "failed": [{"asked": "claude", "error": "claude cannot be asked here (claude: KEY is not set); ..."}]}})

    monkeypatch.setattr(cli, "_run", run)
    assert cli.main(["consensus", "Ship it?", "--models", "deepseek, gemini", "--stances", "for,neutral", "-q"]) == 0
    assert jobs == [{"project": "swarm", "action": "consensus",
                     "input": {"question": "Ship it?", "models": ["deepseek", "gemini"], "stances": ["for", "neutral"]}}]
    assert capsys.readouterr().out == ("## Synthesis (by claude)\n\nBoth say yes.\n\n## deepseek-v3.1-q8, for\n\nYes.\n\n"
                                       "## local (standing in for gemini)\n\nYes!\n\n## Not answered\n\n"
                                       "- claude: claude cannot be asked here (claude: KEY is not set); ...\n")


def test_the_cli_checks_out_before_the_job_and_prints_the_answer_when_it_cannot_write(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--out`` into a folder that did not exist ran the (paid) job, then a traceback lost its answer."""
    from swarm import cli

    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "_run", lambda args, job: ran.append(job) or 0)
    assert cli.main(["delegate", "hi", "--out", str(tmp_path / "no-such" / "r.json")]) == 2
    assert "error: --out: folder" in capsys.readouterr().err and ran == []
    assert cli.main(["delegate", "hi", "--out", str(tmp_path)]) == 2 and ran == []
    # a write that fails after all (the folder went away mid-job): the answer is printed anyway
    args = argparse.Namespace(out=str(tmp_path / "gone" / "r.json"), json=False, quiet=True)
    done = {"job_id": "j1", "status": "COMPLETED", "trace": [], "totals": {}, "output": {"text": "the answer"}}
    assert cli._report(args, done) == 1
    out, err = capsys.readouterr()
    assert out == "the answer\n" and "error: --out: cannot write" in err


def test_the_global_config_option_reaches_the_delegated_subcommands(
        monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    """``swarm --config X models list`` crashed (no ``fn``): the delegated commands never saw it."""
    from swarm import cli, models_cli

    seen: list[tuple[list[str], str | None]] = []
    monkeypatch.setattr(models_cli, "main", lambda argv: seen.append((argv, os.environ.get("SWARM_CONFIG"))) or 0)
    for argv in (["--config", str(config_file), "models", "list"], [f"--config={config_file}", "models", "list"]):
        monkeypatch.delenv("SWARM_CONFIG", raising=False)
        assert cli.main(argv) == 0
    assert seen == [(["list"], str(config_file))] * 2


def test_the_cli_refuses_a_thread_id_it_would_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    """``swarm run ... thread_id`` came back COMPLETED, the id echoed, no history sent, nothing saved."""
    from swarm.cli import main

    assert main(["run", "swarm", "delegate", "--input", '{"task": "and another?", "thread_id": "thr-1"}']) == 2
    assert "input.thread_id: conversations are kept by swarm-mcp" in capsys.readouterr().err


def test_the_cli_says_a_failed_job_s_error_once(capsys: pytest.CaptureFixture[str]) -> None:
    """The dispatcher's WARNING line and the CLI's ``error:`` line said the same failure twice."""
    from swarm.cli import main

    assert main(["run", "swarm", "nosuch", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("unknown action 'nosuch'") == 1, err
    assert "error: InputError: action: unknown action 'nosuch'" in err


async def test_a_job_id_given_again_with_other_input_is_refused_not_answered_from_the_first(make_context: Any) -> None:
    """The same job id with another task came back COMPLETED with the first task's answer (the
    checkpoint was matched on project/action only). Now the input's digest is checked too; the
    same input still returns the stored result, and an id minted by the dispatcher is covered."""
    calls: list[str] = []

    def answer(messages: list[Message], config: LLMConfig) -> Any:
        calls.append(config.step)
        return APPROVE if config.step == "review" else "Paris is the capital of France."

    make = make_context(FunctionLLM(answer))
    first = await dispatch({**job("What is the capital of France?"), "job_id": "same-id-1"}, make)
    assert first["status"] == "COMPLETED" and calls == ["draft", "review"]
    other = await dispatch({**job("Write a haiku about the sea."), "job_id": "same-id-1"}, make)
    assert other["status"] == "FAILED" and other["output"] is None, other
    assert other["error"] == {"type": "InputError", "message": (
        "job_id: 'same-id-1' was used for another input; use a new job_id, or the same input to resume"),
        "field": "job_id"}
    assert other["trace"][-1]["provider"] == "dispatcher"  # the trace still comes back
    assert calls == ["draft", "review"]
    for changed in ({"kind": "critical"}, {"tier": "fast"}):  # any field of the input, not only the task
        refused = await dispatch({**job("What is the capital of France?", **changed), "job_id": "same-id-1"}, make)
        assert refused["error"]["type"] == "InputError" and "same-id-1" in refused["error"]["message"]
    again = await dispatch({**job("What is the capital of France?"), "job_id": "same-id-1"}, make)
    assert again["status"] == "COMPLETED" and again["output"]["text"] == "Paris is the capital of France."
    assert calls == ["draft", "review"]
    minted = await dispatch(job("What is the capital of France?"), make)  # no id: the dispatcher makes one
    reused = await dispatch({**job("Write a haiku about the sea."), "job_id": minted["job_id"]}, make)
    assert reused["error"]["type"] == "InputError" and "was used for another input" in reused["error"]["message"]


async def test_an_idempotency_key_given_again_with_other_input_is_refused_naming_the_key(make_context: Any) -> None:
    calls: list[str] = []

    def answer(messages: list[Message], config: LLMConfig) -> str:
        calls.append(config.step)
        return "one answer"

    make = make_context(FunctionLLM(answer))
    first = {"project": "swarm", "action": "delegate", "idempotency_key": "order-7", "input": {"task": "Say hi.", "kind": "critical"}}
    assert (await dispatch(first, make))["status"] == "COMPLETED"
    other = await dispatch({**first, "input": {"task": "Say bye.", "kind": "critical"}}, make)
    assert other["error"] == {"type": "InputError", "message": (
        "idempotency_key: 'order-7' was used for another input; use a new idempotency_key, or the same input to resume"),
        "field": "idempotency_key"}
    assert calls == ["draft"]


async def test_a_job_checkpointed_before_input_digests_were_recorded_still_resumes(
    make_context: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checkpoints written before the input's digest was recorded carry none: they resume, without
    paying for the draft again."""
    import swarm.dispatcher

    calls: list[str] = []
    make = make_context(FunctionLLM(_review_dies_once(calls)))
    with monkeypatch.context() as before:  # the code before digests: nothing recorded
        before.setattr(swarm.dispatcher, "_record_input", lambda ctx, job, inp: None)
        assert (await dispatch({**job(), "job_id": "old-ckpt-1"}, make))["status"] == "FAILED"
    resumed = await dispatch({**job(), "job_id": "old-ckpt-1"}, make)
    assert resumed["status"] == "COMPLETED" and resumed["output"]["text"] == "the draft"
    assert calls == ["draft", "review", "review"]


def test_an_input_digest_ignores_defaults_and_secrets() -> None:
    """A release that adds a field with a default changed the digest of every unfinished job, and a
    signed URL signed again for a resume counted as another input: both were refused."""
    from graphs.image.inputs import UpscaleInput
    from swarm.dispatcher import JobRequest, _record_input

    def digest(raw: dict[str, Any]) -> str:
        ctx = type("Ctx", (), {"extras": {}, "job_id": "j1"})()
        _record_input(ctx, JobRequest(project="image_tools", action="upscale", input=raw), UpscaleInput(**raw))  # type: ignore[arg-type]
        return str(ctx.extras["job_input"].digest)

    url = "https://b.s3.amazonaws.com/cat.png?X-Amz-Credential=AKIAABCDEFGHIJKLMNOP&X-Amz-Signature="
    assert digest({"url": url + "aaaa1111"}) == digest({"url": url + "bbbb2222"})
    assert digest({"url": url + "aaaa1111"}) != digest({"url": url.replace("cat", "dog") + "aaaa1111"})
    assert digest({"url": url + "a", "scale": 4}) != digest({"url": url + "a", "scale": 2})



async def test_a_model_that_timed_out_is_not_waited_for_again_in_the_same_job() -> None:
    """DeepSeek accepting connections and never answering cost a delegation its timeout at the
    draft and again at the review (126 s for "Say hi." with a 60 s timeout); the review now goes to
    the next model at once, and the trace says why."""
    from fake_openai import Behaviour, FakeOpenAI
    from langgraph.checkpoint.memory import InMemorySaver

    from core.config import SwarmConfig
    from graphs.context import JobContext, Providers
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router

    with FakeOpenAI() as server:
        server.script("ds", Behaviour.hang(30))
        server.script("small", Behaviour.answer("ok from small"),
                      Behaviour.answer('{"approved": true, "score": 8, "issues": [], "suggestion": ""}'))
        base = f"{server.url}/v1"
        cfg = SwarmConfig.model_validate({
            "providers": {"llm": {"default": "deepseek-chat", "fallback_chain": ["deepseek", "local"],
                                  "tiers": {t: ["deepseek-chat"] for t in ("fast", "balanced", "premium")}}},
            "models": {"deepseek-chat": {"family": "deepseek", "litellm_model": "openai/ds", "api_base": base, "timeout_s": 1},
                       "local": {"family": "local", "litellm_model": "openai/small", "api_base": base}},
            "routing": {"delegation": {"bulk_content": {"primary": "deepseek", "reviewer": "deepseek"}}},
        })
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())

        async def make(job_id: str) -> JobContext:
            return JobContext(job_id=job_id, config=cfg, providers=Providers(cfg, {"llm": lambda: router}),
                              checkpointer=InMemorySaver())

        result = await dispatch(job(kind="bulk_content"), make)
        asked_deepseek = len(server.requests_for("ds"))
    assert result["status"] == "COMPLETED", result["error"]
    assert asked_deepseek == 1  # the draft's call; the review did not wait for it again
    steps = [(s["step"], s["model"], s["outcome"]) for s in result["trace"] if s["kind"] == "llm"]
    assert steps[:2] == [("draft", "deepseek-chat", "error"), ("draft", "local", "ok")]
    review = [s for s in result["trace"] if s["kind"] == "llm" and s["step"] == "review"]
    assert [(s["model"], s["outcome"]) for s in review] == [("deepseek-chat", "skipped"), ("local", "ok")]
    assert review[0]["detail"] == "no answer within 1 s at draft earlier in this job: not waited for again in it"
    # the self-review names the model passed over: "no model of another family answered" was said of one never asked
    note = result["output"]["review"]["note"]
    assert note == ("reviewed by local, of the drafter's own family (local): the others were not asked (deepseek-chat:"
                    " no answer within 1 s at draft earlier in this job: not waited for again in it), so this is no"
                    " independent review"), note
