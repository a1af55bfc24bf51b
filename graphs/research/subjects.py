"""What a question is about, by name, and which of those names no source found ever says.

A report quoted from the nearest passages answers an off-topic question ("How do I set
Kubernetes memory limits for a pod?" against docs that never say Kubernetes) with a sentence that
shares two common words with it ("set", "limit"), and every sentence of it is backed by the passage
it cites. Words counted, or weighted by how rare they are among the passages, do not tell such a
question from a real one (measured on the research quality bench: a gold question's opening shared
35% of the question's weight, an off-topic one 39%). What does tell them apart is the question's
subject: the names it gives (Kubernetes, Australia, Celery) are in no source found, while every name
a gold question gives is. The sentence-initial capital of an ordinary word is no name; a lower-case
name ("numpy") is not recognised, and the report stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from graphs.research.passages import STOPWORDS, content_stems

#: a word as written: letters (any script), digits and the joints of identifiers (``load_dotenv``,
#: ``os.path``, ``C++``); a trailing dot, hyphen or apostrophe is punctuation
_WORD = re.compile(r"[^\W_][\w.+#-]*[\w+#]|[^\W_]")
#: words in capitals that name nothing a source would have to say
_GENERIC_CAPS = frozenset("OK OKAY FAQ TODO FYI ASAP AI ETA TLDR IMO IMHO PS NB ELI5 TIL".split())
#: a question with three or more capitalised words, at least this share of its words (a name-heavy
#: question still writes its verbs and adjectives in small letters), is written in
#: Title Case: its capitals are style, and only identifiers and words in capitals name something
_TITLE_CASE_SHARE = 0.9
#: where a sentence of the question starts: its first word's capital says nothing
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\s*[\"'(\[]*$")


def _is_name(word: str, capital_counts: bool) -> bool:
    """A word that names something: an identifier (a digit beside letters, ``_``, an inner dot,
    a capital after a small letter: ``h11``, ``load_dotenv``, ``useEffect``), a word in capitals
    (``HTTPX``; not ``OK`` or ``FAQ``), or, where ``capital_counts``, a capitalised word
    (``Kubernetes``)."""
    if len(word) < 2 or word.lower() in STOPWORDS or word.isdigit() or word.upper() in _GENERIC_CAPS:
        return False
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return False
    identifier = ("_" in word or "." in word.strip(".") or any(c.isdigit() for c in word)
                  or re.search(r"[^\W\d_](?<!\w[A-Z])[A-Z]", word) is not None and not word.isupper())
    shouted = len(letters) >= 2 and all(c.isupper() for c in letters)
    return identifier or shouted or (capital_counts and word[0].isupper())


def named_terms(question: str) -> list[str]:
    """The names ``question`` gives, as written, each once, in order. The capital a sentence starts
    with is no name; in a question written in Title Case no capital is."""
    words = [(m.group(), _SENTENCE_START.search(question[: m.start()]) is not None) for m in _WORD.finditer(question)]
    inner = [w for w, start in words if not start and w.lower() not in STOPWORDS and w[0].isalpha()]
    capitalised = sum(w[0].isupper() and not w.isupper() for w in inner)  # Speed, not MCP
    title_case = capitalised >= 3 and capitalised >= _TITLE_CASE_SHARE * len(inner)
    names: dict[str, None] = {}
    for word, start in words:
        if _is_name(word, capital_counts=not start and not title_case):
            names.setdefault(word, None)
    return list(names)


def source_texts(sources: Iterable[Mapping[str, Any]], passages: Mapping[Any, Sequence[Mapping[str, Any]]]) -> list[str]:
    """What the sources found say, as read: each one's title and snippet, and each passage read
    from it with its heading (tables and code included: a word in a table row is said)."""
    texts = [f"{s.get('title') or ''}\n{s.get('snippet') or ''}" for s in sources]
    texts += [f"{p.get('heading') or ''}\n{p.get('text') or ''}" for read in passages.values() for p in read]
    return texts


def unmentioned(question: str, texts: Iterable[str]) -> list[str]:
    """The names of ``question`` that none of ``texts`` says (each of their word stems somewhere
    in them: "Sorted Containers" is said by a text that says "sorted" and "containers")."""
    names = named_terms(question)
    if not names:
        return []
    said: set[str] = set()
    for text in texts:
        said.update(content_stems(text))
    return [name for name in names if not set(content_stems(name)) <= said]


def missing_line(names: Sequence[str], *, sentence: bool = True) -> str:
    """What a report says about ``names`` (not empty): a sentence, or (``sentence=False``) the
    clause a warning starts with."""
    listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    return f"None of the sources found mentions {listed}." if sentence else f"none of the sources found mentions {listed}"
