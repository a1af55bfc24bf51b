"""The extractive report on its own: the question always has the first section, junk
sub-queries make none, and no sentence of the report ever names two sources."""

from __future__ import annotations

import re

from graphs.research.citations import CITE_MARKER, marker_ids, split_sentences
from graphs.research.extractive import NO_ANSWER, NO_SHORT_ANSWER, extractive_report
from graphs.research.grounding import ground
from graphs.research.nodes import parse_plan
from graphs.research.passages import split_passages
from graphs.research.queries import junk_form, junk_reason, useful_sub_queries
from graphs.research.quoting import flatten, opening_floor

QUESTION = "Which queue types does Tinyq provide, and does it need a C compiler?"
TINYQ = (
    "# Tinyq\n\nTinyq is a small queue library for Python.\n\n"
    "## Installing\n\nInstall it with pip; Tinyq is written in pure Python and needs no C compiler.\n\n"
    "## Types\n\nTinyq provides three queue types: FifoQueue, LifoQueue and PriorityQueue, each safe to share between threads.\n\n"
    "## License\n\nTinyq is released under the MIT license by its authors.\n"
)
OTHER = "# Bigq\n\nBigq stores queues in Redis so that several machines can share them.\n"
PASSAGES = {"1": split_passages(TINYQ), "2": split_passages(OTHER)}
SOURCES = [{"id": 1, "snippet": ""}, {"id": 2, "snippet": ""}]
JUNK = ["SELECT * FROM Tinyq", "Tinyq." * 30, "Tinyq queue types", "Tinyq queue types provide"]


def _sections(report: str) -> dict[str, str]:
    """Section title (a sub-query's ``Search: `...``` unwrapped) -> its body."""
    def title(line: str) -> str:
        line = line.strip()
        return line.removeprefix("Search: `").removesuffix("`") if line.startswith("Search: `") else line
    return {title(part.split("\n", 1)[0]): part.split("\n", 1)[1] for part in report.split("### ")[1:]}


def test_junk_sub_queries_are_told_apart_from_real_ones():
    assert junk_form("SELECT * FROM SortedContainers") and junk_form("config = dotenv_values('.env')")
    assert junk_form("SortedContainers." * 12) and junk_form("x" * 60)
    # the bundled planner's runaway phrases; a search with a few version numbers is a search
    assert junk_form("usage: 10.0, 2.0, 3.0, 4.0, 5.0, 6.0") == "it is mostly numbers, not a search phrase"
    assert junk_form("python 3.11 vs 3.12") is None
    assert junk_reason("Tinyq queue types", QUESTION) == "it adds no word to the question"
    assert junk_reason("Tinyq license terms", QUESTION, ["the tinyq LICENSE terms"]) is not None
    for fine in ("Tinyq license", "uvicorn[standard] extras", "HTTP/2 support in httpx", "Python 3.11 tomllib"):
        assert junk_form(fine) is None, fine
    assert useful_sub_queries(QUESTION, [*JUNK, "Tinyq license", "tinyq LICENSE"]) == ["Tinyq license"]


SORTED = "Which sorted collection types does Sorted Containers provide, and is it written in C?"
BACKOFF = "When does the backoff decorator give up retrying a function?"


def test_a_sub_query_that_re_spells_the_question_is_refused_whatever_its_spelling():
    """The stems "sorted" (of "SortedContainers") and "sort" (of "sorted") differ, so a glued name,
    a typo or one made-up word took the question again as a sub-query with a section of its own."""
    assert junk_reason("C:SortedContainers", SORTED) == "it adds no word to the question"  # the bundled planner's, depth standard
    assert junk_reason("SortedContainers types", SORTED) == "it adds no word to the question"
    assert junk_reason("sorted containers provide collection types writen C", SORTED) == "it adds no word to the question"
    assert junk_reason("work asyncio.gahter", "How does asyncio.gather work?") == "it adds no word to the question"
    assert junk_reason("retyring function backoff decorator gives up foo", BACKOFF) == "it repeats the question in other words"
    assert junk_reason("tinyq licence terms", QUESTION, ["Tinyq license terms"]) == "it repeats the sub-query 'Tinyq license terms'"
    # what a sub-query is for: a narrower search, with a word the question lacks
    for question, fine in [(SORTED, "SortedList SortedDict SortedSet"), (SORTED, "Sorted Containers pure Python"),
                           (SORTED, "sortedcontainers C extension"), (BACKOFF, "backoff max_tries max_time"),
                           (BACKOFF, "backoff on_exception giveup"), ("How does asyncio.gather work?", "asyncio.gather exceptions"),
                           ("Does httpx have a sync API?", "httpx async API"), ("What is DiskCache?", "DiskCache Django"),
                           (QUESTION, "Tinyq license"), (QUESTION, "tinyq thread safety")]:
        assert junk_reason(fine, question) is None, fine
    assert useful_sub_queries(QUESTION, ["Tinyq license terms", "tinyq licence terms", "tinyq queuetypes provde compilers needed xyz"]
                              ) == ["Tinyq license terms"]


REDIRECTS = "How does httpx handle redirects?"


def test_a_short_question_plus_a_word_that_narrows_nothing_is_no_sub_query():
    """A three-word question and its three words plus one more share 0.75 < NEAR_DUPLICATE: with
    "guide" (or a part of the question's own name) that one more word made a section of the
    question's passages again; with a word that narrows the search it is a sub-query."""
    for filler in ("httpx handle redirects guide", "httpx redirects handling tutorial examples",
                   "best way httpx handles redirects", "httpx handle redirects documentation overview"):
        assert junk_reason(filler, REDIRECTS) == "it adds no word to the question", filler
    # a part of a name the question writes glued ("DiskCache"): implied, not new
    assert junk_reason("DiskCache cache", "What is DiskCache?") == "it adds no word to the question"
    assert junk_reason("SortedContainers containers", "How fast is SortedContainers?") == "it adds no word to the question"
    for narrower in ("httpx handle redirects cookies", "httpx handle redirects HTTP/2", "httpx 0.28 handle redirects",
                     "DiskCache Django", "httpx redirect history"):
        assert junk_reason(narrower, REDIRECTS if "httpx" in narrower else "What is DiskCache?") is None, narrower
    # a part only where the question shows it (a capital inside the word): "sync" is no part of "async"
    assert junk_reason("httpx sync API", "Does httpx have an async API?") is None
    assert useful_sub_queries(REDIRECTS, ["httpx handle redirects guide", "httpx handle redirects cookies"]) == [
        "httpx handle redirects cookies"]


def test_a_noun_made_from_the_question_verb_is_a_new_word_and_plurals_and_tenses_are_not():
    """"requirement" and "require" (also "performance" and "perform") share the stem "requir": a
    sub-query searching for the noun counted as the question's verb again and was refused."""
    numpy = "Which Python version does numpy 2.0 require?"
    assert junk_reason("numpy 2.0 build requirements", numpy) is None
    assert junk_reason("numpy 2.0 requirements", numpy) is None
    assert junk_reason("httpx performance", "Does httpx perform retries?") is None
    # the other way round: the question has the noun, the sub-query the verb
    assert junk_reason("uvicorn standard require", "What are the requirements of uvicorn[standard]?") is None
    assert junk_reason("httpx perform retries", "How is httpx performance?") is None
    # the plurals and tenses the rule is for are still the question's own words
    assert junk_reason("numpy 2.0 python versions required", numpy) == "it adds no word to the question"
    assert junk_reason("numpy 2.0 requiring Python", numpy) == "it adds no word to the question"
    assert junk_reason("uvicorn requirement standard", "What are the requirements of uvicorn[standard]?"
                       ) == "it adds no word to the question"
    assert junk_reason("configurations of uvicorn", "Which configuration does uvicorn read?") == "it adds no word to the question"
    assert junk_reason("mentioned tinyq", "Is tinyq mentions?") == "it adds no word to the question"
    assert junk_reason("httpx handling redirect", REDIRECTS) == "it adds no word to the question"  # stem: handle, handl

def test_a_re_spelt_question_makes_no_section_of_its_own():
    report = extractive_report(QUESTION, ["tinyq queuetypes provde compilers needed xyz", "Tinyq license"], SOURCES, PASSAGES)
    assert list(_sections(report)) == [QUESTION, "Tinyq license"], report


def test_the_plan_drops_code_and_repeated_words_before_searching():
    text = '{"queries": ["SELECT * FROM Tinyq", "' + "Tinyq." * 30 + '", "Tinyq license"]}'
    assert parse_plan(text, QUESTION, 3) == (["Tinyq license"], None)
    assert parse_plan('{"queries": ["SELECT * FROM Tinyq"]}', QUESTION, 3) == ([], "the planner proposed no usable query")


def test_the_question_gets_the_first_section_even_when_the_plan_is_junk():
    report = extractive_report(QUESTION, JUNK, SOURCES, PASSAGES)
    sections = _sections(report)
    assert list(sections) == [QUESTION]  # no section for any junk sub-query
    assert "SELECT" not in report and "Tinyq.Tinyq" not in report
    answer = sections[QUESTION]
    assert "FifoQueue, LifoQueue and PriorityQueue" in report and "no C compiler" in report
    assert "FifoQueue" in answer or "FifoQueue" in report.split("## What the sources say")[0]


def test_the_question_is_answered_before_any_sub_question():
    # the sub-question ranks the types passage first too; the question's section quotes it
    report = extractive_report(QUESTION, ["PriorityQueue threads", "Tinyq license"], SOURCES, PASSAGES, per_query=1)
    sections = _sections(report)
    assert list(sections) == [QUESTION, "PriorityQueue threads", "Tinyq license"]
    assert "PriorityQueue" in sections[QUESTION] + report.split("## What the sources say")[0]
    assert "MIT license" in sections["Tinyq license"]
    checked = ground(report, {int(k): v for k, v in PASSAGES.items()})
    assert checked.support == 1.0 and not checked.unsupported


def test_no_sentence_of_the_report_names_two_sources():
    # source 1's best sentence ends without a full stop (an RST link target), source 2's starts
    # in lower case: joined on one line the splitter would make them one sentence citing [1] ... [2]
    passages = {
        "1": split_passages("The queue types of Tinyq are listed in `the queue docs <https://tinyq.example/queues>`_"),
        "2": split_passages("queue types differ in Tinyq: PriorityQueue pops the smallest item first …"),
    }
    report = extractive_report("Which queue types does Tinyq have?", [], SOURCES, passages)
    opening = report.split("## What the sources say")[0]
    assert opening.startswith("## In short") and "[1]" in opening and "[2]" in opening
    for line in report.splitlines():
        for sentence in split_sentences(re.sub(r"^\s*-\s+", "", line)):
            ids = {i for m in CITE_MARKER.finditer(sentence) for i in marker_ids(m.group(1))}
            assert len(ids) <= 1, sentence
    checked = ground(report, {int(k): v for k, v in passages.items()})
    assert checked.support == 1.0 and not checked.unsupported
    assert "## In short" in checked.report and checked.report.count("[1]") >= 1 and checked.report.count("[2]") >= 1



LOCKS = (
    "# Locks\n\nWhen another holder has the lock, AlreadyLocked lets Locky callers handle contention.\n\n"
    "```python\nimport locky\n\nwith locky.Lock('worker.lock', timeout=1):\n    print('The first holder.')\n```\n\n"
    "The second Locky holder cannot enter while the first holds the lock.\n"
)
LOCKS_QUESTION = "Can a second Locky holder enter while the lock is held?"


def test_a_passage_that_starts_inside_code_quotes_it_as_code_not_as_an_uncited_sentence():
    # max_chars splits at the blank line inside the fence: the second passage starts in the code
    passages = split_passages(LOCKS, max_chars=120)
    inside = [p for p in passages if p["text"].startswith("with locky")]
    assert len(inside) == 1 and inside[0].get("code_open") is True
    assert not any(p.get("code_open") for p in passages if p is not inside[0])
    report = extractive_report(LOCKS_QUESTION, [], [{"id": 1, "snippet": ""}], {"1": passages})
    assert "The second Locky holder cannot enter" in report
    for line in report.splitlines():
        if "with locky.Lock" in line:  # the code is one inline code span: the fence it lacked is added
            assert "``` with locky.Lock" in line and line.count("```") % 2 == 0
    checked = ground(report, {1: passages})
    assert not [u for u in checked.unsupported if not u["source_ids"]]  # no sentence without its [n]
    assert checked.support == 1.0


def test_fences_of_tildes_longer_marks_and_an_unclosed_fence_are_read_as_markdown_does():
    text = ("Intro about Locky.\n\n~~~\nlocky.run()\n\n```\nstill code\n~~~\n\n"
            "Prose between.\n\n````\n```\n\ncode line here\n````\n\nMore prose.\n\n```\nopen()\n\nnever closed()\n")
    passages = split_passages(text, max_chars=20)
    inside = {p["text"].split("\n")[0]: p["code_fence"] for p in passages if p.get("code_open")}
    assert inside == {"```": "~~~", "code line here": "````", "never closed()": "```"}
    assert {p["text"] for p in passages if not p.get("code_open")} >= {"Intro about Locky.", "Prose between.", "More prose."}


def test_a_passage_inside_a_tilde_or_four_backtick_fence_gets_that_fence_so_its_close_matches():
    for fence in ("~~~", "````"):
        text = f"Locky locks files.\n\n{fence}\nlocky.acquire()\n\nlocky.release()\n{fence}\n\nLocky releases locks on exit.\n"
        passages = split_passages(text, max_chars=40)
        (inside,) = [p for p in passages if p.get("code_open")]
        flat = flatten(inside["text"], inside["code_fence"])
        assert flat.startswith(f"{fence} locky.release()") and flat.count(fence) == 2, flat
        report = extractive_report("How does Locky release locks?", [], [{"id": 1, "snippet": ""}], {"1": passages})
        quoted = [line for line in report.splitlines() if "locky.release()" in line]
        assert quoted and all(line.count(fence) % 2 == 0 for line in quoted), report


def test_the_opening_says_the_sources_do_not_answer_when_no_sentence_shares_enough_of_the_question():
    """BM25 ranked a passage sharing one word ("queue") first and its best sentence opened the
    report as the answer; a sentence must share two of a longer question's terms (30% of a long one's)."""
    off_topic = "When will Bigq add a queue dashboard, and how are its release notes written?"
    report = extractive_report(off_topic, [], SOURCES, PASSAGES)
    assert report.split("## What the sources say")[0].strip() == f"## In short\n\n{NO_SHORT_ANSWER}"
    answered = extractive_report(QUESTION, [], SOURCES, PASSAGES)
    assert NO_ANSWER not in answered and "FifoQueue" in answered.split("## What the sources say")[0]
    assert opening_floor({"queue"}) == opening_floor(set("abc")) == 1
    assert opening_floor(set("abcde")) == 2 and opening_floor(set("abcdefghij")) == 3


def test_a_passage_that_ends_inside_a_code_block_is_quoted_with_its_fence_closed():
    """portalocker's README: a passage cut inside a code block was quoted as "...failures:
    ```python import portalocker [1]." and the unclosed fence hid the report's Sources section."""
    text = "Handle contention separately from other failures:\n\n```python\nimport portalocker\n"
    assert flatten(text) == "Handle contention separately from other failures: ``` import portalocker ```"
    assert flatten("Run it:\n\n```console\npip install x\n```\n\nDone.") == "Run it: ``` pip install x ``` Done."


def test_a_sentence_under_a_heading_that_names_the_question_opens_the_report():
    """"What does a circuit breaker do in Relayd?": the answer's own sentence says only "circuit";
    its heading says "Circuit breakers". Before, the floor (two of the question's words) let only
    the overview's "Relayd is a ..." sentence open the report."""
    docs = (
        "# Relayd\n\nRelayd is a small message relay that runs as a daemon.\n\n"
        "## Circuit breakers\n\nA backend that fails three times in a row is skipped for a while; then one probe "
        "call is let through, and its success closes the circuit.\n"
    )
    report = extractive_report("What does a circuit breaker do in Relayd?", [], [{"id": 1, "snippet": ""}],
                               {"1": split_passages(docs)})
    opening = report.split("## What the sources say")[0]
    first = [line for line in opening.splitlines() if line.startswith("- ")][0]
    assert "closes the circuit" in first, report
    # a heading alone never carries a sentence that says none of the question's words
    unrelated = "# Relayd\n\n## Circuit breakers\n\nSee the config reference for the numbers.\n"
    quiet = extractive_report("What does a circuit breaker do?", [], [{"id": 1, "snippet": ""}], {"1": split_passages(unrelated)})
    assert "See the config reference" not in quiet.split("## What the sources say")[0]


def test_a_quote_that_starts_by_pointing_back_brings_the_sentence_it_points_to():
    """Keyless, truststore's report opened with "This means that Python applications no longer
    need to rely on certifi as a root certificate store [1]": what "this" is stood in the sentence
    before, which was not quoted."""
    doc = ("# Storey\n\nStorey reads the operating system's own certificate store. This means that "
           "Python programs no longer need certifi for root certificates.\n\n"
           "## Other\n\nStorey logs each lookup. However, lookups of certificates stay cached for an hour.\n")
    passages = {"1": split_passages(doc)}
    report = extractive_report("Do Python programs still need certifi for root certificates?", [], [{"id": 1, "snippet": ""}],
                               passages)
    short = report.split("## What the sources say")[0]
    assert ("- Storey reads the operating system's own certificate store [1]. This means that Python programs"
            " no longer need certifi for root certificates [1].") in short, report
    section = extractive_report("How long do certificate lookups stay cached?", [], [{"id": 1, "snippet": ""}], passages)
    assert "Storey logs each lookup [1]. However, lookups of certificates stay cached for an hour [1]." in section, section
    # both sentences of each quote are held against the passage they cite
    grounded = ground(report, {1: passages["1"]})
    assert grounded.supported == grounded.factual


def test_badges_a_quoted_sentence_starts_with_are_left_out():
    """A README's first line of linked badge images has no sentence end, so the splitter joins it to
    the sentence after it: quoted, the opening began with two image links."""
    doc = ("[![PyPI](https://img.shields.io/pypi/v/storey)](https://pypi.org/project/storey) "
           "[![CI](https://ci.example/storey/badge.svg?branch=main)](https://ci.example/storey) "
           "Storey reads the operating system's own certificate store.\n")
    passages = {"1": split_passages(doc)}
    report = extractive_report("Which certificate store does Storey read?", [], [{"id": 1, "snippet": ""}], passages)
    assert "- Storey reads the operating system's own certificate store [1]." in report and "shields" not in report, report
    grounded = ground(report, {1: passages["1"]})
    assert grounded.factual and grounded.supported == grounded.factual


def test_the_opening_quotes_only_sources_about_the_question_not_another_readme_that_shares_its_common_words():
    """The research quality bench: of 19 opening sentences 6 cited no gold source; the second was
    the top passage of the second source in BM25's order, another library's README sharing "python",
    "library" and "install" with the question (xxhash's question opened with truststore's warning)."""
    xx = "# xxhash\n\nxxhash is a Python binding for the xxHash library by Yann Collet. Install it with pip.\n"
    other = "# Storey\n\nStorey is a Python library; install it with pip and every library uses it.\n"
    passages = {"1": split_passages(other), "2": split_passages(xx)}
    sources = [{"id": 1, "snippet": ""}, {"id": 2, "snippet": ""}]
    report = extractive_report("What is the xxhash Python library a binding for, and how do I install the library?", [],
                               sources, passages)
    short = report.split("## What the sources say")[0]
    assert "xxhash is a Python binding for the xxHash library by Yann Collet [2]." in short, report
    assert "Storey" not in short


def test_a_sentence_a_quote_carried_as_its_lead_does_not_open_a_second_line():
    """"It loads ..." opened with its lead "PyYAML is ..."; the lead, a good sentence of its own,
    was then added as a second line: the opening said the same sentence twice."""
    yaml = "PyYAML is a library for parsing YAML in Python. It loads YAML documents safely with safe_load."
    report = extractive_report("Is the official module for parsing yaml files safe?", [], SOURCES[:1],
                               {"1": split_passages(yaml)})
    opening = report.split("## What")[0]
    assert opening.count("PyYAML is a library for parsing YAML in Python [1].") == 1, report
    assert "It loads YAML documents safely with safe_load [1]." in opening


def test_another_readme_that_says_the_question_common_words_but_not_its_subject_does_not_open_the_report():
    """The research quality bench: uvicorn's question opened with MCP's "The `cli` extra adds ...": MCP's
    README says "install", "add", "standard" and "protocol" as often as uvicorn's says its words, and
    never "uvicorn"; Sorted Containers' opened with DiskCache's "Built atop the caching data types"."""
    fire = ("# Quickfire\n\nQuickfire is an ASGI server for Python. Quickfire supports the HTTP/1.1 and WebSockets protocols.\n\n"
            "## Install\n\nInstall quickfire with pip. Installing quickfire[standard] installs uvloop and httptools, "
            "and quickfire uses them when it can.\n")
    kit = ("# Toolkit\n\nThe toolkit supports the standard protocol.\n\n"
           "The cli extra adds the toolkit command; install the standard toolkit if you do not need the command.\n")
    passages = {"1": split_passages(fire), "2": split_passages(kit)}
    sources = [{"id": 1, "snippet": ""}, {"id": 2, "snippet": ""}]
    report = extractive_report("Which protocols does quickfire support, and what does installing quickfire[standard] add?",
                               [], sources, passages)
    short = report.split("## What the sources say")[0]
    assert "[1]" in short and "[2]" not in short, report


RESTART_TINYQ = ("# Tinyq\n\nTinyq is a small job queue for Python that stores jobs in memory.\n\n"
                 "## Restarts\n\nIts queue is written to disk every second, so a restart loses one second of work at most.\n")
RESTART_BIGQ = "# Bigq\n\nBigq persists every queue entry to disk before it acknowledges it, so a restart loses nothing.\n"
RETRY_BIGQ = "# Bigq timeouts\n\nBigq retries a queue entry three times after a timeout before it drops it.\n"


def test_a_sub_question_quotes_the_sources_on_the_questions_subject_and_the_others_only_where_those_say_nothing():
    """Bigq's restarts answered a search about Tinyq's beside Tinyq's own sentence: a reader
    took Bigq's "a restart loses nothing" for Tinyq's. A search the Tinyq source says nothing of
    still quotes what the others say."""
    passages = {"1": split_passages(RESTART_TINYQ), "2": split_passages(RESTART_BIGQ), "3": split_passages(RETRY_BIGQ)}
    report = extractive_report("How does Tinyq store jobs?", ["what a restart loses from disk", "retries after a timeout"],
                               [{"id": 1}, {"id": 2}, {"id": 3}], passages)
    sections = _sections(report)
    restarts, retries = sections["what a restart loses from disk"], sections["retries after a timeout"]
    assert "so a restart loses one second of work at most [1]." in restarts and "Bigq" not in restarts, report
    assert "- Bigq retries a queue entry three times after a timeout before it drops it [3]." in retries, report
    assert ground(report, {int(sid): read for sid, read in passages.items()}).support == 1.0


BREAKERS = ("# Providers\n\n## Circuit breakers and retries\n\n"
            "A model that fails `failure_threshold` times in a row is *open* and skipped at once for `cooldown_s`;"
            " then one probe call is let through, and its success closes the circuit.\n"
            "Retries happen only for a 429 whose `Retry-After` is at most `retry.max_retry_after_s`.\n")


def test_what_the_opening_left_of_a_passage_is_quoted_only_if_it_says_what_is_asked():
    """The circuit breaker's rule opened the report; its passage's other sentence, on 429 retries,
    was then quoted as the first item under the question, though it says nothing of circuits,
    breakers, skipping or models."""
    passages = {"1": split_passages(BREAKERS)}
    report = extractive_report("How does the circuit breaker decide when to skip a model?", [], [{"id": 1}], passages)
    assert "is *open* and skipped at once" in report.split("## What the sources say")[0], report
    assert "Retries happen only for a 429" not in report, report


def test_the_planners_file_names_numbered_frames_and_repeated_versions_are_junk():
    """A newcomer's MCP session: "How do I run the MCP server over HTTP with tokens?" got a section
    headed ``run_mcp_server_with_tokens_mcp.json``, "x" three sections ``x-search-query-1..3`` of
    unrelated quotes, and "???" one searching ``v2.1/v2.1/...`` that quoted RunPod's /v2 routes."""
    from graphs.research.queries import junk_reason

    assert junk_reason("run_mcp_server_with_tokens_mcp.json", "How do I run the MCP server over HTTP with tokens?")
    assert junk_reason("x-search-query-1", "x") and junk_reason("x-search-query-3", "x")
    assert junk_reason("v2.1/v2.1/v2.1/v2.1/v2.1/", "???")
    # real searches stay: versions compared, a name with a file extension the question names
    assert junk_reason("python 3.11 vs 3.12 speed", "Is python 3.12 faster than 3.11 in loops?") is None
    assert junk_reason("mcp.json client config format", "How do I add the server to Claude Desktop?") is None


def test_a_section_whose_heading_names_what_is_asked_is_read_and_quoted():
    """"What states does a RunPod job go through?" never quoted the bundled corpus's "## Job
    states" passage (IN_QUEUE -> IN_PROGRESS -> ...): its text says neither "states" nor "RunPod",
    so it was neither among the passages read nor quoted; a heading now counts with its text."""
    from pathlib import Path

    from graphs.research.passages import select_passages
    from graphs.research.stems import query_terms

    question = "What states does a RunPod job go through?"
    text = (Path(__file__).parents[1] / "docs" / "corpus" / "runpod-serverless.md").read_text(encoding="utf-8")
    every = split_passages(text)
    states = next(p for p in every if p.get("heading") == "Job states")
    # its heading's words count: ahead of the Deploying section, which says "jobs" and "runpod"
    # (room for the other four: without its heading, Job states came last and was left out)
    read = select_passages(every, query_terms(question), sum(len(p["text"]) + 2 for p in every if p is not states))
    assert states in read and every[4] not in read, [p.get("heading") for p in read]
    report = extractive_report(question, [], [{"id": 1, "title": "RunPod Serverless", "snippet": ""}], {"1": every})
    assert "`IN_QUEUE` -> `IN_PROGRESS` -> one of `COMPLETED`" in report, report
