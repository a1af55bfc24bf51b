"""Sentence-level grounding, the repeat check and the extractive report, on their own and in the
research graph with the shipped fakes over a real local index."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from test_research_graph import Script, _context, _local_chain, _node_steps

from graphs.research.action import ResearchInput, research
from graphs.research.extractive import extractive_report
from graphs.research.grounding import ground
from graphs.research.passages import bm25_scores, sentences_of, split_passages
from graphs.research.quoting import cite
from graphs.research.repeats import drop_repeats
from graphs.research.writing import CHECK_RULE, NOTHING_SUPPORTED
from providers.base import LLMConfig, LLMResponse, Message
from providers.testing import FakeLLM, FunctionLLM

DOC = (
    "# Fallback\n\nWhen a model fails, the router tries the next model of the fallback chain.\n\n"
    "## Circuits\n\nA circuit opens after 3 failures and stays open for 30 seconds.\n"
)
PASSAGES = {1: split_passages(DOC), 2: split_passages("# Search\n\nThe local index ranks documents with BM25.\n")}


def test_passages_keep_their_offsets_and_heading():
    passages = split_passages(DOC)
    assert [p["heading"] for p in passages] == ["Fallback", "Circuits"]
    for p in passages:
        assert DOC[p["start"] : p["end"]] == p["text"]
    assert passages[1]["text"] == "A circuit opens after 3 failures and stays open for 30 seconds."
    long = "# T\n\n" + " ".join(f"Sentence number {i} is here." for i in range(100))
    pieces = split_passages(long, max_chars=200)
    assert all(len(p["text"]) <= 200 and long[p["start"] : p["end"]] == p["text"] for p in pieces)
    assert pieces[0]["text"].endswith(".")


def test_invented_sentence_is_removed_and_supported_one_stays():
    report = (
        "When a model fails, the router tries the next model in the fallback chain [1]. "
        "The router is a hosted search engine that queries its own search results [1]."
    )
    result = ground(report, PASSAGES)
    assert "tries the next model" in result.report
    assert "hosted search engine" not in result.report
    assert result.factual == 2 and result.supported == 1 and result.support == 0.5
    [removed] = result.unsupported
    assert removed["sentence"].startswith("The router is a hosted search engine") and removed["source_ids"] == [1]
    assert "content words" in removed["reason"]
    assert result.evidence  # the kept sentence names the passage behind it
    [evidence] = result.evidence.values()
    assert evidence["source_id"] == 1 and evidence["heading"] == "Fallback" and evidence["start"] == len("# Fallback\n\n")


def test_sentence_citing_a_nonexistent_source_is_removed():
    result = ground("The local index ranks documents with BM25 [7].", PASSAGES)
    assert "BM25" not in result.report
    assert result.unsupported[0]["reason"] == "cites only sources that were never retrieved"
    assert result.invalid == [{"marker": "[7]", "source_id": 7, "reason": "no source 7 was retrieved (sources are 1-2)"}]


def test_a_report_without_any_citation_does_not_pass():
    result = ground("The router tries the next model of the fallback chain. Circuits open after failures.", PASSAGES)
    assert result.supported == 0 and result.factual == 2 and result.support == 0.0
    assert not result.report.strip()
    assert {u["reason"] for u in result.unsupported} == {"states a fact without citing a source"}


def test_wrong_numbers_quotes_and_sources_are_caught():
    result = ground(
        "A circuit opens after 5 failures [1]. "
        'The router "always retries forever" [1]. '
        "The local index ranks documents with BM25 [1]. "
        "A circuit opens after 3 failures and stays open for 30 seconds [1].",
        PASSAGES,
    )
    reasons = [u["reason"] for u in result.unsupported]
    assert "does not state 5" in reasons[0]
    assert "quoted 'always retries forever'" in reasons[1]
    assert "content words" in reasons[2]  # true, but source 1 does not say it
    assert result.supported == 1 and "30 seconds" in result.report


def test_a_hard_wrapped_sentence_keeps_the_citation_at_its_end():
    report = "When a model fails, the router tries the next\nmodel of the fallback chain [1].\n\n- A circuit opens after 3\n  failures [1].\n"
    result = ground(report, PASSAGES)
    assert result.factual == 2 and result.supported == 2 and not result.unsupported
    assert "the next model of the fallback chain [1]." in result.report


def test_remarks_headings_and_questions_are_not_factual():
    report = "## Answer\n\nThe sources do not say how long a job may run.\n\nWhat about retries?\n"
    result = ground(report, PASSAGES)
    assert result.factual == 0 and result.support is None and result.report == report



def test_a_colon_sentence_that_leads_into_nothing_is_a_claim():
    # the keyless 135M writer's whole report on uvicorn once was one invented, uncited sentence
    # about another package ending in ':'; read as a lead-in, it passed as "no claim at all"
    invented = "The router is a protocol that lets servers talk to clients over any host:"
    for report in (invented + "\n", f"{invented}\n\n## Next\n\nWhat about retries?\n"):
        result = ground(report, PASSAGES)
        assert result.factual == 1 and result.supported == 0, report
        assert invented not in result.report
        assert result.unsupported[0]["reason"] == "states a fact without citing a source"
    # a lead-in to a list, a block or a paragraph is still no claim of its own
    for follows in ("- the next model of the fallback chain [1]", "```\nretry()\n```", "When a model fails [1]."):
        led = ground(f"The router does this:\n\n{follows}\n", PASSAGES)
        assert "The router does this:" in led.report, follows
    mid = ground("In short: a circuit opens after 3 failures [1].", PASSAGES)
    assert mid.factual == 1 and mid.supported == 1

def test_repeated_sentences_and_lines_are_dropped_by_normalised_comparison():
    text = (
        "# Report\n\n"
        "The swarm falls back to the next model [1]. The Swarm falls back to the next model.\n"
        "- The swarm uses layers.\n- the swarm uses layers!\n\n"
        "It runs and runs and runs and runs and runs and runs.\n\n"
        "| a | b |\n|---|---|\n|---|---|\n"
    )
    kept, dropped = drop_repeats(text)
    assert kept.count("falls back") == 1 and kept.count("uses layers") == 1
    assert "runs and runs" not in kept
    assert kept.count("|---|---|") == 2  # table rules are not sentences
    assert [d["reason"] for d in dropped] == [
        "repeats an earlier sentence", "repeats an earlier line", "repeats one phrase over and over",
    ]


def test_code_is_neither_a_citation_nor_a_sentence():
    report = "Call `fallback[0]` to get the first model [1].\n\n```\nThe router is magic.\n```\n"
    result = ground(report, {1: split_passages("Call fallback[0] to get the first model of the chain.")})
    assert result.supported == 1 and "The router is magic." in result.report and not result.invalid


def test_bm25_prefers_the_passage_that_answers():
    scores = bm25_scores("circuit failures", ["the router tries the next model", "a circuit opens after 3 failures"])
    assert scores[1] > scores[0] == 0


def test_extractive_report_quotes_cited_passages_under_each_sub_question():
    sources = [{"id": 1, "snippet": ""}, {"id": 2, "snippet": ""}]
    passages = {str(k): v for k, v in PASSAGES.items()}
    report = extractive_report("How does the fallback work?", ["circuit failures", "local index ranking"], sources, passages)
    sections = report.split("### ")
    assert sections[-2].startswith("Search: `circuit failures`") and "3 failures and stays open for 30 seconds [1]." in sections[-2]
    assert sections[-1].startswith("Search: `local index ranking`") and "BM25 [2]" in sections[-1]
    assert "next model of the fallback chain [1]" in report.split("## What the sources say")[0]  # the opening
    checked = ground(report, PASSAGES)
    assert checked.support == 1.0 and not checked.unsupported
    assert drop_repeats(report)[1] == []


# --- in the graph -----------------------------------------------------------------------------


class LocalFamily(FunctionLLM):
    """A FunctionLLM that answers as the bundled local model does (family ``local``)."""

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
        response = await super().complete(messages, config)
        return response.model_copy(update={"provider": "local", "model": "local"})


def _cited(report: str) -> set[int]:
    return {int(n) for group in re.findall(r"\[([\d, ]+)\]", report) for n in group.split(",") if n.strip()}


async def test_invented_sentence_in_a_written_report_is_removed_and_listed(corpus, tmp_path):
    report = ("A checkpointer saves graph state after every step [1]. "
              "A runpod server is a hosted search engine that uses the mcp server to query its own results [2]. "
              "With durability sync a resumed run re-runs only the interrupted node [1].")
    ctx, _ = _context(tmp_path, FunctionLLM(Script(report=report)), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?", mode="abstractive"), ctx)
    assert result["mode"] == "abstractive" and result["support"] == round(2 / 3, 3)
    assert "hosted search engine" not in result["report"] and "saves graph state" in result["report"]
    assert [u["source_ids"] for u in result["unsupported_sentences"]] == [[2]]
    assert result["citations"][0]["passage"]["heading"] == "LangGraph checkpoints"
    assert any("no cited passage supports" in w for w in result["warnings"])
    check = next(s for s in result["trace"] if s["step"] == "check")
    assert "2 of 3 factual sentences supported" in check["detail"]


async def test_auto_mode_quotes_the_sources_when_the_draft_fails_the_check(corpus, tmp_path):
    llm = FunctionLLM(Script(report="Checkpoints are a kind of database. RunPod is fast and cheap [2]."))
    ctx, _ = _context(tmp_path, llm, _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?"), ctx)
    assert result["mode"] == "extractive" and result["support"] == 1.0
    assert "database" not in result["report"] and "saves graph state after every step [1]" in result["report"]
    assert all(u["draft"] == "abstractive (replaced)" for u in result["unsupported_sentences"])
    assert any("failed the grounding check" in w for w in result["warnings"])
    assert result["review"]["status"] == "skipped"  # nothing a model wrote is left to review
    assert _cited(result["report"]) <= {s["id"] for s in result["sources"]}


async def test_auto_mode_does_not_let_the_local_model_write(corpus, tmp_path):
    brain = Script()
    ctx, events = _context(tmp_path, LocalFamily(brain), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?", depth="quick"), ctx)
    assert "write" not in brain.seen and "review" not in brain.seen  # the local model planned only
    assert result["mode"] == "extractive" and result["support"] == 1.0
    assert result["citations"] and all(c.get("passage") for c in result["citations"])
    assert _node_steps(result) == ["plan", "search", "search", "search", "rank", "read", "write", "check", "review"]
    write = next(s for s in result["trace"] if s["step"] == "write" and s["kind"] == "node")
    assert "local model" in write["detail"] and "no model called" in write["detail"]


async def test_extractive_mode_calls_no_writer_and_abstractive_keeps_a_good_draft(corpus, tmp_path):
    llm = FakeLLM([{"queries": ["checkpoint durability"]}])
    ctx, _ = _context(tmp_path / "e", llm, _local_chain(corpus, tmp_path / "e"))
    result = await research(ResearchInput(question="checkpoints", mode="extractive"), ctx)
    assert [c.step for _, c in llm.calls] == ["plan"] and result["mode"] == "extractive"
    assert "### Search: `checkpoint durability`" in result["report"]

    good = Script(report="A checkpointer saves graph state after every step [1]. Jobs can end COMPLETED or FAILED [2].")
    ctx, _ = _context(tmp_path / "a", FunctionLLM(good), _local_chain(corpus, tmp_path / "a"))
    result = await research(ResearchInput(question="checkpoints and job states", mode="abstractive"), ctx)
    assert result["mode"] == "abstractive" and result["support"] == 1.0 and not result["unsupported_sentences"]


UNBACKED = "Checkpoints are a kind of database [1]. RunPod is fast and cheap [2]."
BACKED = "A checkpointer saves graph state after every step [1]. Jobs can end COMPLETED or FAILED [2]."


class Drafts(Script):
    """A Script whose writer answers with each of ``drafts`` in turn."""

    def __init__(self, *drafts: str) -> None:
        super().__init__()
        self.drafts = list(drafts)

    def __call__(self, messages: list[Message], config: LLMConfig) -> Any:
        if config.step in ("write", "revise"):
            self.seen.setdefault(config.step, []).append(messages)
            return self.drafts.pop(0)
        return super().__call__(messages, config)


async def test_an_abstractive_draft_nothing_backs_goes_back_with_the_checks_reasons(corpus, tmp_path):
    brain = Drafts(UNBACKED, BACKED)
    ctx, _ = _context(tmp_path, FunctionLLM(brain), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="checkpoints and job states", mode="abstractive"), ctx)
    assert len(brain.seen["review"]) == 1  # the revised draft's: no model reviewed the notice of the empty one
    revise = brain.seen["revise"][0][1].content
    assert CHECK_RULE in revise and 'removed: "Checkpoints are a kind of database.", citing [1]: only 33%' in revise
    assert result["mode"] == "abstractive" and result["support"] == 1.0 and result["review"]["status"] == "done"
    assert "saves graph state" in result["report"] and "database" not in result["report"]
    review = next(s for s in result["trace"] if s["step"] == "review" and s["kind"] == "node")
    assert "go to the writer (no model called)" in review["detail"]


async def test_an_abstractive_draft_nothing_backs_is_replaced_by_quotes_when_no_revision_is_left(corpus, tmp_path):
    brain = Drafts(UNBACKED, UNBACKED)
    ctx, _ = _context(tmp_path, FunctionLLM(brain), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?", mode="abstractive"), ctx)
    assert len(brain.seen["write"]) + len(brain.seen["revise"]) == 2 and "review" not in brain.seen
    assert result["mode"] == "extractive" and result["support"] == 1.0
    assert "saves graph state after every step [1]" in result["report"] and "database" not in result["report"]
    assert any("failed the grounding check" in w for w in result["warnings"])
    assert sum(u.get("draft") == "abstractive (replaced)" for u in result["unsupported_sentences"]) == 2

    local = Script(report=UNBACKED)  # the local model would write the same again: no revision
    ctx, _ = _context(tmp_path / "local", LocalFamily(local), _local_chain(corpus, tmp_path / "local"))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?", mode="abstractive"), ctx)
    assert len(local.seen["write"]) == 1 and "revise" not in local.seen and "review" not in local.seen
    assert result["mode"] == "extractive" and result["review"]["status"] == "skipped"
    assert result["report"] != NOTHING_SUPPORTED and _cited(result["report"])


async def test_with_no_reviewer_a_draft_nothing_backs_still_goes_back_and_an_honest_one_stays(corpus, tmp_path):
    brain = Drafts(UNBACKED, BACKED)
    ctx, _ = _context(tmp_path, FunctionLLM(brain), _local_chain(corpus, tmp_path))
    research_route = ctx.config.routing.delegation["research"]
    ctx.config.routing.delegation["research"] = research_route.model_copy(update={"reviewer": None})
    result = await research(ResearchInput(question="checkpoints and job states", mode="abstractive"), ctx)
    assert len(brain.seen["revise"]) == 1 and "review" not in brain.seen
    assert result["mode"] == "abstractive" and "saves graph state" in result["report"]
    assert result["review"]["status"] == "skipped"  # the revised draft: no reviewer configured

    honest = "The sources do not say how a run is resumed after a crash."  # states no fact: nothing to back
    brain = Drafts(honest)
    ctx, _ = _context(tmp_path / "h", FunctionLLM(brain), _local_chain(corpus, tmp_path / "h"))
    result = await research(ResearchInput(question="How is a crashed run resumed?", mode="abstractive"), ctx)
    assert "revise" not in brain.seen and result["mode"] == "abstractive"
    assert result["report"].strip() == honest


async def test_a_looping_writer_loses_its_repeats(corpus, tmp_path):
    loop = " ".join(["A checkpointer saves graph state after every step [1]."] * 5)
    ctx, _ = _context(tmp_path, FunctionLLM(Script(report=loop)), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="checkpoints", mode="abstractive"), ctx)
    assert result["report"].count("saves graph state") == 1
    assert len(result["repeats_removed"]) == 4 and any("repeated" in w for w in result["warnings"])


# --- code fences, verbatim copies, quoted loops -----------------------------------------------

CORPUS = Path(__file__).resolve().parents[1] / "bench" / "research_quality" / "corpus"
#: real READMEs with RST roles, code, link rows and lists: every sentence of them must survive
REAL_DOCS = ("websockets.txt", "idna.md", "python-dotenv.md", "portalocker.md", "backoff.txt", "tomli.md", "h11.txt")
TOMLI = {1: split_passages("Tomli is a Python library for parsing TOML. It is fully compatible with TOML v1.0.0.")}


def test_a_line_opening_with_inline_triple_backtick_code_is_checked():
    report = "```python import tomli``` Tomli was invented on Mars in 2003 [1].\nTomli is a Python library for parsing TOML [1].\n"
    result = ground(report, TOMLI)
    assert "Mars" not in result.report and "library for parsing TOML [1]" in result.report
    assert result.factual == 2 and result.supported == 1


def test_a_fence_that_never_closes_hides_nothing():
    report = (
        "Tomli is a Python library for parsing TOML [1].\n\n```python\nimport tomli\n"
        "tomli.build_a_base_on_mars(year=2003)\n\nTomli was invented on Mars in 2003 [1].\n"
    )
    kept, _ = drop_repeats(report)
    result = ground(kept, TOMLI)
    assert "```" not in result.report and "Mars" not in result.report and "build_a_base" not in result.report
    assert result.report == "Tomli is a Python library for parsing TOML [1].\n"
    assert {u["reason"] for u in result.unsupported} >= {"states a fact without citing a source"}
    closed = "Tomli is a Python library for parsing TOML [1].\n\n```python\nimport tomli\n```\n"
    assert ground(closed, TOMLI).report == closed  # a code block that closes is code, kept as it is


def test_a_sentence_copied_from_its_passage_is_always_supported():
    checked = 0
    for name in REAL_DOCS:
        for passage in split_passages((CORPUS / name).read_text(encoding="utf-8")):
            for sentence in sentences_of(passage["text"]):
                for copy in (f"{sentence} [1]", cite(sentence, 1)):
                    result = ground(copy, {1: [passage]})
                    assert not result.unsupported, (name, copy, result.unsupported)
                    checked += result.factual
    assert checked > 200  # the property was exercised on real text, not on a handful of lines


def test_rst_roles_and_code_spans_in_a_copied_sentence_are_supported():
    # "with :rfc:" once became "with:rfc:", and the quote between ``websockets`` and `6455` did not match
    passage = ("**Correctness**: ``websockets`` is heavily tested for compliance with :rfc:`6455`. "
               "Continuous integration fails under 100% branch coverage.")
    copy = "**Correctness**: ``websockets`` is heavily tested for compliance with :rfc:`6455` [3]."
    result = ground(copy, {3: split_passages(passage)})
    assert result.supported == 1 and not result.unsupported
    assert ground('It is tested for :rfc:`9999` and "never fails" [3].', {3: split_passages(passage)}).supported == 0


def test_a_verbatim_quote_of_code_or_links_is_no_loop():
    example = (
        'config = { **dotenv_values(".env.shared"), # load shared development variables '
        '**dotenv_values(".env.secret"), # load sensitive variables '
        '**dotenv_values(".env.local"), # load local variables **os.environ, }'
    )
    links = "[CI](https://ci.example/lock) [Coverage](https://ci.example/lock/cov) [PyPI](https://ci.example/lock/pypi)"
    passages = {1: split_passages(f"This notably enables:\n\n{example}\n"), 2: split_passages(links)}
    report = f"- {example} [1]\n- {links} [2]\n- It loops and loops and loops and loops and loops again [1].\n"
    kept, dropped = drop_repeats(report, passages)
    assert "dotenv_values" in kept and "ci.example/lock/pypi" in kept
    assert [d["reason"] for d in dropped] == ["repeats one phrase over and over"] and "loops again" not in kept
    assert len(drop_repeats(report)[1]) == 3  # without the passages all three are loops


def test_every_real_sentence_copied_with_its_citation_survives_the_repeat_check():
    for name in REAL_DOCS:
        for passage in split_passages((CORPUS / name).read_text(encoding="utf-8")):
            lines = [f"- {cite(s, 1)}" for s in dict.fromkeys(sentences_of(passage["text"]))]
            _, dropped = drop_repeats("\n".join(lines), {1: [passage]})
            assert not [d for d in dropped if d["reason"] == "repeats one phrase over and over"], (name, dropped)


async def test_a_weak_abstractive_draft_by_the_local_model_is_replaced_by_quotes(corpus, tmp_path):
    """Keyless abstractive: the 135M writer's few backed sentences held fewer facts than quoting
    (bench: one such report kept 0 of 4 facts). A cloud writer's weak draft is kept, checked."""
    weak = ("A checkpointer saves graph state after every step [1]. Checkpoints are a kind of database [1]. "
            "RunPod is fast and cheap [2].")
    ctx, _ = _context(tmp_path / "local", LocalFamily(Script(report=weak)), _local_chain(corpus, tmp_path / "local"))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?", mode="abstractive"), ctx)
    assert result["mode"] == "extractive" and result["support"] == 1.0
    assert any("failed the grounding check (support 0.33" in w for w in result["warnings"])
    ctx, _ = _context(tmp_path / "cloud", FunctionLLM(Script(report=weak)), _local_chain(corpus, tmp_path / "cloud"))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?", mode="abstractive"), ctx)
    assert result["mode"] == "abstractive" and "saves graph state" in result["report"]


SEARXNG = ("# SearXNG\n\nSearXNG must have JSON output enabled for the swarm to use it. Without JSON output, the instance"
           " answers HTTP 403. The rate limiter answers HTTP 429 when a client sends too many requests. Set"
           " server.limiter: false to turn the limiter off.\n")


def test_a_sentence_that_says_the_opposite_of_its_passage_is_not_backed_by_sharing_its_words():
    """A reviewer's drafts passed the check, 4 of 4 supported: "must not have JSON output enabled"
    against "must have", HTTP 429 where the passage says 403 (and 429 of the rate limiter), and
    "server.limiter: true" where it says false. Words and numbers anywhere in the passage sufficed."""
    passages = {1: split_passages(SEARXNG)}
    wrong = ["SearXNG must not have JSON output enabled for the swarm [1].",
             "Without JSON output, the SearXNG instance answers HTTP 429 [1].",
             "Set server.limiter: true to turn the SearXNG limiter off [1]."]
    right = ["SearXNG must have JSON output enabled for the swarm [1].",
             "Without JSON output, the SearXNG instance answers HTTP 403 [1].",
             "The rate limiter answers HTTP 429 when a client sends too many requests [1]."]
    checked = ground(" ".join(wrong + right), passages)
    removed = {u["sentence"]: u for u in checked.unsupported}
    assert set(removed) == {w.removesuffix(" [1].") + "." for w in wrong}, removed
    assert all(u.get("undecided") for u in removed.values())  # a reviewer may settle each; none: removed
    for sentence in right:
        assert sentence in checked.report, checked.report
    assert "opposite" in next(u["reason"] for s, u in removed.items() if "must not" in s)
    assert "429 of something else" in next(u["reason"] for s, u in removed.items() if "429" in s)
    assert "another value than true" in next(u["reason"] for s, u in removed.items() if "true" in s)


def test_a_marker_keeps_only_the_sources_that_back_its_sentence():
    """"[1-5]" of a sentence one source backs listed all five as cited; the page of a source it
    named said no passage of it backs a sentence of the report."""
    report = ("When a model fails, the router tries the next model of the fallback chain [1-2]. "
              "The local index ranks documents with BM25 [2, 1].\n")
    checked = ground(report, PASSAGES)
    assert "the next model of the fallback chain [1]." in checked.report, checked.report
    assert "ranks documents with BM25 [2]." in checked.report
    assert checked.support == 1.0


def test_a_question_or_lead_in_stating_a_number_no_source_holds_goes():
    """A lead-in ("... after 90 days, as follows:") and a question ("... for 5 days?") are no
    claims, and stated numbers no source holds; the check let them through."""
    report = ("When a model fails, the router tries the next model of the fallback chain [1].\n\n"
              "The router deletes its logs after 90 days, as follows:\n\n- A circuit opens after 3 failures [1].\n\n"
              "Why does the router wait for 5 days? What does a circuit do after 3 failures?\n")
    checked = ground(report, PASSAGES)
    assert "90 days" not in checked.report and "5 days" not in checked.report, checked.report
    assert "What does a circuit do after 3 failures?" in checked.report  # its number is the source's
    reasons = [u["reason"] for u in checked.unsupported]
    assert "states '90', which no source holds" in reasons and "states '5', which no source holds" in reasons


def test_the_contradiction_check_keeps_what_the_title_holds_and_reads_curly_denials():
    """A number only the source's title or heading holds ("Python 3.12") made its sentence
    undecided; "mustn’t" with a curly apostrophe passed against "must"; and a remark that the
    sources lack something ("... mentions LangGraph 0.6.") was removed for naming what they lack."""
    passages = {1: split_passages("# What's new\n\nThe release removes the distutils package from the standard"
                                  " library. SearXNG must have JSON output enabled.\n")}
    checked = ground("Python 3.12 removes the distutils package from the standard library [1]. "
                     "SearXNG mustn’t have JSON output enabled [1]. "
                     "None of the sources found mentions LangGraph 0.6.\n", passages, titles={1: "Python 3.12"})
    assert "Python 3.12 removes the distutils package" in checked.report, checked.unsupported
    assert "mustn’t" not in checked.report
    assert "None of the sources found mentions LangGraph 0.6." in checked.report


async def test_a_draft_with_no_factual_sentence_is_said_as_such(corpus, tmp_path):
    """A written draft with no factual sentence (markup, a bare heading) was warned about as "support
    0.00, 0 of 0 factual sentences ... the draft's sentences are in unsupported_sentences", which was empty."""
    from test_research_graph import Script, _context, _local_chain

    from graphs.research.action import ResearchInput, research
    from providers.testing import FunctionLLM

    brain = Script(report="## Heading only", reviews=[{"approved": True, "issues": []}])
    ctx, _ = _context(tmp_path, FunctionLLM(brain), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="How do LangGraph checkpoints resume a run?", mode="abstractive"), ctx)
    assert result["unsupported_sentences"] == []
    assert ("the written draft failed the grounding check (no factual sentence in it); the report quotes the sources"
            " instead") in result["warnings"], result["warnings"]
