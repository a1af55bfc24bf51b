"""A consensus synthesis past its synthesizer's window keeps every model's answer, tag and all.

The synthesis prompt is one message of tagged blocks (``<answer model="x">...</answer>``, one a
model); shortened in its middle to fit a 4,096-token local model, it lost one model's whole answer
silently, part of another's and the tag of a third, and the synthesizer credited points to the
wrong models. Each block's own text is cut instead, the longest first. End to end: litellm over
real HTTP to a loopback OpenAI-compatible server that refuses, as llama.cpp's does, a prompt past
its window and counts tokens at a llama.cpp tokenize endpoint; the job through the dispatcher.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import Behaviour
from test_review33d_context_fit import ALIAS, SMOLLM, TokenizingServer

from graphs.consensus.prompts import synthesis_messages
from providers.llm import token_counts
from providers.llm.context_fit import (
    ContextFit,
    TokenCounts,
    shorten_blocks,
    shorten_single,
    tagged_blocks,
)

MARKER = re.compile(r"\n\[\.\.\. (\d+) earlier characters left out to fit the model's context window \.\.\.\]\n")
#: the panel: model -> (upstream name on the server, stance)
PANEL = {"claude": ("cl-up", "for"), "gemini": ("gm-up", "against"), "deepseek": ("ds-up", "neutral")}
QUESTION = "Should we move the public API from REST to gRPC this quarter?"
SYNTHESIS = "## Agreements\nAll three weigh the migration cost (claude, gemini, deepseek)."


@pytest.fixture(autouse=True)
def no_counts_cached() -> Iterator[None]:
    token_counts._server_counts.clear()
    yield
    token_counts._server_counts.clear()


def answer_of(model: str, chars: int) -> str:
    """An answer of about ``chars`` characters with a mark at each end, naming its model."""
    body = f"{model} argues the point with reasons and a caveat. "
    return f"{model.upper()}-OPENS " + body * (chars // len(body)) + f"{model.upper()}-ENDS"


def consensus_config(server: TokenizingServer) -> Any:
    from core.config import SwarmConfig

    models: dict[str, Any] = {
        name: {"family": name, "litellm_model": f"openai/{up}", "api_base": f"{server.url}/v1", "timeout_s": 20}
        for name, (up, _) in PANEL.items()}
    models["local"] = {"family": "local", "litellm_model": f"openai/{ALIAS}", "api_base": f"{server.url}/v1",
                       "timeout_s": 20, "max_output_tokens": 512, "local_server": {"gguf": SMOLLM, "n_ctx": 4096}}
    return SwarmConfig.model_validate({
        "providers": {"llm": {"default": "local", "fallback_chain": [],
                              "tiers": {t: ["local"] for t in ("fast", "balanced", "premium")}}},
        "models": models,
        "routing": {"delegation": {"critical": {"primary": "local", "reviewer": None}},
                    "consensus": {"models": list(PANEL), "synthesizer": "local"}},
    })


@pytest.mark.parametrize(("endpoint", "chars_per_token"), [(("/extras/tokenize", "input"), 4.0), (None, 2.0)],
                         ids=["counted", "denser-than-estimated"])
async def test_a_synthesis_past_the_window_keeps_every_model_s_tag_opening_and_end(
        make_context: Any, endpoint: tuple[str, str] | None, chars_per_token: float) -> None:
    """Three answers of ~8,000 characters and a 4,096-token synthesizer: each answer is cut inside
    its block, and the trace says how much of how many. Text denser than estimated is refused
    once and cut again, block by block, by the server's count."""
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router
    from swarm.dispatcher import dispatch

    with TokenizingServer(endpoint) as server:
        server.context_tokens, server.chars_per_token = 4096, chars_per_token
        for name, (up, _) in PANEL.items():
            server.script(up, Behaviour.answer(answer_of(name, 8000)))
        server.script(ALIAS, Behaviour.answer(SYNTHESIS))
        cfg = consensus_config(server)
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        job = {"project": "swarm", "action": "consensus",
               "input": {"question": QUESTION, "stances": [s for _, s in PANEL.values()]}}
        result = await dispatch(job, make_context(router, cfg))
        sent = [r for r in server.requests_for(ALIAS) if r.path.endswith("/chat/completions")]
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["synthesis"] == SYNTHESIS
    prompt = sent[-1].body["messages"][-1]["content"]
    assert server.prompt_tokens(sent[-1].body) + 512 <= 4096
    assert len(sent) == (1 if endpoint else 2)  # denser than estimated: refused once, then cut again
    assert prompt.startswith(f"<question>\n{QUESTION}\n</question>\n\n") and prompt.endswith("\n\nYour synthesis:")
    for name, (_, stance) in PANEL.items():  # every model's tag, whole, and its answer's opening and end
        tag = f'<answer model="{name}" stance="{stance}">\n'
        block = prompt[prompt.index(tag):]
        block = block[:block.index("</answer>")]
        assert prompt.count(tag) == 1 and f"{name.upper()}-OPENS" in block and f"{name.upper()}-ENDS\n" in block
        assert len(MARKER.findall(block)) == 1, block  # each cut inside itself
    cut = sum(int(n) for n in MARKER.findall(prompt))
    assert len(prompt) - sum(len(m.group(0)) for m in MARKER.finditer(prompt)) + cut == len(
        synthesis_messages(QUESTION, [{"model": n, "stance": s, "text": answer_of(n, 8000)}
                                      for n, (_, s) in PANEL.items()], [])[-1].content)
    assert server.prompt_tokens(sent[-1].body) > 4096 * 0.5  # what fits is kept, not a sliver
    step = next(s for s in result["trace"] if s["step"] == "synthesize" and s["kind"] == "llm" and s["outcome"] == "ok")
    assert (step["detail"] or "").startswith(f"left out {cut:,} characters of 3 answers to fit local's 4096-token context")


def blocks_text(*lengths: int, tag: str = "answer") -> str:
    """A question, a block of each length (each ``B<i>-OPENS`` ... ``B<i>-ENDS``) and instructions."""
    blocks = [f'<{tag} model="m{i}">\nB{i}-OPENS ' + "x" * max(0, n - 20) + f" B{i}-ENDS\n</{tag}>"
              for i, n in enumerate(lengths)]
    return "<question>\nWhich one?\n</question>\n\n" + "\n\n".join(blocks) + "\n\nYour synthesis:"


def test_blocks_of_unequal_length_are_cut_longest_first_to_an_equal_share() -> None:
    """A 300-character block is within its share and stays whole; a 3,000- and a 9,000-character
    one are each cut to the same share, each with its marker inside it."""
    text = blocks_text(300, 3000, 9000)
    short, cut, what = shorten_blocks(text, 3000) or ("", 0, "")
    assert what == "2 answers" and len(short) <= 3000
    blocks = tagged_blocks(short) or []
    inner = [short[b[1]:b[2]] for name, b in blocks if name == "answer"]
    assert [name for name, _ in blocks] == ["question", "answer", "answer", "answer"]
    [first] = [b for name, b in (tagged_blocks(text) or [])[1:2]]
    assert inner[0] == text[first[1]:first[2]]  # the short one whole, no marker
    assert abs(len(inner[1]) - len(inner[2])) <= 1 and len(inner[1]) > len(inner[0])  # an equal share each
    for i, kept in enumerate(inner[1:], 1):
        assert kept.startswith(f"\nB{i}-OPENS") and kept.endswith(f"B{i}-ENDS\n") and len(MARKER.findall(kept)) == 1
    assert cut == sum(int(n) for n in MARKER.findall(short))
    assert len(short) - sum(len(m.group(0)) for m in MARKER.finditer(short)) + cut == len(text)
    assert short.startswith("<question>\nWhich one?\n</question>\n\n") and short.endswith("\n\nYour synthesis:")


def test_any_repeated_tag_name_is_cut_by_block() -> None:
    short, _, what = shorten_blocks(blocks_text(4000, 4000, tag="source"), 2000) or ("", 0, "")
    assert what == "2 sources" and short.count('<source model="m') == 2 and len(MARKER.findall(short)) == 2


def chat_of(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Combine them."}, {"role": "user", "content": text}]


def middle_cut(text: str) -> None:
    """``text`` past a budget is cut in its middle: one marker, its start and end kept, said as such."""
    assert tagged_blocks(text) is None
    [_, message], cut, what = shorten_single(chat_of(text), 1000, TokenCounts())
    assert what is None and cut > 0 and len(MARKER.findall(message["content"])) == 1
    assert message["content"].startswith(text[:50]) and message["content"].endswith(text[-50:])


@pytest.mark.parametrize("text", [
    blocks_text(3000, 3000).replace("B1-OPENS", '<answer model="inner">B1-OPENS') + "</answer>",  # nested
    blocks_text(3000, 3000) + "\n<answer model=\"late\">never closed",  # an opening never closed
    blocks_text(3000, 3000).replace("B0-ENDS", "B0-ENDS</answer> a stray end"),  # an end with no opening
    blocks_text(3000, 3000).replace("B0-ENDS", "B0-ENDS<b>").replace("B1-OPENS", "</b>B1-OPENS"),  # crossing
    "no tags at all, " * 400,  # no block
], ids=["nested", "unclosed", "stray-end", "crossing", "no-block"])
def test_nested_or_malformed_tags_fall_back_to_the_middle_cut(text: str) -> None:
    middle_cut(text)


def test_text_outside_the_blocks_that_alone_is_past_the_room_falls_back_to_the_middle_cut() -> None:
    text = blocks_text(1500, 1500).replace("\n\nYour synthesis:", " context" * 500 + "\n\nYour synthesis:")
    assert tagged_blocks(text) is not None and shorten_blocks(text, 3000) is None
    [_, message], cut, what = shorten_single(chat_of(text), 1000, TokenCounts())
    assert what is None and len(MARKER.findall(message["content"])) == 1


def test_tags_inside_the_question_or_an_answer_are_its_text() -> None:
    """A question quoting two ``<answer>`` blocks is no block of the prompt's; ``List<T>`` and an
    unclosed ``<br>`` inside an answer are its text, cut with it."""
    text = blocks_text(4000, 4000).replace("Which one?", "Is <answer>a</answer> <answer>b</answer> valid?")
    text = text.replace("B0-OPENS", "B0-OPENS List<T> <br>")
    blocks = tagged_blocks(text) or []
    assert [name for name, _ in blocks] == ["question", "answer", "answer"]
    short, _, what = shorten_blocks(text, 3000) or ("", 0, "")
    assert what == "2 answers" and "Is <answer>a</answer> <answer>b</answer> valid?" in short


def test_the_trace_note_says_how_much_of_how_many_blocks() -> None:
    text = blocks_text(300, 6000, 6000)
    fit = ContextFit("local", {"messages": chat_of(text), "max_tokens": 512}, 1500)
    sent = fit.params["messages"][1]["content"]
    cut = sum(int(n) for n in MARKER.findall(sent))
    assert cut > 1000 and fit.cut_of == "2 answers"
    assert fit.note == f"left out {cut:,} characters of 2 answers to fit local's 1500-token context"
    assert sent.startswith("<question>\nWhich one?\n</question>") and len(MARKER.findall(sent)) == 2
