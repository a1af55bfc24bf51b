"""What the extractive report quotes: the opening answers a long question whose answer the
sources hold, and no bullet is a garbled piece of a page (a heading run into its paragraph, half
a sentence, code cut by a search snippet) or a passage that only shares a common word with the
question."""

from __future__ import annotations

from graphs.research.extractive import NO_ANSWER, extractive_report
from graphs.research.grounding import ground
from graphs.research.passages import snippet_passage, split_passages
from graphs.research.quoting import flatten, is_list_like, opening_floor, quotable_snippet
from graphs.research.stems import content_stems, says_compound, stem

RUNPOD = (
    "# RunPod Serverless: jobs, states and limits\n\n"
    "A RunPod Serverless endpoint runs a worker image on demand. The worker's handler receives one job\n"
    "at a time and returns a JSON-serializable result.\n\n"
    "## Job states\n\n"
    "`IN_QUEUE` -> `IN_PROGRESS` -> one of `COMPLETED`, `FAILED`, `CANCELLED`, `TIMED_OUT`.\n"
    "Results of async jobs are kept for 30 minutes, of `runsync` jobs for 1 minute. The default\n"
    "execution timeout is 600 s. If a handler raises, the SDK puts the exception text and traceback in\n"
    "the job result.\n"
)
CONFIG = (
    "# Providers and config\n\n"
    "A running MCP server or worker re-reads the config file before the next job when it changed. An edit\n"
    "that fails validation is refused and logged, and the last good config keeps serving.\n"
)
KEEP_QUESTION = "How long does RunPod keep the results of async jobs, and what is the default execution timeout?"


def _opening(report: str) -> str:
    return report.split("## What the sources say")[0]


def _bullets(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("- ")]


def test_the_opening_quotes_both_answers_to_a_long_two_part_question():
    """The reviewer's question: 9 words, but the joined pairs query_terms adds ("keepre",
    "asyncj", ...) made 13 terms and a floor of 4, and "kept" did not match "keep": the opening
    said the sources do not answer while the first bullet quoted both answers."""
    passages = {"1": split_passages(RUNPOD), "2": split_passages(CONFIG)}
    report = extractive_report(KEEP_QUESTION, [], [{"id": 1}, {"id": 2}], passages)
    opening = _opening(report)
    assert NO_ANSWER not in report
    assert "Results of async jobs are kept for 30 minutes" in opening and "execution timeout is 600 s" in opening
    assert "config" not in opening  # "keeps serving" and "job" do not make an answer
    checked = ground(report, {1: passages["1"], 2: passages["2"]})
    assert checked.support == 1.0 and not checked.unsupported


def test_the_floor_counts_the_questions_words_and_kept_is_keep():
    words = set(content_stems(KEEP_QUESTION))
    assert len(words) == 9 and opening_floor(words) == 3
    assert stem("kept") == stem("keep") == stem("keeps") and stem("written") == stem("write")
    assert opening_floor(set("abcdefg")) == 3  # 30% of 7, rounded up: two words of a long question are not enough


def test_a_heading_inside_a_passage_is_left_out_not_run_into_the_text():
    text = "Tools report progress per stage\n### Progress and long jobs\nClaude Desktop waits about 60 seconds."
    assert flatten(text) == "Tools report progress per stage. Claude Desktop waits about 60 seconds."
    rst = "Installation\n============\n\nInstall it with pip.\n\nUsage\n-----\nCall it."
    assert flatten(rst) == "Install it with pip. Call it."
    # in code, a "# comment" is code, and "---" is no heading underline
    code = "Run it:\n\n```bash\n# install first\npip install x\n---\n```"
    assert flatten(code) == "Run it: ``` # install first pip install x --- ```"  # the info string is no word of the code


def test_a_search_snippet_is_quoted_by_whole_sentences_only():
    """The local index's snippet of a page that was not read: its title run into the first
    paragraph, a last sentence cut ("web search …"), and one that starts in a code block."""
    title = "runpod-swarm: project overview"
    snippet = (f"{title} runpod-swarm is a modular AI swarm that runs as a RunPod worker. Every external"
               " dependency (chat models, web search …")
    assert quotable_snippet(snippet, title) == "runpod-swarm is a modular AI swarm that runs as a RunPod worker."
    code = ('… config.yaml"}}}} ``` API keys go into the `env` block. The research tool `research(question)`:'
            " - `question`: what …")
    assert quotable_snippet(code) == ""
    sources = [{"id": 1, "title": title, "snippet": snippet}, {"id": 2, "title": "MCP usage", "snippet": code}]
    report = extractive_report("What is runpod-swarm, and which modular AI swarm worker does it run?", [], sources, {})
    assert "runpod-swarm is a modular AI swarm that runs as a RunPod worker [1]." in report
    assert "project overview runpod-swarm" not in report and "…" not in report and "```" not in report
    assert "[2]" not in report
    checked = ground(report, {s["id"]: [snippet_passage(s["snippet"])] for s in sources})  # as the checker reads them
    assert checked.support == 1.0 and not checked.unsupported


def test_an_over_long_sentence_is_quoted_up_to_a_clause_end_never_cut_mid_sentence():
    """An RST README's badges and link targets hold no sentence end the splitter takes: the quote
    was the "sentence"'s first 600 characters and " …", a fragment counted as supported."""
    badges = "\n".join(f".. image:: https://img.shields.io/pypi/{kind}/xxhash.svg\n   :target: https://pypi.org/project/xxhash/"
                       for kind in ("v", "l", "pyversions", "wheel"))
    text = (f"{badges}\n.. _xxHash: https://github.com/Cyan4973/xxHash\nxxhash is a Python binding for the xxHash_"
            " library by `Yann Collet`__.\n__ Cyan4973_\nInstallation: `pip install xxhash`, or from the source with a"
            " compiler and the `XXHASH_LINK_SO` variable set for the shared library in use\n")
    passages = {"1": split_passages(text)}
    report = extractive_report("What is xxhash a Python binding for?", [], [{"id": 1}], passages)
    # the badges, link targets and reference marks are RST markup, not text (rst_markup.rst_lines)
    assert _bullets(report)[0] == "- xxhash is a Python binding for the xxHash library by Yann Collet [1].", report
    assert "…" not in report and ".. " not in report and "__" not in report and "xxHash_" not in report
    checked = ground(report, {1: passages["1"]})
    assert checked.support == 1.0


LOCKY = (
    "# Locky\n\nLocky takes file locks on Linux, macOS and Windows with one call.\n\n"
    "## Remote locks\n\nLocky coordinates locks across machines through a Redis server.\n\n"
    "## Changelog\n\nVersion 2 dropped Python 3.8 support and renamed the package.\n"
)
OTHERS = {
    "2": "# Hashy\n\nHashy is a hashing library; its operating mode is chosen at build time.\n",
    "3": "# Webby\n\nWebby serves web pages; machines behind a proxy need a trusted header.\n",
    "4": "# Tomly\n\nTomly reads TOML files and supports the current format version.\n",
}


def test_a_section_quotes_no_passage_that_only_shares_a_common_word_with_the_question():
    """The items of a section were a fixed count: any passage sharing one word ("machines",
    "operating", "support") with the question filled the list."""
    question = "Which operating systems does Locky support, and how does it coordinate locks across machines?"
    passages = {"1": split_passages(LOCKY), **{k: split_passages(v) for k, v in OTHERS.items()}}
    sources = [{"id": int(k)} for k in passages]
    report = extractive_report(question, [], sources, passages)
    assert "Linux, macOS and Windows" in report and "through a Redis server" in report
    for padding in ("Hashy", "Webby", "Tomly", "Version 2 dropped"):
        assert padding not in report, report


SAVERS_QUESTION = "What is tinyq, the Python job queue, and which savers does it ship?"
SAVERS = ("# Tinyq\n\nSavers: tinyq ships MemorySaver, FileSaver, RedisSaver and PostgresSaver for job queue checkpoints.\n\n"
          "Tinyq is a small job queue for Python that keeps a checkpoint of each job.\n")


def test_a_list_sentence_does_not_open_the_report_before_the_one_that_says_what_the_subject_is():
    """"Savers: ..." says more of the question's words (each saver one) than "Tinyq is a small
    job queue for Python ...", and defines nothing: the opening starts with the definition and
    quotes the list after it."""
    passages = {"1": split_passages(SAVERS)}
    lines = [line for line in _opening(extractive_report(SAVERS_QUESTION, [], [{"id": 1}], passages)).splitlines()
             if line.startswith("- ")]
    assert lines[0].startswith("- Tinyq is a small job queue for Python"), lines
    assert any(line.startswith("- Savers: tinyq ships MemorySaver") for line in lines[1:]), lines


def test_a_sentence_is_list_like_when_it_labels_or_strings_items_not_when_it_says_what_a_thing_is():
    assert is_list_like("Savers: MemorySaver, FileSaver and RedisSaver.")
    assert is_list_like("Supported backends: Redis, SQLite.")
    assert is_list_like("It runs on Linux, macOS, Windows, FreeBSD and Solaris.")
    assert not is_list_like("Tinyq is a small job queue for Python.")
    assert not is_list_like("Tinyq provides three queue types: FifoQueue, LifoQueue and PriorityQueue, each safe to share.")
    assert not is_list_like("Note: the queue keeps jobs in memory.")
    assert not is_list_like("Tinyq, unlike Bigq, keeps jobs in memory, so a restart drops them.")


def test_a_source_that_writes_two_words_of_the_question_as_one_is_on_its_subject():
    """"How does the swarm fall back between providers when a model fails?" was answered from
    the overview alone, the one source that says "fall back": the page on fallback chains
    writes it as one word, said two fewer of the question's words and was off its subject."""
    overview = ("# The swarm\n\nThe swarm runs jobs for many clients, and every provider call is traced. A model's "
                "failure is an upstream error; chains fall back only on these.\n\n"
                "The swarm's doors are the handler and the MCP server; each model answers through its provider.\n")
    fallbacks = ("# Tiers and fallbacks\n\nEach tier of the swarm lists models of several providers. The fallback "
                 "chain lists the families tried, in order, after the tier's own models have failed.\n\n"
                 "A model that failed three times in a row is skipped for a cooldown.\n")
    passages = {"1": split_passages(overview), "2": split_passages(fallbacks)}
    question = "How does the swarm fall back between providers when a model fails?"
    report = extractive_report(question, [], [{"id": 1}, {"id": 2}], passages)
    assert "The fallback chain lists the families tried" in report, report
    # a word that only starts like two of the question's words joined is not them
    assert not says_compound(["backpressure"], "backproviders") and says_compound(["fallbacks"], "fallback")
    checked = ground(report, {1: passages["1"], 2: passages["2"]})
    assert checked.support == 1.0 and not checked.unsupported


def test_rst_markup_is_read_as_markup_code_as_code_and_an_admonition_as_prose():
    """Python READMEs are reStructuredText: their directives, options, link targets and reference
    marks were quoted as words ("`DiskCache`_ is ...", ".. code-block:: python [1]"), and a ``~~~``
    title underline opened a code fence that ran to the passage's end."""
    from graphs.research.quoting import flatten

    text = ("Linking\n~~~~~~~\n\nSet ``XXHASH_LINK_SO``:\n\n.. code-block:: bash\n   :linenos:\n\n   $ XXHASH_LINK_SO=1 pip install xxhash\n\n"
            "`DiskCache`_ is a cache, see `the docs <https://grantjenks.com/docs/diskcache/>`_ and :func:`cache.get`.\n\n"
            ".. note:: Keep it warm.\n\n   Stale entries are culled.\n\n.. |pypi| image:: https://img.shields.io/pypi/v/x.svg\n"
            "   :target: https://pypi.org/project/x/\n\n.. _DiskCache: https://grantjenks.com\n\n.. a comment\n   on two lines\n\n"
            "For example::\n\n    >>> cache.get(1)\n\nEnd of the section.\n\n.. code-block:: python\n")
    assert flatten(text) == (
        "Set ``XXHASH_LINK_SO``: ``` $ XXHASH_LINK_SO=1 pip install xxhash ``` DiskCache is a cache, see the docs and"
        " `cache.get`. Keep it warm. Stale entries are culled. For example: ``` >>> cache.get(1) ``` End of the section.")
    # Markdown is left as it was: a ~~~ fence after a blank line is code
    assert flatten("Run:\n\n~~~\nmake\n~~~\n\nDone.") == "Run: ~~~ make ~~~ Done."


def test_a_tilde_underline_opens_no_code_in_the_passages():
    from graphs.research.passages import split_passages

    text = "Title\n=====\n\nIntro.\n\nLinking to libxxhash.so\n~~~~~~~~~~~~~~~~~~~~~~~\n\nBy default it is bundled.\n\n" + \
        "Usage\n-----\n\nMore text here.\n"
    assert not any(p.get("code_open") for p in split_passages(text, max_chars=40))
    fenced = split_passages("Run:\n\n~~~\nline one\n\nline two\n~~~\n", max_chars=20)
    assert fenced[-1].get("code_fence") == "~~~"  # a real fence still holds its code


def test_a_text_files_title_is_its_first_line_that_is_no_markup_and_stands_alone():
    from providers.web.text import first_line_title

    assert first_line_title("=====\npluggy - plugins\n=====\n\nText.") == "pluggy - plugins"
    assert first_line_title(".. image:: logo.svg\n   :width: 480px\n\n|pypi| |versions|\n\nwebsockets\n==========\n") == "websockets"
    assert first_line_title("The pytest framework makes it easy to write\nsmall tests.\n") is None  # a wrapped sentence
    assert first_line_title("# Locky\nLocky takes locks.") == "# Locky"


def test_a_title_line_alone_in_its_block_is_a_heading_not_the_start_of_the_next_sentence():
    """A text file's or a PDF's title ran into the first sentence: "Windows notes for the Falconer
    agent The Windows agent installs as a service named FalconerAgent [1]."."""
    from graphs.research.quoting import flatten

    text = ("Windows notes for the Falconer agent\n\nThe Windows agent installs as a service named FalconerAgent.\n\n"
            "Meeting Notes 2024-04-12\n\nThe on-call rotation moves to weekly shifts.\n\nThe default port is 8443\n\n"
            "It restarts nightly.\n")
    passages = split_passages(text)
    # the document's first line, and a Title Case line anywhere, are headings; a plain line further
    # on without a period ("The default port is 8443") stays text
    assert [p["heading"] for p in passages] == ["Windows notes for the Falconer agent", "Meeting Notes 2024-04-12"]
    assert "The default port is 8443" in passages[-1]["text"]
    assert flatten("Intro.\n\nRotation Policy\n\nKeys rotate every 90 days.") == "Intro. Keys rotate every 90 days."
    report = extractive_report("What service does the Windows agent install as?", [], [{"id": 1}], {"1": passages})
    assert "- The Windows agent installs as a service named FalconerAgent [1]." in report, report
    assert "Falconer agent The Windows" not in report


def test_a_slides_bullets_answer_the_question_its_title_asks():
    """"What are the Q2 goals on the roadmap?" of a deck whose slide "Q2 Goals" lists them read "The
    sources found do not answer this question": the bullets say neither "Q2" nor "goals"."""
    deck = "# Falconer Roadmap 2025\n\nQuarterly planning deck\f# Q1 Goals\n\nShip multi-region replication.\f" \
           "# Q2 Goals\n\nDeprecate the legacy XML exporter.\n"
    passages = split_passages(deck)
    report = extractive_report("What are the Q2 goals on the roadmap?", [], [{"id": 1, "title": "Falconer Roadmap 2025"}],
                               {"1": passages})
    assert "Deprecate the legacy XML exporter [1]." in report and "do not answer" not in report, report


def test_yaml_front_matter_is_no_sentence():
    from graphs.research.quoting import flatten

    doc = "---\ntitle: Deployment Guide for Falconer\nauthor: ops-team\ntags: [deploy, kubernetes]\n---\n\nRun the installer first.\n"
    assert flatten(doc, document_start=True) == "Run the installer first."
    assert flatten("---\n\nA thematic break, then prose.", document_start=True) == "A thematic break, then prose."
    # a passage further on that opens with a rule around "key: value" lines is text (a diff review)
    assert flatten("---\n\nImportant: back up first.\n\n---\n\nThen upgrade.") == "Important: back up first. Then upgrade."
    report = extractive_report("What do I run first?", [], [{"id": 1}], {"1": split_passages(doc)})
    assert "- Run the installer first [1]." in report and "author" not in report, report


def test_a_table_row_is_quoted_as_a_sentence_naming_each_cell_by_its_column():
    """"What is the default value of FALCONER_BATCH?": the row "| FALCONER_BATCH | 500 | ... |" was no
    sentence (flatten left rows out), the report quoted the page's other sentences and never 500."""
    from graphs.research.quoting import flatten

    doc = ("# Configuration\n\nFalconer reads these variables.\n\n| Variable | Default | Meaning |\n|---|---|---|\n"
           "| FALCONER_PORT | 8742 | the listening port |\n| FALCONER_BATCH | 500 | rows per batch |\n")
    passages = split_passages(doc)
    report = extractive_report("What is the default value of FALCONER_BATCH?", [], [{"id": 1}], {"1": passages})
    assert "Variable: FALCONER_BATCH; Default: 500; Meaning: rows per batch [1]." in report, report
    assert ground(report, {1: passages}).support == 1.0
    assert flatten("| a | b |\n| c | d |") == ""  # rows without a header in the passage stay left out
    assert flatten("```\n| a | b |\n|---|---|\n| 1 | 2 |\n```") == "``` | a | b | |---|---| | 1 | 2 | ```"  # code


def test_an_escaped_pipe_stays_inside_its_cell():
    """The HTML reader writes a pipe inside a cell as ``\\|`` (Markdown's escape); the rows' reader
    split the cell there ("Limit: jobs \\; Value: day")."""
    from graphs.research.quoting import flatten
    from providers.web.html import html_to_text

    page = "<table><tr><th>Limit</th><th>Value</th></tr><tr><td>jobs | day</td><td>500</td></tr></table>"
    assert flatten(html_to_text(page)[0]) == "Limit: jobs | day; Value: 500."
