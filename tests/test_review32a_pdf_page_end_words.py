"""A word justified PDF text broke at a page's end is joined with its rest on the next page even
where a running header or footer stands between them (a page number "2", a title "User Guide"
repeated at the top of the pages), and where the break is a soft hyphen (U+00AD), which is not
kept. A hyphenated compound keeps its hyphen over such a line, a capital after it is no broken
word, and the header or footer line stays where it was."""

from __future__ import annotations

import re
from pathlib import Path

from test_search_documents import make_pdf, pdf_file

from providers.search.local_index import LocalIndexSearch
from providers.web.documents import extract

#: a placeholder of the soft hyphen in ``make_pdf``'s lines; written as WinAnsiEncoding's 0xAD
SOFT = "@SOFT@"


def _winansi_pdf(pages: list[list[str]]) -> bytes:
    """``make_pdf``'s PDF with its Helvetica in WinAnsiEncoding (where 0xAD is the soft hyphen)
    and each ``SOFT`` written as that byte; the objects' offsets counted again."""
    raw = make_pdf(pages).replace(b"/BaseFont /Helvetica >>", b"/BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    objects = re.findall(rb"\d+ 0 obj\n(.*?)\nendobj\n", raw.replace(SOFT.encode(), b"\\255"), re.DOTALL)
    return pdf_file(objects)


def _pages(*pages: list[str]) -> tuple[str, ...]:
    return extract(Path("guide.pdf"), make_pdf(list(pages))).pages


def test_a_word_broken_over_a_page_number_is_one_word() -> None:
    pages = _pages(["We read the configu-", "1"], ["ration, then the service starts.", "2"])
    assert pages == ("We read the configuration,\n1", "then the service starts.\n2")


def test_a_word_broken_over_a_running_header_is_one_word() -> None:
    pages = _pages(["User Guide", "Introduction.", "We read the configu-"],
                   ["User Guide", "ration, then the service starts."])
    assert pages[0].endswith("We read the configuration,"), pages
    assert pages[1] == "User Guide\nthen the service starts.", pages
    both = _pages(["User Guide", "We read the configu-", "Page 1"], ["User Guide", "ration file.", "Page 2"])
    assert both[0].endswith("We read the configuration\nPage 1") and both[1] == "User Guide\nfile.\nPage 2", both


async def test_a_word_broken_over_a_footer_is_found_on_the_page_it_starts(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    pages = [["Introduction.", "The guide covers the service.", "1"], ["Then the agent reads its configu-", "2"],
             ["ration, then it starts the quuxel worker.", "3"]]
    (docs / "guide.pdf").write_bytes(make_pdf(pages))
    found = await LocalIndexSearch([docs], tmp_path / "idx.sqlite").search("configuration", 3)
    assert [r.url.rsplit("#", 1)[-1] for r in found] == ["page=2"], found
    assert "configuration," in found[0].snippet and "configu-" not in found[0].snippet, found


def test_a_compound_or_a_capital_over_a_running_line_is_no_broken_word() -> None:
    compound = _pages(["a state-of-the-art one, and the state-of-the-", "1"], ["art method works.", "2"])
    assert compound == ("a state-of-the-art one, and the state-of-the-art\n1", "method works.\n2")
    capital = _pages(["in Mid-", "1"], ["Atlantic offices", "2"])
    assert capital == ("in Mid-\n1", "Atlantic offices\n2")


def test_a_line_that_is_no_running_line_is_not_jumped() -> None:
    """A last line that is neither a page number nor repeated at the pages' edges is content."""
    pages = _pages(["We read the configu-", "Note well."], ["ration, then it starts."])
    assert pages == ("We read the configu-\nNote well.", "ration, then it starts."), pages


def test_a_soft_hyphen_at_a_page_end_joins_the_word() -> None:
    pages = extract(Path("guide.pdf"), _winansi_pdf([[f"We read the configu{SOFT}"], ["ration, then it starts."]])).pages
    assert pages == ("We read the configuration,", "then it starts."), pages
    footer = _winansi_pdf([[f"We read the configu{SOFT}", "1"], ["ration, then it starts.", "2"]])
    assert extract(Path("guide.pdf"), footer).pages == ("We read the configuration,\n1", "then it starts.\n2")


def test_a_soft_hyphen_at_a_line_end_joins_the_word() -> None:
    pages = extract(Path("guide.pdf"), _winansi_pdf([[f"We read the configu{SOFT}", "ration file."]])).pages
    assert pages == ("We read the configuration\nfile.",), pages
