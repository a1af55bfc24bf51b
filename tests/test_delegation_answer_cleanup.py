"""What a small model copies into its answers does not reach the caller or the thread.

1. A thread's follow-up: earlier answers were shown to the model as ``[local]: text``, the model
   copied the label, and the answer (then the thread's next turn) opened with it, growing turn by
   turn. Earlier answers are now plain assistant messages (their models named in the system
   prompt), and a label an answer opens with anyway is taken off.
2. A keyless self-review (the local model reviewing its own draft) listed the review prompt's own
   field description as an issue and the suggestion twice (as an issue ``suggestion: ...`` too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import TextContent
from mcp_helpers import use_fake_llm, write_config

from graphs.delegation.nodes import parse_verdict
from mcp_server.server import build_server
from providers.base import LLMConfig, Message
from providers.testing import FakeLLM, FunctionLLM
from swarm.dispatcher import dispatch

THREAD = "thr-" + "b" * 32
APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}
#: what SmolLM2 answered reviewing its own draft (keyless): approved, a low score, the prompt's
#: description of ``issues`` echoed back, the suggestion also as an issue, an issue said twice
ECHOED_VERDICT = {
    "approved": True,
    "score": 1,
    "issues": ["a list of short sentences, empty when approved", "It is two sentences, not one.",
               "suggestion: Join the two sentences.", "it is two sentences, not one"],
    "suggestion": "Join the two sentences.",
}


def _history(*answers: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for answer in answers:
        turns.append({"n": len(turns) + 1, "role": "user", "model": None, "content": "What is a circuit breaker?"})
        turns.append({"n": len(turns) + 1, "role": "assistant", "model": "local", "content": answer})
    return turns


async def test_a_follow_up_answer_that_copies_the_model_label_comes_back_without_it(make_context: Any) -> None:
    seen: list[list[Message]] = []

    def answer(messages: list[Message], config: LLMConfig) -> Any:
        seen.append(messages)
        return APPROVE if config.step == "review" else "[local]: A circuit breaker stops calls to a failing service."

    job = {"project": "swarm", "action": "delegate",
           "input": {"task": "Now make it one sentence.", "thread_id": THREAD,
                     "history": _history("A circuit breaker is a pattern. It stops calls.")}}
    result = await dispatch(job, make_context(FunctionLLM(answer, model="local")))
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == "A circuit breaker stops calls to a failing service."
    draft = seen[0]
    # the earlier answer is the assistant's own message, its text only; its model is named in the system prompt
    assert ("assistant", "A circuit breaker is a pattern. It stops calls.") in [(m.role, m.content) for m in draft]
    assert not any("[local]" in m.content for m in draft)
    assert "turn 2 by local" in draft[0].content
    # the reviewer judged the answer without the label
    assert "<answer>\nA circuit breaker stops calls to a failing service.\n</answer>" in seen[1][-1].content


async def test_labels_stored_before_the_fix_are_not_shown_to_the_model_again(make_context: Any) -> None:
    llm = FakeLLM(["[local]: [LOCAL]:  Shorter.", APPROVE], model="local")
    job = {"project": "swarm", "action": "delegate",
           "input": {"task": "Shorter.", "thread_id": THREAD,
                     "history": _history("[local]: [local]: A breaker trips on failures.")}}
    result = await dispatch(job, make_context(llm))
    assert result["output"]["text"] == "Shorter."
    assert ("assistant", "A breaker trips on failures.") in [(m.role, m.content) for m in llm.calls[0][0]]
    assert "local: A breaker trips on failures." in llm.calls[1][0][-1].content  # the reviewer's transcript


def test_only_a_label_naming_a_model_is_taken_off() -> None:
    from graphs.delegation.history import label_names, strip_label
    from graphs.turns import Turn  # (new with the fix)

    names = label_names([Turn(n=2, role="assistant", model="gemini-2.5-flash-lite", content="x")], "local", "fake")
    assert strip_label("[Gemini-2.5-flash-lite]: Hi", names) == "Hi"
    assert strip_label("**[local]:** Hi", names) == "Hi"
    assert strip_label("[unknown model]: Hi", names) == "Hi"
    assert strip_label("[1]: https://example.com/a", names) == "[1]: https://example.com/a"  # a link reference
    assert strip_label("Said [local]: hi", names) == "Said [local]: hi"


async def test_a_thread_through_mcp_stores_the_follow_up_without_the_label(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The newcomer's case: keyless, the local model, a follow-up in a thread through MCP."""
    answers = iter(["A circuit breaker is a pattern. It stops calls to a failing service.",
                    "[local]: A circuit breaker stops calls to a failing service."])

    def local(messages: list[Message], config: LLMConfig) -> Any:
        return APPROVE if config.step == "review" else next(answers)

    use_fake_llm(monkeypatch, FunctionLLM(local, model="local"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        first = await client.call_tool("delegate", {"task": "What is a circuit breaker?"})
        thread_id = first.structured_content["thread_id"]
        second = await client.call_tool("delegate", {"task": "Now make it one sentence.", "thread_id": thread_id})
        thread = json.loads((await client.read_resource(f"swarm://threads/{thread_id}")).contents[0].text)
    assert not second.is_error, second.content
    assert second.structured_content["text"] == "A circuit breaker stops calls to a failing service."
    [block] = second.content
    assert isinstance(block, TextContent) and block.text.startswith("A circuit breaker stops"), block.text
    assert [t["content"] for t in thread["turns"] if t["role"] == "assistant"] == [
        "A circuit breaker is a pattern. It stops calls to a failing service.",
        "A circuit breaker stops calls to a failing service."]


async def test_a_self_review_lists_no_echoed_prompt_text_and_the_suggestion_once(make_context: Any) -> None:
    llm = FakeLLM(["A breaker trips. It stops calls.", ECHOED_VERDICT], model="local")
    result = await dispatch({"project": "swarm", "action": "delegate", "input": {"task": "One sentence, please."}},
                            make_context(llm))
    assert result["status"] == "COMPLETED", result["error"]
    review = result["output"]["review"]
    assert review["issues"] == ["It is two sentences, not one."]
    assert review["suggestion"] == "Join the two sentences."
    # the reviewer's own values stand: nothing invented, nothing changed
    assert (review["approved"], review["score"], review["self_review"]) == (True, 1, True)


async def test_the_review_text_through_mcp_says_each_finding_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def local(messages: list[Message], config: LLMConfig) -> Any:
        return ECHOED_VERDICT if config.step == "review" else "A breaker trips. It stops calls."

    use_fake_llm(monkeypatch, FunctionLLM(local, model="local"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        tool = await client.call_tool("delegate", {"task": "One sentence, please."})
    [block] = tool.content
    assert isinstance(block, TextContent)
    text = block.text
    assert "review by local: approved, score 1/10" in text, text
    assert "empty when approved" not in text
    assert text.count("Join the two sentences.") == 1
    assert text.count("two sentences, not one") == 1


@pytest.mark.parametrize(("issues", "suggestion", "kept", "said"), [
    # the schema, or the prompt's words, echoed back
    (['{"type": "string"}', "one short paragraph", "Judge correctness, completeness and clarity."], "", [], ""),
    (["issues (a list of short strings, empty when approved)", "The date is wrong."], "", ["The date is wrong."], ""),
    # the suggestion given only as an issue becomes the suggestion, said once
    (["Suggestion - cite a source", "Too vague"], "", ["Too vague"], "cite a source"),
    # an issue repeating the suggestion word for word, and one said twice
    (["Cite a source.", "Too vague", "too vague"], "cite a source", ["Too vague"], "cite a source"),
    # a real finding that uses some of the prompt's words stays
    (["Suggested reading is missing", "The list is not sorted", "Use a short paragraph"], "one short paragraph",
     ["Suggested reading is missing", "The list is not sorted", "Use a short paragraph"], ""),
    # two words in the prompt's own terms may be the finding itself
    (["Short answer", "Not JSON"], "", ["Short answer", "Not JSON"], ""),
    # a review found these merged or lost: findings that differ by a number, a suggestion other than
    # the verdict's, a word that starts with "suggestion"
    (["Line 10 divides by zero", "Line 12 divides by zero", "Suggestion: add error handling",
      "suggestion-box feature missing"], "Use a context manager",
     ["Line 10 divides by zero", "Line 12 divides by zero", "Suggestion: add error handling",
      "suggestion-box feature missing"], "Use a context manager"),
])
def test_parse_verdict_keeps_findings_only(issues: list[str], suggestion: str, kept: list[str], said: str) -> None:
    verdict = parse_verdict(json.dumps({"approved": False, "score": 4, "issues": issues, "suggestion": suggestion}))
    assert verdict == {"approved": False, "score": 4, "issues": kept, "suggestion": said}


def test_an_answer_that_is_only_a_label_is_kept_as_it_came() -> None:
    """Taking the label off left an empty answer, which became the job's text and an empty
    assistant message in the next prompt (a provider refuses one)."""
    from graphs.delegation.history import strip_label

    assert strip_label("[local]:", {"local"}) == "[local]:"
    assert strip_label("[local]: [local]: Hi.", {"local"}) == "Hi."
