"""PDF text as pypdf gives it: a font's ligature glyphs come out as one character (U+FB01 'ﬁ' for
"fi"), so "conﬁguration" was another word than "configuration": the question found nothing and
the quote check could not match it. Soft hyphens (U+00AD) cut words the same way."""

from __future__ import annotations

from pathlib import Path

from test_search_documents import make_pdf

from providers.search.local_index import LocalIndexSearch
from providers.web.documents import _pdf_page_text

#: Helvetica's StandardEncoding code of the "fi" ligature (0xAE), as a PDF string escape: the same
#: length as its placeholder, so the file's offsets stay right
FI, PLACEHOLDER = b"\\256", b"@@@@"


async def test_a_pdf_whose_font_writes_ligatures_is_found_by_the_plain_word(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    line = "The con@@@@guration @@@@le sets the @@@@rst retry after 30 seconds."
    (docs / "manual.pdf").write_bytes(make_pdf([[line]]).replace(PLACEHOLDER, FI))
    results = await LocalIndexSearch([docs], tmp_path / "idx.sqlite").search("configuration file first retry", 3)
    assert [Path(r.url.split("#")[0]).name for r in results] == ["manual.pdf"]
    assert "configuration file sets the first retry" in results[0].snippet


def test_ligatures_and_soft_hyphens_are_written_out() -> None:
    text = _pdf_page_text("The ﬁle ﬂows oﬀ the eﬃcient baﬄe.\nA con\u00adfiguration key.")
    assert text == "The file flows off the efficient baffle.\nA configuration key."


async def test_a_word_hyphenated_at_a_line_end_is_one_word_again(tmp_path: Path) -> None:
    """Justified PDF text breaks words at a line's end ("configu-" / "ration"): the word was in no
    index nor quote. It is joined; a compound the document also writes whole on one line keeps
    its hyphen ("state-of-the-art"), and so does one before a capital or a digit."""
    docs = tmp_path / "docs"
    docs.mkdir()
    lines = ["The configu-", "ration file and the state-of-the-", "art method, a state-of-the-art one,", "in Mid-",
             "Atlantic offices since 2019-", "2020."]
    (docs / "paper.pdf").write_bytes(make_pdf([lines]))
    results = await LocalIndexSearch([docs], tmp_path / "idx.sqlite").search("configuration", 3)
    assert [Path(r.url.split("#")[0]).name for r in results] == ["paper.pdf"]
    text = _pdf_page_text("\n".join(lines), hyphenated={"state-of-the-art"})
    assert text == ("The configuration\nfile and the state-of-the-art\nmethod, a state-of-the-art one,\nin Mid-\n"
                    "Atlantic offices since 2019-\n2020.")
