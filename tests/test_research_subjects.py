"""A question whose subject no source found names is not answered with the nearest passages.

Keyless, "How do I set Kubernetes memory limits for a pod?" against this project's docs came back
as one quoted sentence about SearXNG's rate limiter (it shares "set" and "limit"), every sentence
backed by its passage: a confident answer to another question.
"""

from __future__ import annotations

from test_research_extractive import PASSAGES, SOURCES, _sections
from test_research_graph import _context, _local_chain

from graphs.research.action import ResearchInput, research
from graphs.research.citations import marker_ids
from graphs.research.extractive import NO_ANSWER, extractive_report
from graphs.research.passages import split_passages
from graphs.research.subjects import missing_line, named_terms, unmentioned
from providers.testing import FakeLLM


def test_names_are_the_words_a_question_names_things_with():
    assert named_terms("How do I set Kubernetes memory limits for a pod?") == ["Kubernetes"]
    # a sentence's first capital is no name; a second sentence's neither
    assert named_terms("Which queue types exist? And does it log?") == []
    assert named_terms("Does load_dotenv call os.environ, h11 or useEffect over HTTP?") == [
        "load_dotenv", "os.environ", "h11", "useEffect", "HTTP"]
    assert named_terms("What is the capital of Australia? I ask for a friend.") == ["Australia"]
    assert named_terms("uvicorn[standard] and 2.0, with C and I/O") == []  # lower case, numbers, single letters
    assert named_terms("Does the Café backend need a key?") == ["Café"]


def test_a_word_in_small_letters_names_something_before_a_version_or_as_the_package_named():
    # "Is the flask package thread safe?" opened with another library's "Thread-safe and process-safe [1]."
    assert named_terms("Is the flask package thread safe?") == ["flask"]
    assert named_terms("Which Python version does numpy 2.0 require?") == ["Python", "numpy"]
    assert named_terms("What is the xxhash Python library a binding for? And the idna module?") == ["xxhash", "Python", "idna"]
    assert named_terms("Does it run on python 3.12 and node v20.1?") == ["python", "node"]
    # a version of one part, or a word that only counts releases, names nothing
    assert named_terms("What changed in version 2.0, in release 1.2.3, in step 2 and in the default package?") == []
    assert named_terms("What does the same library do?") == []


def test_an_ordinary_word_before_a_number_or_an_amount_names_nothing():
    """A review found "Does a delegation time out after roughly 540.0 seconds?" unanswered ("none of
    the sources found mentions roughly") over docs that say "times out after 540 seconds"."""
    assert named_terms("Why does a delegation take 2.5 seconds?") == []
    assert named_terms("Does the cache use roughly 1.5 GB?") == []
    assert named_terms("Why is the latency around 0.5 s, or 0.5ms at 99.9%?") == []
    assert named_terms("Does it support 3.12, or only since 1.2?") == []
    # an amount's unit, as one word or two, names nothing either
    assert named_terms("Does a delegation time out after 540s?") == []
    assert named_terms("Is it 2.5x faster with 16GB of RAM?") == ["RAM"]
    # a name before a version still is one, whatever the question measures after it
    assert named_terms("Does numpy 2.0 take 1.5 GB?") == ["numpy"]
    assert named_terms("Does langgraph 1.2 need python 3.11 and node v20.1?") == ["langgraph", "python", "node"]


def test_an_adjective_before_package_or_library_names_nothing():
    """"Which is the best library for parsing yaml files?" over PyYAML's docs was unanswered:
    "none of the sources found mentions best"."""
    assert named_terms("Is the best library fast?") == []
    assert named_terms("Which is the recommended package, the right module or the first library?") == []
    assert named_terms("Is the official module for parsing yaml files safe?") == []
    assert named_terms("Is the requests library thread safe, and the yaml module?") == ["requests", "yaml"]


def test_a_question_with_an_amount_or_an_adjective_is_answered_from_the_source_that_has_it():
    delegation = "A delegation times out after 540 seconds and the job is marked failed. The router waits 60 seconds."
    report = extractive_report("Does a delegation time out after roughly 540.0 seconds?", [],
                               SOURCES[:1], {"1": split_passages(delegation)})
    assert NO_ANSWER not in report and "mentions" not in report
    assert "- A delegation times out after 540 seconds and the job is marked failed [1]." in report.split("## What")[0]
    yaml = "PyYAML is a library for parsing YAML in Python. It loads YAML documents safely with safe_load."
    report = extractive_report("Which is the best library for parsing yaml files?", [], SOURCES[:1],
                               {"1": split_passages(yaml)})
    assert NO_ANSWER not in report and "mentions" not in report
    assert "PyYAML is a library for parsing YAML in Python [1]." in report.split("## What")[0]


def test_what_a_question_writes_in_backticks_is_a_name_as_a_whole():
    # "What does `swarm doctor` check?" opened with "`swarm config check` prints the effective config"
    # from docs that never say "doctor", checked "100% backed"
    assert named_terms("What does `swarm doctor` check?") == ["swarm doctor"]
    assert named_terms("Does `load_dotenv` override them, and is `2.0` or `it` out?") == ["load_dotenv"]
    assert unmentioned("What does `swarm doctor` check?", ["`swarm config check` prints the config."]) == ["swarm doctor"]
    report = extractive_report("Which queue types does `tinyq doctor` check?", [], SOURCES, PASSAGES)
    assert report == f"## In short\n\n{NO_ANSWER}\n\nNone of the sources found mentions tinyq doctor.\n"


def test_generic_capitals_and_title_case_name_nothing():
    """A review found "Is it OK to use the local model with no keys at all?" unanswered ("none of
    the sources found mentions OK") and "Why Is My Job Stuck In Queue?" missing "Stuck"."""
    assert named_terms("Is it OK to use the local model with no keys at all? FAQ, TODO") == []
    assert named_terms("Why Is My Job Stuck In Queue?") == []
    assert named_terms("How Does LangGraph Resume A Job After A Crash?") == ["LangGraph"]  # an identifier still is
    # a question full of names still writes its other words in small letters: not Title Case
    assert named_terms("Is Sorted Containers faster than Redis or Kubernetes?") == [
        "Sorted", "Containers", "Redis", "Kubernetes"]


def test_a_name_is_mentioned_when_a_source_says_each_of_its_words():
    texts = ["Sorted Containers is a pure-Python library.", "# Kubernetes-free\n\nRuns anywhere."]
    assert unmentioned("Is Sorted Containers faster than Redis or Kubernetes?", texts) == ["Redis"]
    assert unmentioned("Does sorted work?", texts) == []
    assert missing_line(["Redis", "Celery", "FIFA"]) == "None of the sources found mentions Redis, Celery or FIFA."
    assert missing_line(["Redis"], sentence=False) == "none of the sources found mentions Redis"


def test_a_question_about_something_no_source_names_gets_no_answer_and_why():
    """The question shares "queue", "types" and "provide" with Tinyq's passage, enough for the
    opening's word floor: before, "Tinyq provides three queue types" opened the report as its answer."""
    report = extractive_report("Which queue types does Kubernetes provide?", [], SOURCES, PASSAGES)
    assert report == f"## In short\n\n{NO_ANSWER}\n\nNone of the sources found mentions Kubernetes.\n"
    assert not marker_ids(report)


def test_a_question_about_a_package_no_source_names_gets_no_answer_and_why():
    report = extractive_report("Which queue types does the celery package provide?", [], SOURCES, PASSAGES)
    assert report == f"## In short\n\n{NO_ANSWER}\n\nNone of the sources found mentions celery.\n"


def test_a_question_naming_one_thing_the_sources_have_and_one_they_lack_is_answered_and_says_so():
    question = "Which queue types does Tinyq provide, and does Kubernetes run it?"
    report = extractive_report(question, ["Kubernetes queue operator", "Tinyq license terms"], SOURCES, PASSAGES)
    short = report.split("## What the sources say")[0]
    assert "FifoQueue" in short and NO_ANSWER not in short
    assert short.rstrip().endswith("None of the sources found mentions Kubernetes.")
    sections = _sections(report)
    assert sections["Kubernetes queue operator"].strip() == "No passage found mentions Kubernetes."
    assert "MIT license" in sections["Tinyq license terms"]
    # every name found: the report is as it was
    plain = extractive_report("Which queue types does Tinyq provide?", [], SOURCES, PASSAGES)
    assert "mentions" not in plain and "FifoQueue" in plain


def test_a_name_in_a_table_row_or_a_heading_is_said_in_the_report_and_the_warning_alike():
    """The report read the flattened passages (table rows and headings left out), the warning the
    passages as read: "How does RunPod handle GPU OOM errors?" said "mentions GPU or OOM" in the
    report and "mentions OOM" in the warning, though a table row of the docs says GPU."""
    doc = "# Tinyq\n\nTinyq is a queue library.\n\n| part | runs on |\n|---|---|\n| workers | CPU or GPU |\n"
    passages = {"1": split_passages(doc)}
    report = extractive_report("Does Tinyq handle GPU OOM errors?", [], SOURCES[:1], passages)
    assert "None of the sources found mentions OOM." in report and "mentions GPU" not in report


def test_a_sub_question_is_skipped_only_when_it_names_what_no_source_says():
    question = "Which queue types does Tinyq provide, and does load_dotenv read its settings?"
    report = extractive_report(question, ["load the Tinyq license", "load_dotenv settings file"], SOURCES, PASSAGES)
    sections = _sections(report)
    assert sections["load_dotenv settings file"].strip() == "No passage found mentions load_dotenv."
    assert "MIT license" in sections["load the Tinyq license"]


def test_an_off_topic_question_quotes_nothing_under_its_searches_either():
    report = extractive_report("Which queue types does Kubernetes provide?", ["queue types list"], SOURCES, PASSAGES)
    assert report == f"## In short\n\n{NO_ANSWER}\n\nNone of the sources found mentions Kubernetes.\n"


def test_a_sentence_pointing_back_at_one_the_opening_quotes_goes_on_in_that_quote():
    """A review found "It retries failed jobs." dropped from the opening (its lead was quoted
    already) and quoted alone, dangling, further down."""
    doc = "# Tinyq\n\nTinyq stores every queue in Redis streams with consumer groups for durable queues. It retries failed jobs.\n"
    passages = {"1": split_passages(doc)}
    question = "Does Tinyq store durable queues in Redis streams with consumer groups, and does it retry failed jobs?"
    report = extractive_report(question, [], SOURCES[:1], passages)
    assert ("- Tinyq stores every queue in Redis streams with consumer groups for durable queues [1]."
            " It retries failed jobs [1].") in report.split("## What")[0], report
    assert report.count("It retries failed jobs") == 1


async def test_the_research_action_warns_and_states_nothing_when_the_subject_is_missing(corpus, tmp_path):
    llm = FakeLLM([{"queries": ["kubernetes checkpoint step"]}])
    ctx, _ = _context(tmp_path, llm, _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question="Does Kubernetes save graph state after every step?",
                                          mode="extractive"), ctx)
    assert NO_ANSWER in result["report"] and "mentions Kubernetes" in result["report"]
    assert "saves graph state" not in result["report"] and not result["citations"]
    assert result["warnings"] == ["none of the sources found mentions Kubernetes: the report may not answer the question"]

    answered = await research(ResearchInput(question="Does a LangGraph checkpointer save graph state after every step?",
                                            mode="extractive"), _context(tmp_path / "b", FakeLLM([{"queries": []}]),
                                                                         _local_chain(corpus, tmp_path / "b"))[0])
    assert "saves graph state" in answered["report"] and answered["warnings"] == []


def test_a_sub_question_naming_something_no_source_says_makes_no_section():
    """The local planner's searches `checksum_removed`, `clarete_code_server` and `keywords:circuit
    breaker` each got a section of unrelated passages."""
    question = "Which queue types does Tinyq provide?"
    report = extractive_report(question, ["checksum_removed", "keywords:queue license", "Tinyq license terms"],
                               SOURCES, PASSAGES)
    assert set(_sections(report)) == {question, "Tinyq license terms"}, report


def test_a_search_operator_is_a_search_and_a_plan_label_is_not():
    from graphs.research.queries import junk_form

    assert junk_form("site:docs.python.org asyncio timeout") is None
    assert junk_form("python:3.12 slim image") is None
    assert junk_form("keywords:circuit breaker") and junk_form("keywords:runpods")


def test_names_next_to_numbers_stay_names_and_long_numbers_are_read_at_once():
    """Review of 3fc32a2: 'go 1.22', 'make 4.4' were ordinary words, a spaced one-letter 'unit'
    took the first letter of 'B-tree' and 'X-Forwarded-For', 'min()' read as minutes; '1,1,1,...'
    took quadratic time."""
    from graphs.research.subjects import _QUANTITY

    assert named_terms("Is go 1.22 faster than go 1.21?") == ["go"]
    assert named_terms("Does make 4.4 support it?") == ["make"]
    assert named_terms("Is python 3.12 min() faster?") == ["python"]
    assert named_terms("Does Python 3.12 B-tree work?") == ["Python", "B-tree"]
    assert named_terms("Which header does HTTP 2 X-Forwarded-For replace?") == ["HTTP", "X-Forwarded-For"]
    assert named_terms("2.5x faster with 16GB of RAM, after 540s") == ["RAM"]  # fused units are units
    assert list(_QUANTITY.finditer("1," * 20_000)) == []  # at once; quadratic before: about a minute here


SETTINGS = ("# Tinyq\n\nTinyq reads its settings from tinyq.toml: configure the queue size and the worker count there.\n\n"
            "A job times out after 540 seconds. Tinyq can cache results on disk.\n")


def test_a_word_in_small_letters_is_the_subject_when_nothing_else_the_sources_say_is():
    """A review found "configure nginx" answered from python-dotenv's passages about configuration
    (no source says nginx): a name in small letters the question does not mark was no name."""
    texts = [SETTINGS]
    for question in ("configure nginx", "How do I configure nginx?", "Nginx configuration guide",
                     "What is the best way to set up nginx properly?", "How do I install kubectl?"):
        assert unmentioned(question, texts) == [question.split()[-1].strip("?") if "kubectl" in question else "nginx"], question
    report = extractive_report("How do I configure nginx?", [], SOURCES[:1], {"1": split_passages(SETTINGS)})
    assert report == f"## In short\n\n{NO_ANSWER}\n\nNone of the sources found mentions nginx.\n"


def test_a_common_word_no_source_says_is_no_subject_while_the_sources_say_another():
    texts = [SETTINGS]
    # the question's other words are said: a word the sources lack is no subject of it
    assert unmentioned("Does tinyq cache stale results?", texts) == []
    assert unmentioned("How do I configure the worker count gracefully?", texts) == []
    # most of what it asks (a name in small letters beside one said) is in no source: said
    assert unmentioned("Can tinyq run behind nginx?", texts) == ["nginx"]
    # only words any question may use: nothing to say about (no subject at all)
    assert unmentioned("Is it safe to upgrade quickly?", texts) == []
    assert unmentioned("How do I configure it?", texts) == []
    # a word said in another spelling is said: glued ("time out"), a stem's final e ("cache")
    assert unmentioned("How do I set a timeout?", texts) == []
    assert unmentioned("Does it support caching?", texts) == []
    report = extractive_report("How do I configure the worker count?", [], SOURCES[:1], {"1": split_passages(SETTINGS)})
    assert NO_ANSWER not in report and "mentions" not in report and "worker count there [1]" in report


def test_a_search_for_a_word_in_small_letters_no_source_says_makes_no_section():
    question = "Which queue types does Tinyq provide?"
    report = extractive_report(question, ["nginx", "configure nginx", "Tinyq license terms"], SOURCES, PASSAGES)
    assert set(_sections(report)) == {question, "Tinyq license terms"}, report


def test_a_question_in_another_script_is_warned_of_what_no_source_says():
    """A reviewer asked "RunPod 的异步任务结果保存多久？" and got 20 quoted sentences about RunPod and no
    warning: words were ASCII only, so the question was "runpod"."""
    from graphs.research.subjects import missing_line, subjects

    texts = ["RunPod keeps the results of async jobs for 30 minutes.", "Der Server läuft."]
    # a CJK run is compared as its character pairs (core/cjk.py): each is unsaid here
    pairs = ["的异", "异步", "步任", "任务", "务结", "结果", "果保", "保存", "存多", "多久"]
    assert subjects("RunPod 的异步任务结果保存多久？", texts) == (["RunPod", *pairs], pairs)
    assert missing_line(pairs) == "None of the sources found mentions 的异步任务结果保存多久."  # the run, as asked
    assert missing_line(["RunPod", "设定", "定时", "备份"]) == "None of the sources found mentions RunPod, 设定时 or 备份."
    assert subjects("как долго RunPod хранит результаты?", texts)[1] == ["как", "долго", "хранит", "результаты"]
    assert subjects("How long does RunPod keep async job results?", texts) == (["RunPod"], [])
    assert subjects("Wie lange läuft der Server?", texts)[1] == []  # Latin letters, said by a text: no warning


def test_a_named_subject_is_answered_from_the_sources_that_name_it_as_a_word():
    """Keyless, "Which environment variable does Tavily need and which header does the request
    carry?" quoted RunPod's ``Authorization: Bearer <RUNPOD_API_KEY>`` (a page listing
    ``TAVILY_API_KEY`` among its settings, which says more of "environment variable" and "header"),
    though the page on Tavily had been read; "Which config formats does Quillmark read?" quoted
    SearXNG's ``formats: [html, json]``."""
    runpod = ("# RunPod endpoints\n\n## Keys\n\nSet the environment variables the config needs (`DEEPSEEK_API_KEY`,"
              " `TAVILY_API_KEY`) as endpoint environment variables. Requests carry the header"
              " `Authorization: Bearer <RUNPOD_API_KEY>`. Each environment variable is read at start.\n")
    tavily = ("# Search backends\n\n## Tavily\n\nTavily is a hosted search API: each request carries the header"
              " `Authorization: Bearer <TAVILY_API_KEY>`. Keys start with `tvly-`.\n")
    searxng = ("# Search\n\n## SearXNG\n\nThe config lists the formats: SearXNG reads `formats: [html, json]`"
               " from its config file.\n")
    quill = "# Quillmark release notes\n\nQuillmark 2.0 removed the legacy TOML config; only YAML is read since then.\n"
    passages = {"1": split_passages(runpod), "2": split_passages(tavily), "3": split_passages(searxng),
                "4": split_passages(quill)}
    sources = [{"id": i, "snippet": ""} for i in range(1, 5)]
    report = extractive_report("Which environment variable does Tavily need and which header does the request carry?",
                               [], sources, passages)
    assert "TAVILY_API_KEY>` [2]" in report and "RUNPOD_API_KEY" not in report, report
    report = extractive_report("Which config formats does Quillmark read?", [], sources, passages)
    assert "only YAML is read since then [4]" in report and "html, json" not in report, report


def test_a_question_most_of_whose_words_no_source_says_is_warned_of_them():
    """"When should I prune cucumber plants?" against garden notes that say "plant" only opened
    with "Basil is a good companion plant [1]" and no warning: one word said hid the rest."""
    notes = "# Garden notes\n\nBasil is a good companion plant. Tomatoes need at least 6 hours of sun.\n"
    assert unmentioned("When should I prune cucumber plants?", [notes]) == ["prune", "cucumber"]
    report = extractive_report("When should I prune cucumber plants?", [], [{"id": 1, "snippet": ""}],
                               {"1": split_passages(notes)})
    assert "None of the sources found mentions prune or cucumber" in report, report
    # one unsaid word of three is no subject: a paraphrase the sources word otherwise
    assert unmentioned("How much sun do tomatoes need daily?", [notes]) == []
