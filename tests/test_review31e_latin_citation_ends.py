"""The ends of a Latin sentence beyond a lone ".", "!" or "?": a run of stops ("?!", "...", "…")
and a stop inside a closing quote or bracket ('He said "yes."', "(for good.)"). The keyless report
wrote "Really? [1]!" (the run cut in two), "goes on.. [1]." (an ellipsis cut, a stop added) and
'"yes." [1].' (a stop after a sentence that had ended inside its quote).

The rule (``quoting.cite``): the marker goes before the run of stops that ends the sentence
("Really [1]?!", "goes on [1]..."); a sentence that ends inside a closing quote or bracket keeps
it whole, with the marker after it and no stop added ('He said "yes." [1]'): the marker is no
part of what was quoted."""

from __future__ import annotations

import pytest

from graphs.research.citations import check_citations, join_sentences, split_sentences
from graphs.research.extractive import extractive_report
from graphs.research.grounding import ground
from graphs.research.passages import split_passages
from graphs.research.quoting import cite

#: a paragraph that ends with an ellipsis, then one that ends inside a quote
PURGE = ("# Falcon purge\n\nThe falcon agent purges old logs every night. The purge keeps the last seven days "
         "of logs and deletes the rest for good...\n\nThe manual of the falcon agent says of its log purge "
         "\"the purge of old logs runs at midnight.\"\n")


@pytest.mark.parametrize(("sentence", "cited"), [
    ("Really?!", "Really [4]?!"),
    ("It goes on...", "It goes on [4]..."),
    ("It goes on…", "It goes on [4]…"),
    ("It goes on ...", "It goes on [4]..."),
    ('He said "yes."', 'He said "yes." [4]'),
    ("He said “yes!”", "He said “yes!” [4]"),
    ("She wrote 'done.'", "She wrote 'done.' [4]"),
    ("The logs are gone (for good.)", "The logs are gone (for good.) [4]"),
    ('He asked "why?")', 'He asked "why?") [4]'),
    ('He said "yes.".', 'He said "yes." [4]'),  # a stop added after the quote (``quoting._ended``): it had ended
])
def test_a_run_of_stops_is_one_end_and_a_closing_quote_stays_whole(sentence: str, cited: str) -> None:
    assert cite(sentence, 4) == cited


@pytest.mark.parametrize(("sentence", "cited"), [
    ("It works.", "It works [4]."),
    ("Does it work?", "Does it work [4]?"),
    ('He said "yes"', 'He said "yes" [4].'),
    ('He said "yes".', 'He said "yes" [4].'),
    ("See the manual (page 4)", "See the manual (page 4) [4]."),
    ("Cut short,", "Cut short [4]."),
    ("本当に削除されますか！？", "本当に削除されますか [4]！？"),
    ("彼は『はい。』", "彼は『はい [4]。』"),
])
def test_sentences_cited_as_before(sentence: str, cited: str) -> None:
    assert cite(sentence, 4) == cited


def test_quotes_cited_so_are_read_back_one_sentence_each() -> None:
    """A sentence cited after its closing quote, or before its "…", ends there for the checker:
    the next quote joined after it was read as part of it, one claim of two sentences."""
    quotes = ['He said "yes."', "It goes on…", "Really?!", "(It is gone for good.)", "It works."]
    line = join_sentences(cite(q, n) for n, q in enumerate(quotes, start=1))
    assert split_sentences(line) == ['He said "yes." [1]', "It goes on [2]…", "Really [3]?!",
                                     "(It is gone for good.) [4]", "It works [5]."]
    sources = [{"id": n, "url": f"file:///{n}.md", "title": str(n)} for n in range(1, 6)]
    claims = [(c["claim"], c["source_ids"]) for c in check_citations(line, sources).citations]
    assert claims == [('He said "yes."', [1]), ("It goes on…", [2]), ("Really?!", [3]),
                      ("(It is gone for good.)", [4]), ("It works.", [5])]


def test_the_keyless_report_cites_such_sentences_as_a_reader_expects() -> None:
    passages = {"1": split_passages(PURGE)}
    report = extractive_report("When does the falcon agent purge old logs?", [],
                               [{"id": 1, "snippet": "", "title": "Falcon purge"}], passages)
    assert "deletes the rest for good [1]..." in report, report
    assert "\"the purge of old logs runs at midnight.\" [1]" in report, report
    assert ".. [" not in report and '" [1].' not in report, report
    claims = [c["claim"] for c in check_citations(report, [{"id": 1, "url": "file:///p.md", "title": "p"}]).citations]
    assert 'The manual of the falcon agent says of its log purge "the purge of old logs runs at midnight."' in claims, claims
    grounded = ground(report, {1: passages["1"]})
    assert grounded.unsupported == [] and grounded.supported == grounded.factual > 0, grounded
    assert "\"the purge of old logs runs at midnight.\" [1]" in grounded.report, grounded.report
