"""A research follow-up's thread context: an earlier report longer than the planner's budget is
shortened, not dropped with its question, so "How long does it stay open?" is planned knowing what
"it" was; turns that fit stay whole; the trace says what was shortened or left out."""

from __future__ import annotations

from typing import Any

from graphs.research.action import PLAN_CONTEXT_CHARS, ResearchInput, _thread_context, research
from graphs.turns import Turn
from providers.testing import FunctionLLM

SHORTENED_MARK = " [shortened]"  # graphs.research.thread_context.SHORTENED_MARK

THREAD = "thr-" + "c" * 32
QUESTION = "What does the circuit breaker do in runpod-swarm?"
IN_SHORT = ("The circuit breaker stops calling a provider after 3 failures in a row [1]. "
            "It stays open for 60 seconds, then lets one trial call through [2].")


def long_report(chars: int = 3000) -> str:
    """A research report of ``chars`` characters: a short "In short" section, then long quotes."""
    head = f"## In short\n\n- {IN_SHORT.split(' [1]. ')[0]} [1].\n- {IN_SHORT.split(' [1]. ')[1]}\n\n## What the sources say\n\n"
    body = "### " + QUESTION + "\n\n"
    filler = "- The breaker keeps a count of failures per provider and model, and resets it on success [3].\n"
    while len(head) + len(body) + len(filler) < chars:
        body += filler
    report = head + body
    return report + "x" * (chars - len(report))


def follow_up(history: list[dict[str, Any]]) -> ResearchInput:
    return ResearchInput.model_validate({"question": "How long does it stay open?", "thread_id": THREAD,
                                         "history": history})


def test_a_3000_char_earlier_report_is_shortened_and_its_question_kept() -> None:
    report = long_report()
    assert len(report) == 3000
    out = _thread_context(follow_up([{"n": 1, "role": "user", "content": QUESTION},
                                     {"n": 2, "role": "assistant", "model": "research", "content": report}]), 24_000)
    lines = out["context"].splitlines()
    assert lines[0] == f"user: {QUESTION}"  # the question the follow-up's "it" refers to
    assert lines[1] == f"research: {IN_SHORT}{SHORTENED_MARK}"  # the report's "In short", marked
    assert "What the sources say" not in out["context"]
    assert sum(len(line.split(": ", 1)[1]) for line in lines) <= PLAN_CONTEXT_CHARS
    shortened = len(lines[1]) - len("research: ")
    assert out["trace"][0]["detail"] == (f"thread {THREAD}: turns 1-2 in the prompt; turn 2 shortened to {shortened}"
                                         f" of 3000 characters (the planner's {PLAN_CONTEXT_CHARS} characters)")


def test_turns_that_fit_stay_whole_the_next_answer_and_its_question_share_the_rest() -> None:
    history = [{"n": n, "role": "user" if n % 2 else "assistant", "model": None if n % 2 else "model-x",
                "content": f"turn {n} " + "x" * 393} for n in range(3, 7)]
    out = _thread_context(follow_up(history), 1000)
    lines = out["context"].splitlines()
    assert [line[:16] for line in lines] == ["user: turn 3 xxx", "model-x: turn 4 ", "user: turn 5 xxx", "model-x: turn 6 "]
    assert lines[2] == f"user: turn 5 {'x' * 393}" and lines[3] == f"model-x: turn 6 {'x' * 393}"  # whole
    # the 200 left: the answer shortened, and its question, which no longer fits whole, into a third
    # (an answer is never shown without what it answered)
    assert lines[1].endswith("x…" + SHORTENED_MARK) and len(lines[1]) - len("model-x: ") == 134
    assert lines[0].endswith("x…" + SHORTENED_MARK) and len(lines[0]) - len("user: ") == 66
    assert out["trace"][0]["detail"] == (f"thread {THREAD}: turns 3-6 in the prompt; turns 1-2 dropped earlier"
                                         " (threads.max_turns); turn 3 shortened to 66 of 400 characters"
                                         " (threads.max_chars=1000); turn 4 shortened to 134 of 400 characters"
                                         " (threads.max_chars=1000)")


def test_the_newest_exchange_first_then_older_turns_in_what_is_left() -> None:
    from graphs.turns import fit

    turns = [Turn(n=1, role="user", content="old question"),
             Turn(n=2, role="assistant", model="research", content=long_report()),
             Turn(n=3, role="user", content=QUESTION),
             Turn(n=4, role="assistant", model="research", content=long_report())]
    fitted = fit(turns, 2000)
    assert [(t.n, shortened) for t, _, shortened in fitted.kept] == [(1, False), (2, True), (3, False), (4, True)]
    assert sum(len(text) for _, text, _ in fitted.kept) <= 2000
    # the newest answer cut to the room its question leaves (at a sentence end); the older answer
    # has too little room even shortened: left out, its question kept
    small = fit(turns, 200)
    assert [(t.n, shortened) for t, _, shortened in small.kept] == [(1, False), (3, False), (4, True)]
    assert small.kept[2][1] == IN_SHORT.split(" It stays")[0] + SHORTENED_MARK
    assert [t.n for t in small.left_out] == [2] and sum(len(text) for _, text, _ in small.kept) <= 200


def test_the_question_is_kept_when_its_answer_has_no_room_even_shortened() -> None:
    from graphs.turns import fit

    turns = [Turn(n=1, role="user", content=QUESTION), Turn(n=2, role="assistant", content="y" * 3000)]
    fitted = fit(turns, len(QUESTION) + 20)
    assert [(t.n, text) for t, text, _ in fitted.kept] == [(1, QUESTION)]
    assert [t.n for t in fitted.left_out] == [2]


def test_an_answer_without_in_short_is_cut_at_a_sentence_or_word_end() -> None:
    from graphs.turns import SHORTENED_MARK as MARK
    from graphs.turns import shorten

    assert MARK == SHORTENED_MARK
    answer = "First sentence here. " * 20
    cut = shorten(answer, 100)
    assert cut.endswith("here." + SHORTENED_MARK) and len(cut) <= 100
    words = shorten("word " * 100, 100)
    assert words.endswith("word…" + SHORTENED_MARK) and len(words) <= 100
    assert shorten(answer, 10) == ""  # too little room: left out


def test_one_turn_dropped_earlier_is_named_as_one() -> None:
    # an odd threads.max_turns leaves a thread starting at turn 2: the trace said "turns 1-1"
    from graphs.turns import Turn, thread_trace_step

    turns = [Turn(n=2, role="assistant", model="m", content="an answer"), Turn(n=3, role="user", content="more")]
    detail = thread_trace_step(THREAD, turns, "turns 2-3", [])["detail"]
    assert detail == f"thread {THREAD}: turns 2-3 in the prompt; turn 1 dropped earlier (threads.max_turns)"


def test_an_answer_that_fits_whole_keeps_room_for_its_question() -> None:
    # the answer fit whole and left 30 characters: too few to shorten its question, which was left
    # out, so the kept turns opened with the assistant
    from graphs.turns import fit

    turns = [Turn(n=1, role="user", content="q" * 100), Turn(n=2, role="assistant", content="a" * 90)]
    for keep_lines in (False, True):
        fitted = fit(turns, 120, keep_lines=keep_lines)
        assert [(t.n, shortened) for t, _, shortened in fitted.kept] == [(1, True), (2, True)]
        assert fitted.left_out == [] and sum(len(text) for _, text, _ in fitted.kept) <= 120
    # room for the question shortened: the answer stays whole
    fitted = fit(turns, 150)
    assert [(t.n, text == "a" * 90) for t, text, _ in fitted.kept] == [(1, False), (2, True)]


def test_fit_never_passes_its_budget_nor_keeps_an_answer_without_its_question() -> None:
    import random

    from graphs.turns import fit

    pieces = ["a", "bb ", "c.", "\n", "```\n", "```py\n", "~~~\n", "  ", "## In short\n", "- x\n", "é",
              "end. ", "````\n", "word "]
    rng = random.Random(1)
    for _ in range(3000):
        turns = [Turn(n=n, role="user" if n % 2 else "assistant",
                      content="".join(rng.choice(pieces) for _ in range(rng.randint(1, 120))))
                 for n in range(rng.randint(1, 3), rng.randint(3, 8))]
        budget = rng.randint(20, 600)
        for keep_lines in (False, True):
            fitted = fit(turns, budget, keep_lines=keep_lines)
            assert sum(len(text) for _, text, _ in fitted.kept) <= budget, (turns, budget, keep_lines)
            kept = {t.n for t, _, _ in fitted.kept}
            users = {t.n for t in turns if t.role == "user"}
            for t, _, _ in fitted.kept:
                if t.role == "assistant" and t.n - 1 in users:
                    assert t.n - 1 in kept, (turns, budget, keep_lines)


def test_a_dropped_range_is_named_without_listing_its_turns() -> None:
    # turn n came from the job input, unbounded: its dropped turns were built as a list of n - 1
    # numbers (n=10**7 took 0.8 s and 490 MB)
    from graphs.turns import fit, thread_step

    turns = [Turn(n=10**12, role="user", content="x")]
    detail = thread_step(THREAD, turns, fit(turns, 1000), "lim")["detail"]
    assert detail == (f"thread {THREAD}: turn 1000000000000 in the prompt;"
                      " turns 1-999999999999 dropped earlier (threads.max_turns)")
    turns = [Turn(n=3, role="user", content="x")]
    assert "; turns 1-2 dropped earlier" in thread_step(THREAD, turns, fit(turns, 1000), "lim")["detail"]


def test_a_cut_code_block_is_closed_by_its_own_fence_nested_fences_read_as_code() -> None:
    from graphs.turns import shorten

    # ``` lines inside a four-backtick block are code: the outer block is the one closed
    nested = shorten("Here:\n````\n```\ninner\n```\n" + "y\n" * 40 + "````\n", 70, keep_lines=True)
    assert nested.endswith("y\n````\n[shortened]") and len(nested) <= 70
    # ~~~ inside a ``` block is code too
    tildes = shorten("Run:\n```\n~~~\nnot a fence\n~~~\n" + "z\n" * 40 + "```\n", 70, keep_lines=True)
    assert tildes.endswith("z\n```\n[shortened]") and len(tildes) <= 70
    # a closer longer than its opener closes it: the prose after it needs no fence
    longer = shorten("```\ncode\n`````\n" + "More prose here. " * 10, 70, keep_lines=True)
    assert longer.endswith("here.\n[shortened]") and "`````\n" in longer and len(longer) <= 70
    # a shorter one does not: it is code, and the block is closed with its opener's mark
    shorter = shorten("````\ncode\n```\n" + "w\n" * 40, 60, keep_lines=True)
    assert shorter.endswith("w\n````\n[shortened]") and len(shorter) <= 60


async def test_a_follow_up_without_a_plan_searches_with_its_earlier_questions_words(tmp_path) -> None:
    """Keyless, the planner's answer to "When did he leave the project?" was unusable, so "he"
    searched for nothing: the top source, which says "he left the project in 2023", was called
    no answer ("None of the sources found mentions leave"), and "Who maintains it now?" opened
    with the parser's maintainer, not the renderer's."""
    from test_research_graph import Script, _context, _local_chain

    from graphs.research.nodes import with_antecedent
    from graphs.research.subjects import Vocabulary

    assert with_antecedent("When did he leave the project?", "Who wrote the Quillmark HTML renderer?") == \
        "When did he leave the project? wrote quillmark html renderer"
    assert with_antecedent("How are checkpoints saved?", "What is LangGraph?") == "How are checkpoints saved?"
    assert Vocabulary.of(["he left the project in 2023"]).says("leave")

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "team.md").write_text(
        "# Who builds Quillmark\n\nAlice Moreno wrote the Markdown parser and maintains it. Bob Tanaka wrote the"
        " HTML renderer; he left the project in 2023 and the renderer is now maintained by Chen Wei.\n",
        encoding="utf-8")
    (corpus / "other.md").write_text("# Project notes\n\nThis project keeps its notes in one folder.\n", encoding="utf-8")
    history = [{"n": 1, "role": "user", "content": "Who wrote the Quillmark HTML renderer?"},
               {"n": 2, "role": "assistant", "model": "research", "content": "Bob Tanaka wrote the HTML renderer [1]."}]
    ctx, _ = _context(tmp_path, FunctionLLM(Script(plan="no JSON here")), _local_chain(corpus, tmp_path))
    inp = ResearchInput.model_validate({"question": "When did he leave the project?", "thread_id": THREAD,
                                        "history": history, "mode": "extractive"})
    out = await research(inp, ctx)
    assert out["queries"][0] == "When did he leave the project? wrote quillmark html renderer"
    opening = out["report"].split("## What the sources say")[0]
    assert "he left the project in 2023" in opening and "do not answer" not in out["report"], out["report"]


async def test_a_delegate_of_kind_research_keeps_its_tier_and_its_thread(corpus, tmp_path) -> None:
    """``swarm delegate ... --kind research --tier fast`` walked the default chain (the tier was
    dropped on the way to research), and a follow-up in a thread was planned without its turns."""
    from test_research_graph import Script, _context, _local_chain

    from graphs.delegation.action import DelegateInput, delegate

    brain = Script()
    ctx, _ = _context(tmp_path, FunctionLLM(brain), _local_chain(corpus, tmp_path))
    history = [Turn(n=1, role="user", content=QUESTION), Turn(n=2, role="assistant", content=IN_SHORT)]
    inp = DelegateInput(task="How long does it stay open?", kind="research", tier="fast", thread_id=THREAD,
                        history=history)
    out = await delegate(inp, ctx)
    assert out["thread_id"] == THREAD and out["text"]
    tiers = {step: {c.tier for c in configs} for step, configs in brain.configs.items()}
    assert tiers["plan"] == {"fast"} and tiers["write"] == {"fast"} and tiers["review"] == {"fast"}, tiers
    planned = " ".join(m.content for m in brain.seen["plan"][0])
    assert "circuit breaker" in planned  # the thread's earlier turn reached the planner
    assert any(s["step"] == "thread" for s in out["trace"])
