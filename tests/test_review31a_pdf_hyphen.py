"""A word justified PDF text broke at a line's end is joined where the line broke, and nothing
around it moves: the punctuation after it stays with it, a paragraph's last line leaves no blank
line, a word broken twice is one word, and an address keeps its own hyphen."""

from __future__ import annotations

from pathlib import Path

from test_search_documents import make_pdf

from providers.search.local_index import LocalIndexSearch
from providers.web.documents import _pdf_page_text, hyphenated_words


def _page(*lines: str) -> str:
    text = "\n".join(lines)
    return _pdf_page_text(text, hyphenated_words([text]))


def test_the_punctuation_after_a_joined_word_stays_with_it() -> None:
    assert _page("We read the configu-", "ration, then the service starts.") == (
        "We read the configuration,\nthen the service starts.")
    assert _page("Restart the ser-", "vice. Then check it.") == "Restart the service.\nThen check it."


def test_a_joined_word_that_was_all_of_its_line_leaves_no_paragraph_break() -> None:
    text = _page("Intro.", "We read the whole configu-", "ration", "and then it starts.")
    assert "\n\n" not in text and text == "Intro.\nWe read the whole configuration\nand then it starts."


def test_a_word_broken_twice_is_one_word() -> None:
    assert _page("it is in-", "compre-", "hensible to me") == "it is incomprehensible\nto me"


def test_an_address_keeps_its_own_hyphen() -> None:
    assert _page("see https://example.com/getting-", "started for more") == (
        "see https://example.com/getting-started\nfor more")


async def test_a_search_snippet_shows_no_stray_space_before_a_comma(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "paper.pdf").write_bytes(make_pdf([["The agent reads its configu-", "ration, then it starts."]]))
    found = await LocalIndexSearch([docs], tmp_path / "idx.sqlite").search("configuration", 3)
    assert found and "configuration, then" in found[0].snippet, found
