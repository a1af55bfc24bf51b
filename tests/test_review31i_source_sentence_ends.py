"""A source's sentence ends after a closing quote ('He said "yes." Next') and after an ellipsis
before a capitalised word ("every night… Operators asked"). Read as one run, such a sentence was
what a claim rested on: a claim citing the second half was held against the first half too, and
"never" there made a true claim read as the opposite of its passage.

The rule (``passages.SENTENCE_BREAK``): break after a stop inside closing quotes, brackets or
emphasis, and after a word's "…", before a capital; not before a lowercase word ('"Yes." he
said', "It ran... and stopped"), nor after an abbreviation's dot ('"U.S." Army')."""

from __future__ import annotations

import pytest

from graphs.research.citations import check_citations
from graphs.research.extractive import extractive_report
from graphs.research.grounding import ground
from graphs.research.passages import sentences_of, split_passages
from graphs.research.quoting import quotable_snippet


@pytest.mark.parametrize(("text", "sentences"), [
    ('He said "yes." Next sentence.', ['He said "yes."', "Next sentence."]),
    ("It ran every night… Operators asked why.", ["It ran every night…", "Operators asked why."]),
    ("He asked “why?” Nobody knew.", ["He asked “why?”", "Nobody knew."]),
    ("It is gone (for good.) The rest stays.", ["It is gone (for good.)", "The rest stays."]),
    ("It said 'done.' \"Next\" came after.", ["It said 'done.'", '"Next" came after.']),
    ("**Note.** The port is 8443.", ["**Note.**", "The port is 8443."]),
])
def test_a_source_sentence_ends_after_a_closing_quote_or_an_ellipsis(text: str, sentences: list[str]) -> None:
    assert sentences_of(text) == sentences


@pytest.mark.parametrize("text", [
    '"Yes." he said, and left.',
    "It ran... and then stopped.",
    "It ran… and then stopped.",
    'The agent ships to the "U.S." Army bases.',
    "Use one of them (e.g.) This one is fine.",
    "Use e.g. this one.",
])
def test_no_break_mid_quote_before_lowercase_or_inside_an_abbreviation(text: str) -> None:
    assert sentences_of(text) == [text]


NIGHTLY = ("# Falcon purge\n\nThe first manual of the falcon agent said \"never run the purge at night.\" "
           "The falcon agent now purges old logs every night at midnight.\n")
ELLIPSIS = ("# Falcon purge\n\nThe old falcon agent never purged its logs and the disk filled up every night… "
            "Operators asked for a purge, and the falcon agent now purges old logs every night at midnight.\n")


@pytest.mark.parametrize("document", [NIGHTLY, ELLIPSIS])
def test_a_claim_rests_on_its_own_sentence_not_the_one_before_it(document: str) -> None:
    """The claim rests on the sentence that says it: joined to the sentence before it, whose
    "never" it does not say, it was refused as saying the opposite of its source."""
    passages = {1: split_passages(document)}
    report = "## Purge\n\nThe falcon agent purges old logs every night at midnight [1].\n"
    grounded = ground(report, passages)
    assert grounded.unsupported == [] and grounded.undecided == [], grounded
    assert grounded.supported == grounded.factual == 1


@pytest.mark.parametrize("document", [NIGHTLY, ELLIPSIS])
def test_the_keyless_report_quotes_each_source_sentence_as_its_own_claim(document: str) -> None:
    passages = {"1": split_passages(document)}
    report = extractive_report("When does the falcon agent purge old logs?", [],
                               [{"id": 1, "snippet": "", "title": "Falcon purge"}], passages)
    claims = [c["claim"] for c in check_citations(report, [{"id": 1, "url": "file:///p.md", "title": "p"}]).citations]
    assert "The falcon agent now purges old logs every night at midnight." in claims or any(
        c.startswith("Operators asked for a purge") for c in claims), (report, claims)
    assert all("never" not in c or "midnight" not in c for c in claims), claims
    grounded = ground(report, {1: split_passages(document)})
    assert grounded.unsupported == [] and grounded.supported == grounded.factual > 0, grounded


def test_a_snippet_cut_in_its_middle_keeps_only_whole_sentences() -> None:
    """The search engine's "…" in a snippet's middle marks text left out: the part before it is
    cut short, and now a sentence of its own, left out as a snippet's last cut one is."""
    snippet = "The agent purges old logs at midnight. It keeps seven days of logs and… Operators can change it."
    assert quotable_snippet(snippet) == "The agent purges old logs at midnight. Operators can change it."
