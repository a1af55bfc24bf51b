"""Passage text as quotable sentences and quotes, for the extractive report (``extractive.py``)
and its opening (``opening.py``): a passage flattened to one line of prose, a search snippet cut to
its whole sentences, a quote trimmed to the best run of sentences that fits ``MAX_QUOTE_CHARS``,
each sentence cited with the ``[n]`` of its source; passages ranked with BM25 for a query, and how
many of its words a sentence must say to answer it (``opening_floor``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.cjk import CJK_SENTENCE_BREAK, CJK_SENTENCE_END, join_text
from graphs.research.citations import join_sentences
from graphs.research.grounding import normalise
from graphs.research.passages import (
    LATIN_CLOSERS,
    LATIN_STOPS,
    bm25_scores,
    sentences_of,
    tilde_adornment,
    title_line,
)
from graphs.research.rst_markup import is_rst, rst_inline, rst_lines
from graphs.research.stems import content_stems

#: a quoted passage is trimmed to the best run of sentences that fits this
MAX_QUOTE_CHARS = 600
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s|$)")
#: a line that only underlines or overlines a heading (Markdown's setext ``===`` and ``---``, RST's
#: marks), or a Markdown thematic break; fences (``~~~``, backticks) are read before this
_UNDERLINE = re.compile(r"^([=\-^*+#_])\1{2,}$")
#: a code fence line: its mark and the rest of the line (an info string, or nothing on a close)
_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})(.*)$")
#: what marks a snippet's sentence as code or table cells flattened onto one line by the search engine
_FLAT_CODE = re.compile(r"`{3}|~{3}|\s\|\s")
#: a fenced code block flattened into a line, or a URL: no words a sentence says
_LINK_OR_CODE = re.compile(r"(`{3,}|~{3,}).*?(?:\1|$)|\b[a-z][a-z0-9+.-]*://\S+")
#: where an over-long sentence may be cut: after . ; ! or ? and a space, whatever follows, or
#: after a CJK ； or sentence end (``cjk.CJK_SENTENCE_BREAK``: 。．！？ and the closing quotes after it)
_CLAUSE_END = re.compile(rf"(?<=[.;!?])\s+|(?<=；)\s*|{CJK_SENTENCE_BREAK}\s*")
#: what ends a Latin sentence, a run of stops ("?!", "...", "…") read as one, and the closing quotes,
#: brackets and emphasis it may end inside ('He said "yes."', "(for good.)", "**Note.**"), with any
#: stop after them (``_ended``'s, '"yes.".'); ``cite`` puts a marker by it (a CJK one's: ``cjk.CJK_SENTENCE_END``)
_LATIN_END = re.compile(rf"\s*([{LATIN_STOPS}]+)((?:[{re.escape(LATIN_CLOSERS)}]+[{LATIN_STOPS}]*)?)$")
#: linked images (``[![PyPI](...)](...)``) and bare images at the start of a sentence
_BADGES = re.compile(r"^(?:(?:\[!\[[^\]]*\]\([^)\s]*\)\]\([^)\s]*\)|!\[[^\]]*\]\([^)\s]*\))\s*)+")
#: a sentence that starts by pointing back ("This means that...", "However, ...", "It's a ...")
#: reads as an answer only after the sentence before it: quoted alone, it dangles
_POINTS_BACK = re.compile(r"^(?:this|that|these|those|thus|therefore|hence|however|instead|otherwise|also|"
                          r"furthermore|moreover|but|and|so|it|its|they|their|such|then)\b(?!\s*[:=(.])", re.IGNORECASE)


def flatten(text: str, code_fence: str | None = None, *, document_start: bool = False) -> str:
    """A passage as one line of prose: headings, list markers and table rows off, list items ended.

    A heading inside a passage (an ATX ``## ...`` line, or a line underlined with ``===`` or
    ``---`` as setext Markdown and RST write one) is left out and the text before it ended: joined
    to the next paragraph, "Results and traces Every job result carries..." reads as one sentence.
    Lines inside a fenced code block are code: a ``# comment`` there is no heading.

    A table row (a line starting with ``|``) is no sentence: its cells joined would be quoted as
    one, cited, and read as prose.

    A passage that ends inside a fenced code block gets that block's closing fence (an unclosed
    fence in a quote turns the rest of the report, Sources included, into code).

    ``document_start``: ``text`` begins its document, whose YAML front matter is left out (a
    passage further on that opens with a ``---`` rule is text).

    ``code_fence``: the passage starts inside a fenced code block opened by this mark
    (``split_passages`` says so); it gets the opening fence it lacks (the block's own mark, so
    that its closing fence closes it), and its first lines read as code, not as an uncited sentence.
    """
    out = code_fence or ""
    fence = code_fence  # the mark of the code block the line is in; None in prose
    heading_from: int | None = None  # where the last prose line starts in ``out``, if it may be a heading
    lines, rst = _prose_lines(text, code_fence, document_start)
    block: list[str] = []  # the lines of prose since the last blank line
    in_item = False  # the last prose line was a list item's: a blank line after it ends it
    for n, raw in enumerate(lines):
        line = raw.strip()
        # one Title Case line alone in its block (a passage's first block may be text: a document's
        # first is its heading already, passages.title_line), or an RST ~~~ underline's title: left out
        if fence is None and (not line and len(block) == 1 and title_line(block[0])
                              or line[:3] == "~~~" and _tilde_title(lines, n)):
            out, heading_from = _ended(out[:heading_from].rstrip() if heading_from is not None else out), None
            if line:
                continue
        block = block + [line] if line and fence is None else []
        after = _fence_after(fence, raw)
        if fence is not None or after is not None:  # code, or a fence line
            if fence is None:  # the opening fence without its info string: "```bash pip install" read as code's words
                line = after or line
            fence, heading_from = after, None
            out = f"{out} {line}" if out and line else out or line
            continue
        if not line or line.startswith("|"):
            if in_item and not line:  # "- ClickHouse" and the paragraph after the list are two sentences
                out, in_item = _ended(out), False
            heading_from = None
            continue
        if _HEADING.match(line) or _UNDERLINE.match(line):
            if _UNDERLINE.match(line) and heading_from is not None:
                out = out[:heading_from].rstrip()  # the line above it was a heading
            out, heading_from = _ended(out), None
            continue
        if rst:
            line = rst_inline(line)
        item = _LIST_ITEM.match(line)
        if item:
            line = line[item.end():]
            out = _ended(out)
            in_item = True
        heading_from = len(out)
        out = join_text(out, line) if out else line  # "再起\n動": no space inside CJK text
    return " ".join(_closed(out, fence).split())


def _closed(out: str, fence: str | None) -> str:
    """``out`` with the code fence it leaves open closed: the passage ends inside a code block
    (``fence``), or a fence inside a line (a snippet flattened by the search engine); the quote's
    open fence would swallow the rest of the report, Sources included."""
    if fence is not None:
        return f"{out} {fence}"
    return f"{out} ```" if out.count("```") % 2 else out


def _prose_lines(text: str, code_fence: str | None, document_start: bool) -> tuple[list[str], bool]:
    """``text``'s lines as ``flatten`` reads them (reStructuredText's markup out, and YAML front
    matter where ``text`` starts its document; a table's rows as sentences: not in a passage that
    starts inside code), and whether it is reStructuredText."""
    if code_fence is not None:
        return text.splitlines(), False
    rst = is_rst(text)
    lines = rst_lines(text.splitlines()) if rst else text.splitlines()
    lines = _without_front_matter(lines) if document_start else lines
    return (_tables_as_sentences(lines) if "|" in text else lines), rst


#: a Markdown table's separator row: ``|---|:--:|``
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?$")
#: a row's cells are said up to this many
_TABLE_MAX_CELLS = 8


#: a cell border: a ``|`` not escaped (``\|`` is a pipe inside a cell)
_CELL_BORDER = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> list[str]:
    row = line.strip().removeprefix("|")
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [" ".join(cell.replace("\\|", "|").split()) for cell in _CELL_BORDER.split(row)]


def _tables_as_sentences(lines: list[str]) -> list[str]:
    """Each data row of a Markdown table (a header row, its ``|---|`` separator, then rows) as one
    sentence naming each cell by its column, "Variable: FALCONER_BATCH; Default: 500; Meaning:
    rows per batch.": a row was no sentence and left out, so a table's answer ("What is the default
    value of FALCONER_BATCH?") was never quoted. Rows without a header in the passage stay rows
    (``flatten`` leaves them out); code blocks are left as they are."""
    out: list[str] = []
    header: list[str] | None = None
    fence: str | None = None
    for n, line in enumerate(lines):
        fence = _fence_after(fence, line) if fence is not None or _FENCE.match(line) else fence
        stripped = line.strip()
        if fence is not None or not stripped.startswith("|"):
            header = None
            out.append(line)
            continue
        if _TABLE_SEPARATOR.match(stripped):
            continue  # its header was read from the line above
        if header is None:
            below = lines[n + 1].strip() if n + 1 < len(lines) else ""
            if _TABLE_SEPARATOR.match(below):
                header = _cells(stripped)
                out.append("")  # the header row is no sentence; the rows follow as their own
                continue
            out.append(line)  # a row without its header: left out by ``flatten``
            continue
        said = [f"{name}: {value}" if name else value
                for name, value in zip(header, _cells(stripped)[:_TABLE_MAX_CELLS], strict=False) if value]
        if said:
            out += [_ended("; ".join(said)), ""]
    return out


#: a YAML front matter line: ``key: value``, a list item, or a continuation
_FRONT_MATTER_LINE = re.compile(r"^(?:[A-Za-z_][\w-]*\s*:(?:\s.*)?|\s+\S.*|-\s.*|)$")
_FRONT_MATTER_MAX_LINES = 40


def _without_front_matter(lines: list[str]) -> list[str]:
    """``lines`` without the YAML front matter a Markdown document may open with (``---``, ``key:
    value`` lines, ``---``): metadata, not prose ("title: Deployment Guide for Falconer author:
    ops-team tags: [deploy, kubernetes] [1]." was quoted as a sentence)."""
    if not lines or lines[0].strip() != "---":
        return lines
    for n, line in enumerate(lines[1:_FRONT_MATTER_MAX_LINES], start=1):
        if line.strip() in ("---", "..."):
            return lines[n + 1:] if n > 1 else lines
        if not _FRONT_MATTER_LINE.match(line):
            return lines
    return lines


def _tilde_title(lines: list[str], n: int) -> bool:
    """``lines[n]``, a run of ``~``, under- or overlines a title (``passages.tilde_adornment``)."""
    text = "\n".join(lines[max(0, n - 1):n + 3])
    start = len(lines[n - 1]) + 1 if n else 0
    return tilde_adornment(text, start, start + len(lines[n]))


def _fence_after(fence: str | None, line: str) -> str | None:
    """The open code fence after ``line``, given the one before it (``None``: prose): a backtick
    fence's info string holds no backtick, and a close is a bare mark of the same kind, as long."""
    found = _FENCE.match(line)
    if not found:
        return fence
    mark, rest = found.group(1), found.group(2)
    if fence is None:
        return mark if mark[0] == "~" or "`" not in rest else None
    return None if mark[0] == fence[0] and len(mark) >= len(fence) and not rest.strip() else fence


def _ended(text: str) -> str:
    """``text`` ended as a sentence, so the next line does not run into it."""
    return f"{text}." if text and text[-1] not in ".!?:;：；" and not CJK_SENTENCE_END.search(text) else text


def quotable_snippet(snippet: str, title: str = "") -> str:
    """The whole sentences of a search snippet, the rest left out.

    A snippet is the search engine's cut of a page: it may begin and end mid-sentence (marked
    ``…``), begin with the page's title run into its first paragraph ("runpod-swarm: project
    overview runpod-swarm is a modular..."), and hold code or table cells flattened onto one line.
    Quoted, each of those reads as a garbled sentence, yet counts as supported (the snippet holds it).
    A cut in its middle ("…runs nightly… Operators can…") ends the sentence before it
    (``passages.SENTENCE_BREAK``), which is left out as the last one is.
    """
    text = " ".join(snippet.split())
    if title and text.startswith(f"{title} "):
        text = text[len(title) + 1:]
    sentences = sentences_of(text)
    if sentences and sentences[0].startswith("…"):
        sentences = sentences[1:]
    return join_sentences(s for s in sentences if not s.endswith("…") and not _FLAT_CODE.search(s))


def cite(sentence: str, source_id: int) -> str:
    """``sentence`` with the marker ``[n]`` of its source by the punctuation that ends it.

    The marker goes before the run of stops that ends the sentence, read as one end: "It works
    [1].", "Really [1]?!", "It goes on [1]..." (``.``, ``!``, ``?`` and ``…``). A sentence that
    ends inside a closing quote or bracket (``"`` ``'`` ``”`` ``’`` ``)`` ``]``), or inside Markdown
    emphasis (``**`` ``__`` ``*`` ``_``), has ended there: the quote stays whole, the marker goes
    after it, and no stop is added ('He said "yes." [1]', "(It is gone for good.) [1]", "**Note.**
    [1]": not "**Note.** [1]."): a marker inside it would read as part of what was quoted, and a
    stop after it ('"yes." [1].') ends the sentence twice. A quote without a stop in it is a word
    of the sentence, cited before the sentence's own stop ('He said "yes" [1].').

    A CJK sentence's marker goes before its run of full stops and the closing quotes after them
    (``cjk.CJK_SENTENCE_END``: "…と言った [1]。」", "本当 [1]！？"), as Japanese and Chinese place a
    note. A sentence that ends with none of these (cut short, a link target, code) gets a full
    stop after the marker, so the sentence splitter never joins it to the next quote. Badges it
    starts with (a README's first line of linked images, which the splitter joins to the sentence
    after them) are left out: they say nothing."""
    sentence = _BADGES.sub("", sentence.strip()) or sentence.strip()
    if cjk_end := CJK_SENTENCE_END.search(sentence):
        return f"{sentence[:cjk_end.start()]} [{source_id}]{cjk_end.group(0)}"
    if latin_end := _LATIN_END.search(sentence):
        stops, closed = latin_end.groups()
        if closed:  # ended inside the quote: a stop after it goes ('"yes.".')
            return f"{sentence[:latin_end.start(2)]}{closed.rstrip(LATIN_STOPS)} [{source_id}]"
        return f"{sentence[:latin_end.start()]} [{source_id}]{stops}"
    return f"{sentence.rstrip(',;:')} [{source_id}]."


def _hits(sentence: str, terms: set[str]) -> int:
    return len(terms & set(content_stems(sentence)))


def said_terms(text: str, terms: set[str]) -> set[str]:
    """The ``terms`` that ``text`` says in words: not in a link target or a fenced code block
    ("library" in ``docs.python.org/library/pyexpat.html`` is no word of the sentence)."""
    return terms & set(content_stems(_LINK_OR_CODE.sub(" ", text)))


def trim(sentences: Sequence[str], terms: set[str], used: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The run of consecutive sentences with most query terms that fits ``MAX_QUOTE_CHARS``.

    A sentence longer than that (a run of badges, links and code the splitter found no sentence
    end in) is read as its pieces ending at ``.``, ``;``, ``!`` or ``?``, and quoted as the part of
    it the run holds; a piece still too long is left out: cut at a word, it would be quoted as
    half a sentence ending in "…". Sentences in ``used`` (quoted already) are left out."""
    pieces = [(n, p) for n, s in enumerate(sentences) if normalise(s) not in used
              for p in ([s] if len(s) <= MAX_QUOTE_CHARS else _CLAUSE_END.split(s)) if len(p) <= MAX_QUOTE_CHARS]
    if not pieces:
        return []
    best: tuple[int, int, int] = (-1, 0, 0)  # hits, -start, end
    for start in range(len(pieces)):
        size, end = 0, start
        while end < len(pieces) and size + len(pieces[end][1]) <= MAX_QUOTE_CHARS:
            size += len(pieces[end][1]) + 1
            end += 1
        hits = sum(_hits(p, terms) for _, p in pieces[start:end])
        if (hits, -start) > best[:2]:
            best = (hits, -start, end)
    start, end = -best[1], best[2]
    # a run that starts a sentence by pointing back, after a whole sentence that still fits: quote that one too
    if start > 0:
        (n_before, before), (n, first) = pieces[start - 1], pieces[start]
        if (n_before == n - 1 and before == sentences[n_before] and sentences[n].startswith(first)
                and _POINTS_BACK.match(first) and sum(len(p) + 1 for _, p in pieces[start - 1:end]) <= MAX_QUOTE_CHARS + 1):
            best = (best[0], -(start - 1), end)
    quote: dict[int, str] = {}
    for n, piece in pieces[-best[1]:best[2]]:  # a sentence's pieces joined again: one quote, one [n]
        quote[n] = join_text(quote[n], piece) if n in quote else piece
    return list(quote.values())


def with_lead(sentences: Sequence[str], k: int, used: set[str]) -> list[str]:
    """Sentence ``k`` as a quote: after the sentence before it when it starts by pointing back
    (``_POINTS_BACK``), that one is not quoted yet and both fit ``MAX_QUOTE_CHARS``."""
    sentence = sentences[k]
    if k and _POINTS_BACK.match(sentence):
        before = sentences[k - 1]
        if normalise(before) not in used and len(before) + len(sentence) < MAX_QUOTE_CHARS:
            return [before, sentence]
    return [sentence]



def ranked(query: str, pool: Sequence[tuple[int, str]]) -> list[tuple[int, float]]:
    """``(pool index, BM25 score)`` of each passage that shares a term with ``query``, best first."""
    scores = bm25_scores(query, [text for _, text in pool])
    return [(i, scores[i]) for i in sorted(range(len(pool)), key=lambda i: (-scores[i], i)) if scores[i] > 0]


#: a sentence that starts with a short label and a colon ("Savers: ...", "Supported backends: ...")
_LABEL = re.compile(r"^[*_`]*[A-Za-z][\w`'-]*(?:\s+[\w`'-]+){0,2}[*_`]*:\s")
#: an enumeration: this many comma-separated items at least, those between the first and the last
#: of ``_ITEM_WORDS`` words at most ("It runs on Linux, macOS, Windows, FreeBSD and Solaris.")
_MIN_ITEMS = 4
_ITEM_WORDS = 3


def is_list_like(sentence: str) -> bool:
    """``sentence`` lists items rather than says what something is or does: a short label, a
    colon and items between commas ("Savers: InMemorySaver, SqliteSaver and PostgresSaver."),
    or ``_MIN_ITEMS`` items between commas, short but for the first and the last. It shares many
    of a question's words (each item one) and answers none of them the way "Tinyq is a job queue
    for ..." does."""
    label = _LABEL.match(sentence)
    if label and "," in sentence[label.end():]:
        return True
    items = sentence.split(",")
    return len(items) >= _MIN_ITEMS and all(len(item.split()) <= _ITEM_WORDS for item in items[1:-1])


def opening_floor(words: set[str]) -> int:
    """How many of the question's words (``content_stems``: single words, not the joined pairs
    ``query_terms`` adds for matching) a sentence must share to open the report as its answer:
    one for a short question (up to three words: "How does the fallback work?"), else two, and
    30% of them, rounded up, for a long one. A passage that BM25 ranks first may share one word
    of a long question with it and answer nothing; the joined pairs ("keepre", "asyncj") are no
    words a sentence can be asked to hold."""
    return 1 if len(words) <= 3 else max(2, -(-3 * len(words) // 10))

