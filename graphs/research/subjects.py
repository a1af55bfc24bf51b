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
from collections.abc import Iterable, Sequence

from graphs.research.passages import STOPWORDS, content_stems

#: a word as written: letters, digits and the joints of identifiers (``load_dotenv``, ``os.path``,
#: ``C++``); a trailing dot, hyphen or apostrophe is punctuation
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+#-]*[A-Za-z0-9_+#]|[A-Za-z0-9]")
#: where a sentence of the question starts: its first word's capital says nothing
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\s*[\"'(\[]*$")


def _is_name(word: str, sentence_start: bool) -> bool:
    """A word that names something: an identifier (a digit beside letters, ``_``, an inner dot,
    a capital after a small letter: ``h11``, ``load_dotenv``, ``useEffect``), a word in capitals
    (``HTTPX``), or a capitalised word that does not start a sentence (``Kubernetes``)."""
    if len(word) < 2 or word.lower() in STOPWORDS or word.isdigit():
        return False
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return False
    identifier = ("_" in word or "." in word.strip(".") or any(c.isdigit() for c in word)
                  or re.search(r"[a-z][A-Z]", word) is not None)
    shouted = len(letters) >= 2 and all(c.isupper() for c in letters)
    return identifier or shouted or (word[0].isupper() and not sentence_start)


def named_terms(question: str) -> list[str]:
    """The names ``question`` gives, as written, each once, in order."""
    names: dict[str, None] = {}
    for match in _WORD.finditer(question):
        start = _SENTENCE_START.search(question[: match.start()]) is not None
        if _is_name(match.group(), start):
            names.setdefault(match.group(), None)
    return list(names)


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
