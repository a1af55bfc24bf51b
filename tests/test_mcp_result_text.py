"""What a model reads of a tool's answer is the result in words, not the structured result's JSON
again: the answer (or the image's key), who made it, the steps that ran, the totals and the ids a
next call needs. ``job_result`` answers with the tool's own text: a failed job as the tool's own
error (``isError``), a running job as the tool's handle. The structured content is unchanged."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ImageContent, ResourceLink, TextContent
from mcp_helpers import SlowLLM, use_fake_llm, write_config

from mcp_server.server import build_server

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
VERDICT = {"approved": True, "score": 8, "issues": [], "suggestion": ""}


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def _writer(messages: Any, config: Any) -> Any:
    return VERDICT if config.step == "review" else "Rivers run to the sea.\nThe sea does not fill."


async def test_a_delegated_answer_reads_as_the_answer_then_its_trace_and_ids(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The text was the JSON of the result: the answer one escaped string among 50 lines of trace."""
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(_writer, model="writer"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        tool = await client.call_tool("delegate", {"task": "two lines on rivers"})
        collected = await client.call_tool("job_result", {"job_id": tool.structured_content["job_id"]})

    done = tool.structured_content
    assert not tool.is_error and done["status"] == "COMPLETED" and done["text"].startswith("Rivers run")
    [block] = tool.content
    assert isinstance(block, TextContent) and _not_json(block.text)
    text = block.text
    assert text.startswith("Rivers run to the sea.\nThe sea does not fill.\n"), text
    assert "written by writer; review by writer: approved, score 8/10" in text
    assert "trace: " in text and "draft llm writer ok" in text and "review llm writer ok" in text
    assert f"{done['totals']['input_tokens']} in / {done['totals']['output_tokens']} out tokens" in text
    assert f"job_id: {done['job_id']}" in text and f"thread_id: {done['thread_id']}" in text
    # job_result: the same words, the whole envelope as structured content
    assert not collected.is_error and [b.text for b in collected.content] == [text]  # type: ignore[union-attr]
    assert collected.structured_content["output"]["text"] == done["text"]


async def test_a_refused_config_edit_is_said_in_the_next_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit of config.yaml that fails validation while the server runs was only logged (Desktop
    shows no log) and the next answer looked as usual: it now opens its trace with the refusal."""
    import os

    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(_writer, model="writer"))
    config = write_config(tmp_path, wait_budget_s=30)
    async with Client(build_server(str(config))) as client:
        assert "refused" not in (await client.call_tool("delegate", {"task": "two lines on rivers"})).content[0].text
        config.write_text(config.read_text().replace("max_revisions:", "max_revisions: [2]\n  was_max_revisions:", 1))
        os.utime(config, ns=(10**9, 10**9))
        tool = await client.call_tool("delegate", {"task": "two lines on rivers"})
    assert not tool.is_error and tool.structured_content["text"].startswith("Rivers run")
    text = tool.content[0].text
    assert "trace: config node config error 0.0 ms (your edit of config.yaml was refused; this job ran on the last good one: invalid config: config.yaml:" in text
    assert "limits.max_revisions" in text, text[text.index("trace:"):]


async def test_a_running_job_reads_as_what_to_call_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    use_fake_llm(monkeypatch, SlowLLM(gate=asyncio.Event()))  # never set: the job runs until the server stops
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.05)))) as client:
        tool = await client.call_tool("delegate", {"task": "hello"})
        polled = await client.call_tool("job_result", {"job_id": tool.structured_content["job_id"], "wait_s": 0})

    job_id = tool.structured_content["job_id"]
    assert tool.structured_content["status"] == "IN_PROGRESS"
    for result in (tool, polled):
        text = result.content[0].text  # type: ignore[union-attr]
        assert _not_json(text) and not result.is_error
        assert f'job_result(job_id="{job_id}"' in text and text.splitlines()[-1].startswith(f"job_id: {job_id}"), text
    # the tool's handle names the thread the call opened (a model reading text continues it by that)
    assert tool.content[0].text.splitlines()[-1] == (  # type: ignore[union-attr]
        f"job_id: {job_id}; thread_id: {tool.structured_content['thread_id']}")


def _all_down(messages: Any, config: Any) -> Any:
    from core.errors import AllProvidersFailed
    from providers.base import TraceStep

    raise AllProvidersFailed("llm", [TraceStep(step=config.step, provider="litellm", model="deepseek-v3.1-q8",
                                               outcome="error", error_class="ProviderUnavailable", latency_ms=50.0)])


async def test_job_result_of_a_failed_job_answers_as_the_tools_own_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """job_result answered a FAILED job ``isError: false`` with its JSON: a client polling it read
    success where the tool itself had answered an error."""
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(_all_down))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        tool = await client.call_tool("delegate", {"task": "hello"})
        job_id = tool.structured_content["job_id"]
        collected = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 0})

    assert tool.is_error and collected.is_error
    text = collected.content[0].text  # type: ignore[union-attr]
    assert text == tool.content[0].text  # type: ignore[union-attr]
    assert text.startswith("AllProvidersFailed: ") and "deepseek-v3.1-q8 error ProviderUnavailable 50.0 ms" in text
    assert collected.structured_content["status"] == "FAILED" and collected.structured_content["job_id"] == job_id


async def test_an_image_result_reads_as_what_was_made_and_its_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first block was the result's JSON (50 lines of trace fields) before the picture."""
    from providers.image import pull as weights_pull

    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=600)))) as client:
        tool = await client.call_tool("remove_background", {"image": photo, "model": "u2netp"})

    done = tool.structured_content
    assert not tool.is_error and done["status"] == "COMPLETED", tool.content
    first, *blocks = tool.content
    assert isinstance(first, TextContent) and _not_json(first.text)
    width, height = done["details"]["width"], done["details"]["height"]
    assert first.text.startswith(f"Done by u2netp: {width}x{height} image stored as key {done['key']}\n"), first.text
    assert "trace: remove_background image u2netp ok" in first.text and f"job_id: {done['job_id']}" in first.text
    assert [type(b) for b in blocks] == [TextContent, ImageContent, ResourceLink]


def _done(output: dict[str, Any], **head: Any) -> dict[str, Any]:
    step = {"step": "draft", "kind": "llm", "provider": "local", "model": "local", "latency_ms": 12.0, "outcome": "ok"}
    skipped = {**step, "model": "deepseek-v3.1-q8", "provider": "deepseek", "latency_ms": 0.0, "outcome": "skipped"}
    return {"job_id": "j-1", "status": "COMPLETED", "output": output, "trace": [skipped, step],
            "totals": {"input_tokens": 5, "output_tokens": 7, "cost_usd": None, "provider_calls": 1}, **head}


@pytest.mark.parametrize(("review", "said"), [
    ({"approved": None, "status": "unavailable", "error": "llm: every backend failed"},
     "written by local; no review (llm: every backend failed)"),
    ({"approved": None, "status": "unusable", "reviewer": "local", "error": "the reviewer's answer held no valid JSON verdict"},
     "no review (the reviewer's answer held no valid JSON verdict)"),
    ({"approved": True, "score": 7, "status": "done", "reviewer": "local", "self_review": True,
      "note": "reviewed by local, of the drafter's own family (local): no independent review"},
     "review by local: approved, score 7/10 (a self-review: no independent reviewer answered)\n"
     "note: reviewed by local, of the drafter's own family"),
    ({"approved": False, "score": 4, "status": "done", "reviewer": "gemini-2.5-flash-lite",
      "issues": ["too long", "no example"], "suggestion": "cut it to two lines"},
     "review by gemini-2.5-flash-lite: changes requested, score 4/10\n- too long\n- no example\nsuggestion: cut it to two lines"),
])
def test_a_delegated_answer_says_how_its_review_went(review: dict[str, Any], said: str) -> None:
    """A review nobody gave read "review: not approved"; a self-review read as an independent one."""
    from mcp_server.results import delegate_output
    from mcp_server.texts import result_text

    text = result_text(delegate_output(_done({"text": "Two lines.", "model": "local", "review": review}), "thr-1"))
    assert text.startswith("Two lines.\n\nwritten by local; ") and said in text, text
    assert "trace: draft llm local ok 12.0 ms; skipped: deepseek-v3.1-q8" in text
    assert "job_id: j-1; thread_id: thr-1" in text


def test_a_consensus_reads_as_its_synthesis_positions_and_failures() -> None:
    from mcp_server.results import consensus_output
    from mcp_server.texts import result_text

    long = "word " * 400
    text = result_text(consensus_output(_done({
        "synthesis": "Both agree on X.", "synthesizer": "claude-sonnet-5-5",
        "positions": [{"model": "local", "asked": "gemini-2.5-flash-lite", "status": "stand_in", "stance": "for", "text": long},
                      {"model": "deepseek-v3.1-q8", "asked": "deepseek", "status": "answered", "text": "No."}],
        "failed": [{"asked": "gemini-2.5-flash-lite", "error_type": "StandInAlreadyOnPanel", "error": "no answer"}],
    })))
    assert text.startswith("Synthesis (by claude-sonnet-5-5):\nBoth agree on X.\n\nPositions:\n")
    assert f"- local (standing in for gemini-2.5-flash-lite) (for): {long.strip()}\n" in text  # whole, as structured
    assert "- deepseek-v3.1-q8: No." in text  # the family's own model: no "(standing in for deepseek)"
    assert "- gemini-2.5-flash-lite failed: StandInAlreadyOnPanel: no answer" in text
    not_asked = {"asked": "claude-sonnet-5-5", "error_type": "StandInAlreadyOnPanel", "foreseen": "local",
                 "error": "claude-sonnet-5-5 cannot be asked here (claude-sonnet-5-5: ANTHROPIC_API_KEY is not set); ..."}
    text = result_text(consensus_output(_done({"synthesis": "X.", "positions": [{"model": "local", "text": "X."}],
                                               "failed": [not_asked]})))
    assert "- claude-sonnet-5-5 cannot be asked here (claude-sonnet-5-5: ANTHROPIC_API_KEY is not set); ..." in text
    assert "claude-sonnet-5-5 failed" not in text


def test_a_batch_reads_as_each_images_key_or_its_error() -> None:
    from mcp_server.results import image_output
    from mcp_server.texts import result_text

    results = [{"index": 0, "image_key": "image_tools/j-1/0.png", "width": 4, "height": 4},
               {"index": 1, "error": {"type": "InputError", "message": "images[1]: not an image"}}]
    text = result_text(image_output(_done({"results": results}), return_base64=False, inline_limit=1000))
    assert "Done: 1 of 2 images\n- images[0]: key image_tools/j-1/0.png\n- images[1] failed: InputError: " \
           "images[1]: not an image" in text, text

    # a result's warnings (a JPEG that dropped the transparency) were only in the structured details
    said = "output_format jpeg has no transparency: the transparent parts were filled white"
    single = {"image_key": "image_tools/j-2/remove_background.jpg", "width": 4, "height": 4, "warnings": [said]}
    for output in (single, {"results": results[:1], "warnings": [said]}):
        text = result_text(image_output(_done(output), return_base64=False, inline_limit=1000))
        assert f"\nWarning: {said}" in text, text


def test_a_research_text_names_its_thread_trace_and_totals() -> None:
    """The research text had no thread_id: a model reading text could not continue the conversation."""
    from mcp_server.results import research_output, research_result

    result = research_result(research_output(_done({"report": "Rivers flow [1].", "sources": [], "citations": []}),
                                             "thr-9"))
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Rivers flow [1].\n\n---\n")
    assert "trace: draft llm local ok 12.0 ms; skipped: deepseek-v3.1-q8" in text
    assert "totals: 5 in / 7 out tokens" in text and "job_id: j-1; thread_id: thr-9; report in pages: " in text


def test_a_step_list_of_skips_only_has_no_empty_part() -> None:
    from mcp_server.outputs import TraceStepOut
    from mcp_server.texts import trace_line

    skipped = TraceStepOut(step="draft", kind="llm", provider="google", model="gemini", latency_ms=0, outcome="skipped")
    assert trace_line([skipped]) == "trace: skipped: gemini"


def test_the_trace_line_lists_calls_and_steps_that_went_wrong_with_why() -> None:
    """Every graph step had a line ("plan node graph ok") and one that fell back said only "error"."""
    from mcp_server.outputs import TraceStepOut
    from mcp_server.texts import totals_line, trace_line

    def step(name: str, kind: str, outcome: str, detail: str | None = None, ms: float = 1.0) -> TraceStepOut:
        return TraceStepOut(step=name, kind=kind, provider="graph" if kind == "node" else "local", model=None,
                            latency_ms=ms, outcome=outcome, detail=detail)

    steps = [step("plan", "llm", "ok", ms=900.0),
             step("plan", "node", "error", "plan unusable (the planner's JSON does not parse); fell back to the question"),
             step("search", "search", "ok"), step("rank", "node", "ok"), step("review", "node", "skipped"),
             step("dispatch", "node", "ok", ms=1000.0)]
    assert trace_line(steps) == ("trace: plan llm local ok 900.0 ms; plan node graph error 1.0 ms (plan unusable (the "
                                 "planner's JSON does not parse); fell back to the question); search search local ok 1.0 ms")
    assert totals_line({"provider_calls": 2}, steps).endswith("901.0 ms in providers, 1000.0 ms in all")
    # a failed call says why (it said only "error ProviderUnavailable"); an image step what ran
    failed = TraceStepOut(step="draft", kind="llm", provider="deepseek", model="deepseek-v3.1-q8", latency_ms=171.7,
                          outcome="error", error_class="ProviderUnavailable", detail="cannot connect: no such host")
    image = TraceStepOut(step="upscale", kind="image", provider="image", model="realesrgan-anime-6b", latency_ms=800.0,
                         outcome="ok", detail="precision=bf16 (auto), path=torch-bf16")
    assert trace_line([failed, image]) == ("trace: draft llm deepseek-v3.1-q8 error ProviderUnavailable 171.7 ms (cannot"
                                           " connect: no such host); upscale image realesrgan-anime-6b ok 800.0 ms"
                                           " (precision=bf16 (auto), path=torch-bf16)")
    panel = [step("ask", "llm", "ok", ms=800.0), step("ask", "llm", "ok", ms=700.0), step("dispatch", "node", "ok", ms=1000.0)]
    assert totals_line({"provider_calls": 2}, panel).endswith("1500.0 ms in providers (some side by side), 1000.0 ms in all")
    # a resumed job's trace holds its first run's calls: "(some side by side), ... in all" read wrong
    resumed = [step("draft", "llm", "ok", ms=8000.0), step("review", "llm", "ok", ms=300.0),
               step("dispatch", "node", "ok", "resumed at review from its checkpoint: ...", ms=4600.0)]
    assert totals_line({"provider_calls": 2}, resumed).endswith(
        "8300.0 ms in providers (its earlier run's too), 4600.0 ms in this run")


async def test_job_and_thread_lists_read_as_one_line_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """job_status, list_jobs and list_threads answered their JSON (epoch times, 9 KB for 20 jobs)."""
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(_writer, model="writer"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        done = (await client.call_tool("delegate", {"task": "two lines on rivers"})).structured_content
        status = await client.call_tool("job_status", {"job_id": done["job_id"]})
        jobs = await client.call_tool("list_jobs", {})
        threads = await client.call_tool("list_threads", {})

    line = status.content[0].text  # type: ignore[union-attr]
    assert _not_json(line) and "\n" not in line, line
    assert line.startswith(f"{done['job_id']}  swarm/delegate  COMPLETED  started 20") and " UTC, " in line, line
    assert status.structured_content["status"] == "COMPLETED"  # all of it, as before
    listed = jobs.content[0].text  # type: ignore[union-attr]
    assert listed.splitlines() == ["1 job(s), newest first:", line], listed
    assert jobs.structured_content["jobs"][0]["job_id"] == done["job_id"]
    said = threads.content[0].text.splitlines()  # type: ignore[union-attr]
    assert said[0].startswith("1 thread(s), latest first") and said[1].startswith(f"{done['thread_id']}  2 turn(s)")
    assert said[1].endswith("began: two lines on rivers"), said
    from mcp_server.texts import threads_text

    trimmed = threads_text([{"thread_id": "t1", "turns": 4, "dropped": 2, "started_with": "Turn 2", "updated_at": 0}])
    assert trimmed.splitlines()[1].endswith("earliest kept: Turn 2")  # "began:" named a turn that was not the first


def test_a_job_a_runpod_worker_ran_says_so_in_its_text() -> None:
    """The runpod step went only to the structured result: a model reading the text could not
    tell where the job ran (walkthrough with a local endpoint)."""
    from mcp_server.results import delegate_output, research_output, research_result
    from mcp_server.texts import result_text

    runpod = {"step": "runpod", "kind": "node", "provider": "runpod", "model": "nc2ep", "latency_ms": 900.0,
              "outcome": "ok", "detail": "job ab-u1 COMPLETED; queued 12 ms, ran 850 ms on local-ce06"}
    said = "ran on RunPod endpoint nc2ep: job ab-u1 COMPLETED; queued 12 ms, ran 850 ms on local-ce06"
    done = _done({"text": "Two lines.", "model": "local", "review": None})
    done["trace"].append(runpod)
    assert said in result_text(delegate_output(done, None))
    report = _done({"report": "Rivers flow [1].", "sources": [], "citations": []})
    report["trace"].append(runpod)
    assert said in research_result(research_output(report, None)).content[0].text  # type: ignore[union-attr]
    here = result_text(delegate_output(_done({"text": "Two lines.", "model": "local", "review": None}), None))
    assert "RunPod" not in here
