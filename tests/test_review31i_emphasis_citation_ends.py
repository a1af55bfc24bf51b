"""A sentence that ends inside Markdown emphasis ("**Note.**", "_Done._") has ended there, as one
ending inside a closing quote has: the citation goes after the emphasis and no stop is added.
The keyless report wrote "**Note.** [1]." (the sentence ended twice), and the checker read the
next sentence into it."""

from __future__ import annotations

import pytest

from graphs.research.citations import check_citations, join_sentences, split_sentences
from graphs.research.quoting import cite


@pytest.mark.parametrize(("sentence", "cited"), [
    ("**Note.**", "**Note.** [2]"),
    ("__Note.__", "__Note.__ [2]"),
    ("It is *done.*", "It is *done.* [2]"),
    ("_Done._", "_Done._ [2]"),
    ("***Stop!***", "***Stop!*** [2]"),
    ("**Note.**.", "**Note.** [2]"),  # a stop added after the emphasis (``quoting._ended``): it had ended
])
def test_the_citation_goes_after_the_emphasis_a_sentence_ends_in(sentence: str, cited: str) -> None:
    assert cite(sentence, 2) == cited


@pytest.mark.parametrize(("sentence", "cited"), [
    ("It is **important**.", "It is **important** [2]."),
    ("Use _snake_case_ names", "Use _snake_case_ names [2]."),
])
def test_emphasis_without_a_stop_in_it_is_a_word_of_the_sentence(sentence: str, cited: str) -> None:
    assert cite(sentence, 2) == cited


def test_such_sentences_are_read_back_one_claim_each() -> None:
    quotes = ["**Restart the agent after an upgrade.**", "_The queue drains first._", "It works."]
    line = join_sentences(cite(q, n) for n, q in enumerate(quotes, start=1))
    assert split_sentences(line) == ["**Restart the agent after an upgrade.** [1]", "_The queue drains first._ [2]",
                                     "It works [3]."]
    sources = [{"id": n, "url": f"file:///{n}.md", "title": str(n)} for n in range(1, 4)]
    claims = [(c["claim"], c["source_ids"]) for c in check_citations(line, sources).citations]
    assert claims == [("**Restart the agent after an upgrade.**", [1]), ("_The queue drains first._", [2]),
                      ("It works.", [3])]
