"""Passages: a document cut into paragraph-sized pieces that keep their place in it, its
sentences, and BM25 ranking over a pool of passages (by the stems of ``stems.py``).

A passage is a plain dict (checkpoint-safe): ``text`` (a verbatim slice of the document),
``start`` and ``end`` (character offsets into the text as read; ``None`` for a search snippet),
``heading`` (the nearest Markdown heading above it on its page, or ``None``) and ``page`` (1-based,
for text whose pages are separated by form feeds, as the local index keeps PDF pages and PPTX
slides; else ``None``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.cjk import CJK_CLOSERS, CJK_FULL_STOPS, CJK_LETTERS, CJK_SENTENCE_BREAK, unwrap
from core.rules import PAGE_BREAK
from graphs.research.stems import content_stems, query_terms

Passage = dict[str, Any]

#: a passage is at most this long; shorter paragraphs under one heading are merged up to it
MAX_PASSAGE_CHARS = 700
_PARAGRAPH = re.compile(r"\S.*?(?=\n[ \t]*\n|\Z)", re.DOTALL)
_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
#: a Markdown code fence line: three or more backticks or tildes, indented at most 3 spaces
_FENCE_LINE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})(.*)$", re.MULTILINE)
#: the stops a Latin sentence ends with, a run of them one end ("?!", "...", "…")
LATIN_STOPS = ".!?…"
#: the closing quotes and brackets a Latin sentence may end inside, after its stop ('"yes."',
#: "(for good.)"), and the Markdown emphasis it may end inside ("**Note.**", "_Done._")
LATIN_CLOSERS = "\"'”’)]*_"
_CLOSER = f"[{re.escape(LATIN_CLOSERS)}]"
#: just past a stop and the closers after it (up to three: '."', ".**", '."**'), but not past an
#: abbreviation's dot ('"U.S." Army', "(e.g.) Then"); lookbehinds of a fixed width, one per count
_CLOSED_END = "|".join(rf"(?<=[{LATIN_STOPS}]{_CLOSER}{{{k}}})(?<!\.[A-Za-z]\.{_CLOSER}{{{k}}})" for k in (1, 2, 3))
#: where one sentence ends and the next begins: after . ! or ?, an ellipsis "…" after a word, or
#: a stop inside a closing quote, bracket or emphasis (``_CLOSED_END``: 'He said "yes." Next'),
#: and before a capital, a digit, a quote, a bracket, code or a CJK letter (so "e.g. this", '"Yes."
#: he said' and "It ran... and stopped" stay one sentence); \x01 is the placeholder of a code
#: span hidden while citations are read (citations._protect_code), so "`x` means y." starts one
#: too. CJK text ends a sentence at 。．！？ with no space after it, or at the closing quote after
#: one (``cjk.CJK_SENTENCE_BREAK``: but 「はい。」と言った is one).
SENTENCE_BREAK = re.compile(rf"(?:(?<=[.!?])|(?<=\S…)|{_CLOSED_END})\s+(?=[\"'(\[*`A-Z0-9\x01{CJK_LETTERS}])"
                            rf"|{CJK_SENTENCE_BREAK}\s*")


def sentences_of(text: str) -> list[str]:
    """Sentences of one paragraph (a plain split at ., !, ?, a word's "…" or a stop inside a
    closing quote or emphasis, before a capital, digit or quote: ``SENTENCE_BREAK``; at CJK's
    。．！？), its lines joined (without a space inside CJK text: ``cjk.unwrap``)."""
    flat = " ".join(unwrap(text).split())
    return [s for s in SENTENCE_BREAK.split(flat) if s.strip()]


#: what a lead-in ("The steps are:", "手順は次のとおりです：") ends with, inside any emphasis ("**Steps:**"),
#: before the citation markers a report puts after it ("The steps are: [1]", as ``citations.CITE_MARKER``)
_LEAD_IN_END = re.compile(r"[:：][\s*_]*(?:\[\s*\d{1,4}(?:\s*[,;\-–]\s*\d{1,4})*\s*\][\s*_]*)*$")


def ends_lead_in(sentence: str) -> bool:
    """``sentence`` ends as a lead-in does, with a colon, ASCII or full-width, its citations aside
    (``_LEAD_IN_END``): the one rule ``markdown_blocks.dangling_lead_ins`` and
    ``grounding.is_factual`` read a lead-in by. With ":" alone, a CJK report's
    "手順は次のとおりです：" was checked as a claim, and a bold "**The steps are:**" under which
    nothing came was never read as cut short; nor was "The steps are: [1]", kept unchecked."""
    return _LEAD_IN_END.search(sentence) is not None


def _blocks(text: str, paged: bool = False) -> Iterable[tuple[int, str, int | None]]:
    """(offset, block, page) for each blank-line separated block of each page (numbered when the
    text has a page break, or ``paged``: a document of one page has none)."""
    paged = paged or PAGE_BREAK in text
    offset = 0
    for number, page in enumerate(text.split(PAGE_BREAK), start=1):
        for match in _PARAGRAPH.finditer(page):
            yield offset + match.start(), match.group(0).rstrip(), number if paged else None
        offset += len(page) + len(PAGE_BREAK)


#: what a line of prose ends with; a short line alone in its block without one is a title
_LINE_END = re.compile(rf"[.!?:;,)\]\"'`…：；、{CJK_FULL_STOPS}{CJK_CLOSERS}]$")
#: what starts a line that is no title: a list item, a table row, a quote, a fence, markup
_NOT_TITLE_START = re.compile(r"^\s*(?:[-*+>|#<]|\d+[.)]\s|`{3}|~{3}|\.\.)")
TITLE_MAX_CHARS = 80
TITLE_MAX_WORDS = 10


def title_line(block: str, first: bool = False) -> bool:
    """Whether a blank-line separated ``block`` is a title: one short line with no sentence end,
    the first block of its document or page (a plain text file's, a PDF page's: "Windows notes for
    the Falconer agent"), or anywhere in Title Case ("Rotation Policy"). Its next paragraph's first
    sentence was quoted with it run in ("... Falconer agent The Windows agent installs as a
    service"). A plain line further on ("The default port is 8443") stays text."""
    line = block.strip()
    return (0 < len(line) <= TITLE_MAX_CHARS and "\n" not in line and len(line.split()) <= TITLE_MAX_WORDS
            and not _LINE_END.search(line) and not _NOT_TITLE_START.match(line) and any(c.isalpha() for c in line)
            and (first or _title_case(line)))


#: words a Title Case line may write in lower case
_SMALL_WORDS = frozenset("a an and as at but by for from in into nor of on or over the to up vs via with".split())


def _title_case(line: str) -> bool:
    """Every word of letters in ``line`` starts with a capital, but the small ones (of, the, and)."""
    words = [w for w in line.split() if w[:1].isalpha()]
    return bool(words) and all(w[0].isupper() or w.lower() in _SMALL_WORDS for w in words)


def _paragraphs(text: str, paged: bool = False) -> Iterable[tuple[int, int, str | None, bool, int | None]]:
    """(start, end, heading, is_heading_only, page) for each blank-line separated block; an ATX
    heading, or a block that is one title line (``title_line``) followed by another block, is a heading."""
    heading: str | None = None
    current_page: int | None = None
    blocks = list(_blocks(text, paged))
    for n, (offset, block, page) in enumerate(blocks):
        if page != current_page:  # a heading holds on its own page only (a slide's title)
            heading, current_page = None, page
        start, end = offset, offset + len(block)
        opens_page = n == 0 or blocks[n - 1][2] != page
        if title_line(block, opens_page) and n + 1 < len(blocks) and blocks[n + 1][2] == page:
            heading = block.strip()
            yield start, end, heading, True, page
            continue
        first, _, rest = block.partition("\n")
        found = _HEADING_LINE.match(first)
        if found:
            heading = found.group(1).strip()
            if not rest.strip():
                yield start, end, heading, True, page
                continue
            start += len(first) + 1
            while start < end and text[start].isspace():
                start += 1
        yield start, end, heading, False, page


def tilde_adornment(text: str, start: int, end: int) -> bool:
    """The line ``text[start:end]`` is a run of ``~`` that under- or overlines a title (as
    reStructuredText writes one: at least as long as the title, right under it, or above and under
    it), not a code fence: a README's "Linking to libxxhash.so" / "~~~~" opened a fence, and the
    rest of the document was read as code."""
    line = text[start:end].strip()
    if not line or set(line) != {"~"}:
        return False
    # the line right above and the two right below, sliced alone (a slice of the whole text per
    # ``~~~`` line made a long RST file's split quadratic)
    above = ""
    if start > 0 and text[start - 1] == "\n" and not (start > 1 and text[start - 2] == "\n"):
        above = text[text.rfind("\n", 0, start - 1) + 1:start - 1]
    if above.strip() and set(above.strip()) != {"~"} and len(line) >= len(above.strip()):
        return True
    if text[end:end + 1] != "\n" or text[end + 1:end + 2] == "\n":
        return False
    first_end = text.find("\n", end + 1)
    second_end = text.find("\n", first_end + 1) if first_end != -1 else -1
    if first_end == -1:
        return False
    title = text[end + 1:first_end]
    under = text[first_end + 1:second_end if second_end != -1 else len(text)]
    return bool(title.strip()) and under.strip() == line and len(line) >= len(title.strip())


def _code_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, fence) of each fenced code block's inside, from the end of its opening fence
    line to the start of its closing one (or the text's end when it never closes), and the
    opening fence's mark (three or more backticks or tildes)."""
    spans: list[tuple[int, int, str]] = []
    opened: tuple[str, int] | None = None  # the open fence's mark and where its code starts
    for found in _FENCE_LINE.finditer(text):
        mark, rest = found.group(1), found.group(2)
        if opened is None and tilde_adornment(text, found.start(), found.end()):
            continue  # an RST title's ~~~ under- or overline opens no code
        if opened is None:
            if mark[0] == "~" or "`" not in rest:  # an info string may not hold a backtick
                opened = (mark, found.end())
        elif mark[0] == opened[0][0] and len(mark) >= len(opened[0]) and not rest.strip():
            spans.append((opened[1], found.start(), opened[0]))
            opened = None
    if opened is not None:
        spans.append((opened[1], len(text), opened[0]))
    return spans


def split_passages(text: str, max_chars: int = MAX_PASSAGE_CHARS, *, paged: bool = False) -> list[Passage]:
    """Cut ``text`` into passages of at most ``max_chars`` that keep their offsets, heading and page.
    ``paged``: the document has pages though ``text`` has no page break (a one-page PDF, a
    one-slide deck: its source's URL names ``#page=``); its passages are on page 1.

    A passage that starts inside a fenced code block (a blank line in the code split it from its
    opening fence) says so: ``code_open: True``, and ``code_fence`` is that block's opening mark
    (a closing ``~~~`` or four-backtick fence only closes its own kind); ``quoting.flatten``
    reads its first lines as code.
    """
    passages = _split(text, max_chars, paged)
    spans = _code_spans(text) if "```" in text or "~~~" in text else []
    for passage in passages:
        fence = next((mark for start, end, mark in spans if start <= passage["start"] < end), None)
        if fence:
            passage["code_open"] = True
            passage["code_fence"] = fence
    return passages


def _split(text: str, max_chars: int, paged: bool = False) -> list[Passage]:
    passages: list[Passage] = []
    for start, end, heading, heading_only, page in _paragraphs(text, paged):
        if heading_only:
            continue
        last = passages[-1] if passages else None
        if last and (last["heading"], last["page"]) == (heading, page) and end - last["start"] <= max_chars:
            last["end"] = end
            last["text"] = text[last["start"] : end]
            continue
        while end - start > max_chars:  # a long paragraph: cut at a sentence end before the limit
            window = text[start : start + max_chars]
            cut = max(_sentence_ends(window), default=0) or max_chars
            passages.append({"start": start, "end": start + cut, "heading": heading, "page": page,
                             "text": text[start : start + cut]})
            start += cut
            while start < end and text[start].isspace():
                start += 1
        if end > start:
            passages.append({"start": start, "end": end, "heading": heading, "page": page, "text": text[start:end]})
    return passages


#: a line that so far holds only a number: the dot after it marks a list item ("4. "), no sentence end
_LIST_NUMBER = re.compile(r"(?:^|\n)[ \t]*\d{1,9}$")


_ITEM_START = re.compile(r"\n(?=[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t])")


#: a sentence end a long paragraph may be cut after: . ! ? before a space, a CJK 。．！？ (and the
#: closing quotes right after it) anywhere
_SENTENCE_END = re.compile(rf"[.!?](?=\s)|{CJK_SENTENCE_BREAK}")


def _sentence_ends(window: str) -> Iterable[int]:
    """Where a long paragraph may be cut: just past each sentence end of ``window``
    (``_SENTENCE_END``), except the dot of a list number at a line's start (``4. Save``, which
    would leave ``4.`` as a passage of its own), and before each list item."""
    for match in _SENTENCE_END.finditer(window):
        if match.group(0) == "." and _LIST_NUMBER.search(window, 0, match.start()):
            continue
        yield match.end()
    yield from (match.start() for match in _ITEM_START.finditer(window))


def snippet_passage(snippet: str) -> Passage:
    """A search snippet as the only passage of a source that was not read."""
    return {"start": None, "end": None, "heading": None, "page": None, "text": " ".join(snippet.split())}


def select_passages(passages: Sequence[Passage], terms: set[str], budget: int, title: str = "") -> list[Passage]:
    """The passages whose stems shared with ``terms`` weigh most (``rarity_weights``: a word most
    passages hold, "runpod" or "job" in a RunPod page, weighs little beside the one few hold,
    "states"), within ``budget`` characters, in document order. A passage's heading counts ("## Job
    states" over "IN_QUEUE -> IN_PROGRESS -> ..."), but not the document's ``title``, the heading of
    its opening paragraph, which names every topic of the page. Counted unweighted, the page's generic
    words tied the opening and "Endpoint operations" with "Job states", and a quick read left it out."""
    def stems(passage: Passage) -> set[str]:
        heading = passage.get("heading") or ""
        return set(content_stems(f"{heading if heading != title else ''} {passage['text']}"))

    held = [terms & stems(p) for p in passages]
    weight = rarity_weights(held)
    score = [sum(weight[t] for t in shared) for shared in held]
    order = sorted(range(len(passages)), key=lambda i: (-score[i], i))
    chosen: list[int] = []
    used = 0
    for i in order:
        size = len(passages[i]["text"]) + 2
        if used + size > budget and chosen:
            continue
        chosen.append(i)
        used += size
        if used >= budget:
            break
    return [passages[i] for i in sorted(chosen)]


def rarity_weights(held: Sequence[set[str]]) -> dict[str, float]:
    """Each stem's weight by how few of the documents ``held`` (each one's set of stems) hold it:
    BM25's inverse document frequency, positive even for a stem that every document holds."""
    frequency: Counter[str] = Counter(term for stems in held for term in stems)
    return {term: math.log(1 + (len(held) - n + 0.5) / (n + 0.5)) for term, n in frequency.items()}


def bm25_scores(query: str, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Okapi BM25 of ``query`` against each of ``documents`` (same stems as the checker)."""
    return [sum(weights.values()) for weights in bm25_term_weights(query_terms(query), documents, k1=k1, b=b)]


def bm25_term_weights(terms: Iterable[str], documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75
                      ) -> list[dict[str, float]]:
    """Each of ``documents``' BM25 weight for each of the stems ``terms`` it holds: what a
    document's ``bm25_scores`` adds up, term by term (which of the query's words it is about)."""
    docs = [Counter(content_stems(d)) for d in documents]
    if not docs:
        return []
    lengths = [sum(d.values()) for d in docs]
    average = (sum(lengths) / len(docs)) or 1.0
    frequency: Counter[str] = Counter(term for d in docs for term in d)
    wanted = set(terms)
    weights = []
    for doc, length in zip(docs, lengths, strict=True):
        weight: dict[str, float] = {}
        for term in wanted & doc.keys():
            idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            tf = doc[term]
            weight[term] = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))
        weights.append(weight)
    return weights


def pool_of(passages: Mapping[str, Sequence[Passage]]) -> list[tuple[int, Passage]]:
    """Every passage of every source as ``(source id, passage)``, sources in id order."""
    return [(int(sid), p) for sid in sorted(passages, key=int) for p in passages[sid]]
