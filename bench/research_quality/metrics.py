"""What the research quality bench measures on one report, and the naive baseline it is held against.

Every figure is computed on the final report a user reads (its generated Sources list taken off):

- fact recall: the gold facts of the question (regular expressions) found in the report's plain
  text (citations, Markdown emphasis and code ticks out, spacing collapsed);
- support: each sentence carrying ``[n]`` held by ``graphs.research.grounding.ground`` against the
  passages of the whole documents it cites (``split_passages`` of the file as indexed): supported
  when one passage of a cited document backs it;
- cited share: factual sentences (``grounding.is_factual``) that carry a citation;
- unresolved: citation ids that name no source the run returned;
- repeats: sentences whose normalised text equals an earlier sentence's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from graphs.research.citations import CITE_MARKER, marker_ids, normalize_report, split_sentences
from graphs.research.grounding import ground, normalise
from graphs.research.passages import Passage, bm25_scores, sentences_of, split_passages
from graphs.research.quoting import flatten

_CODE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+>]|\d+[.)])\s+")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_FENCE_LINE = re.compile(r"^\s*```[\w+-]*\s*$")
_INLINE_FENCE = re.compile(r"```.*?(?:```|$)")
_UNCITED = "states a fact without citing a source"


@dataclass(frozen=True)
class ReportFigures:
    """The counts behind every figure of one report."""

    facts: int
    facts_found: int
    factual: int
    cited_factual: int
    supported: int
    unresolved: int
    sentences: int
    repeats: int
    chars: int
    #: the lines of the report's "In short" opening, and those citing the question's gold document
    opening: int = 0
    opening_on_gold: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def body_of(report: str) -> str:
    """The report without the Sources section the checker appends (or one a model wrote)."""
    return normalize_report(report)[0]


def prose_of(body: str) -> str:
    """``body`` with code written inside a line (three backticks, up to the next three or the line's
    end) taken out: a line that starts with three backticks and goes on is not a fence in
    CommonMark, and code is no sentence. Fence lines and fenced blocks stay as they are."""
    return "\n".join(line if _FENCE_LINE.match(line) else _INLINE_FENCE.sub(" ", line) for line in body.splitlines())


def plain(text: str) -> str:
    """Text as the fact patterns read it: no citations, no links' targets, no emphasis or ticks."""
    text = CITE_MARKER.sub(" ", _LINK.sub(r"\1", text))
    return " ".join(text.replace("`", "").replace("**", "").replace("__", "").split())


def facts_found(report: str, facts: Sequence[str]) -> list[bool]:
    """Which of ``facts`` (case-insensitive patterns) the report's plain text contains."""
    text = plain(body_of(report))
    return [re.search(pattern, text, re.IGNORECASE) is not None for pattern in facts]


def report_sentences(body: str) -> list[str]:
    """The sentences of a report's prose (fenced code, code inside a line and headings left out)."""
    found: list[str] = []
    in_code = False
    for line in prose_of(body).splitlines():
        if _FENCE_LINE.match(line):
            in_code = not in_code
        elif line.strip() and not in_code and not _HEADING.match(line):
            found += split_sentences(_LIST_MARKER.sub("", line))
    return found


def repeated(sentences: Sequence[str]) -> int:
    """How many sentences repeat an earlier one (same words, citations and punctuation aside)."""
    seen: set[str] = set()
    count = 0
    for sentence in sentences:
        key = normalise(sentence)
        if len(key.split()) < 2:
            continue
        count += key in seen
        seen.add(key)
    return count


def unresolved(body: str, valid: set[int]) -> int:
    """Citation ids in ``body`` that name no returned source."""
    no_code = re.sub(r"`[^`\n]*`", "", _CODE.sub("", body))
    return sum(1 for m in CITE_MARKER.finditer(no_code) for i in marker_ids(m.group(1)) if i not in valid)


def measure(report: str, facts: Sequence[str], passages: Mapping[int, Sequence[Passage]],
            titles: Mapping[int, str] | None = None, files: Mapping[int, str] | None = None,
            gold_file: str | None = None) -> ReportFigures:
    """The figures of one report; ``passages`` maps each returned source id to its document's
    passages, ``files`` each to its file name (for the opening's lines citing ``gold_file``)."""
    body = prose_of(body_of(report))
    checked = ground(body, passages, titles=titles)
    # a sentence citing only ids no source has is not in ``checked.factual``; it counts here as
    # cited and unsupported
    cited_unsupported = sum(1 for u in checked.unsupported if u["source_ids"])
    uncited = sum(1 for u in checked.unsupported if u["reason"] == _UNCITED)
    sentences = report_sentences(body)
    return ReportFigures(
        facts=len(facts), facts_found=sum(facts_found(report, facts)),
        factual=checked.supported + cited_unsupported + uncited,
        cited_factual=checked.supported + cited_unsupported, supported=checked.supported,
        unresolved=unresolved(body, set(passages)), sentences=len(sentences), repeats=repeated(sentences),
        chars=len(body.strip()),
        **dict(zip(("opening", "opening_on_gold"), opening_on_gold(body, files or {}, gold_file), strict=True)),
    )


def opening_on_gold(body: str, files: Mapping[int, str], gold_file: str | None) -> tuple[int, int]:
    """The "## In short" lines of ``body`` that quote a source, and those of them citing ``gold_file``."""
    found = re.search(r"^#{1,6}\s*In short\s*$(.*?)(?=^#{1,6}\s|\Z)", body, re.MULTILINE | re.DOTALL)
    cited = [ids for line in (found.group(1).splitlines() if found else [])
             if (ids := {i for m in CITE_MARKER.finditer(line) for i in marker_ids(m.group(1))})]
    return len(cited), sum(1 for ids in cited if gold_file in {files.get(i) for i in ids})


def totals(rows: Sequence[ReportFigures]) -> dict[str, float | None]:
    """The headline figures over many reports (pooled counts, not means of ratios)."""
    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 3) if whole else None

    facts = sum(r.facts for r in rows)
    cited = sum(r.cited_factual for r in rows)
    factual = sum(r.factual for r in rows)
    return {
        "fact_recall": share(sum(r.facts_found for r in rows), facts),
        "support_rate": share(sum(r.supported for r in rows), cited),
        "cited_share": share(cited, factual),
        "unresolved_citations": float(sum(r.unresolved for r in rows)),
        "repeated_sentences": float(sum(r.repeats for r in rows)),
        "mean_chars": round(sum(r.chars for r in rows) / len(rows), 1) if rows else None,
        "opening_on_gold": share(sum(r.opening_on_gold for r in rows), sum(r.opening for r in rows)),
    }


# --- the corpus as passages, and the naive baseline -------------------------------------------


@dataclass(frozen=True)
class CorpusPassage:
    doc: int  #: the document's number (1-based, files in sorted order): its ``[n]`` in the baseline
    file: str
    passage: Passage


def corpus_passages(folder: Path) -> list[CorpusPassage]:
    """Every passage of every indexed text file of ``folder`` (``.md``, ``.txt``), files sorted."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".md", ".txt"))
    return [CorpusPassage(n, path.name, passage) for n, path in enumerate(files, 1)
            for passage in split_passages(path.read_text(encoding="utf-8"))]


def bm25_ranking(question: str, pool: Sequence[CorpusPassage]) -> list[int]:
    """Indexes of ``pool`` best first by BM25 of ``question`` (``graphs.research.passages``)."""
    scores = bm25_scores(question, [flatten(p.passage["text"]) for p in pool])
    return sorted(range(len(pool)), key=lambda i: (-scores[i], i))


def baseline_report(question: str, pool: Sequence[CorpusPassage], k: int) -> str:
    """The naive baseline: the top ``k`` BM25 passages of the corpus pasted in rank order, each
    sentence ending with its document's ``[n]``."""
    paragraphs = []
    for i in bm25_ranking(question, pool)[:k]:
        item = pool[i]
        cited = [f"{s.rstrip('.!?')} [{item.doc}]{s[-1] if s[-1] in '.!?' else ''}"
                 for s in sentences_of(flatten(item.passage["text"])) if s.strip()]
        paragraphs.append(" ".join(cited))
    return "\n\n".join(paragraphs) + "\n"


def gold_passages(pool: Sequence[CorpusPassage], file: str, pattern: str) -> set[int]:
    """Indexes of the passages of ``file`` whose plain text holds the fact ``pattern``."""
    return {i for i, p in enumerate(pool) if p.file == file
            and re.search(pattern, plain(flatten(p.passage["text"])), re.IGNORECASE)}


def recall_at_k(ranking: Sequence[int], gold: Sequence[set[int]], k: int) -> float | None:
    """Share of facts with a gold passage among the first ``k`` of ``ranking``."""
    top = set(ranking[:k])
    return round(sum(1 for g in gold if g & top) / len(gold), 3) if gold else None
