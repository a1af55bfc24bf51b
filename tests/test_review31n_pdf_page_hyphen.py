"""A word justified PDF text broke at the end of a page ("configu-" the last line of page 3,
"ration" the first of page 4) is joined whole on the page where it starts, and the next page goes
on after its rest; the exceptions of a break within a page hold (a compound the document writes
whole keeps its hyphen, an address its own), and every passage keeps its page number."""

from __future__ import annotations

from pathlib import Path

from test_search_documents import make_pdf

from providers.search.local_index import LocalIndexSearch
from providers.web.documents import extract

FILLER = ["Introduction.", "The guide covers the service."]


def _pages(*pages: list[str]) -> tuple[str, ...]:
    return extract(Path("paper.pdf"), make_pdf(list(pages))).pages


async def test_a_word_broken_at_a_page_end_is_found_on_the_page_it_starts(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    pages = [FILLER, FILLER, ["Then the agent reads its configu-"],
             ["ration, then it starts the quuxel worker.", "More text follows."]]
    (docs / "paper.pdf").write_bytes(make_pdf(pages))
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    found = await search.search("configuration", 3)
    assert [r.url.rsplit("#", 1)[-1] for r in found] == ["page=3"], found
    assert "configuration," in found[0].snippet and "configu-" not in found[0].snippet, found
    worker = await search.search("quuxel worker", 3)
    assert [r.url.rsplit("#", 1)[-1] for r in worker] == ["page=4"], worker
    assert "ration" not in worker[0].snippet, worker


def test_the_next_page_starts_after_the_rest_of_the_word() -> None:
    pages = _pages(["We read the configu-"], ["ration, then the service starts.", "Done."])
    assert pages == ("We read the configuration,", "then the service starts.\nDone.")
    alone = _pages(["We read the whole configu-"], ["ration", "and then it starts."])
    assert alone == ("We read the whole configuration", "and then it starts.")


def test_a_word_broken_twice_over_a_page_end_is_one_word() -> None:
    assert _pages(["it is in-"], ["compre-", "hensible to me"]) == ("it is incomprehensible", "to me")


def test_a_compound_and_an_address_keep_their_hyphen_over_a_page_end() -> None:
    compound = _pages(["a state-of-the-art one, and the state-of-the-"], ["art method works."])
    assert compound == ("a state-of-the-art one, and the state-of-the-art", "method works.")
    address = _pages(["see https://example.com/getting-"], ["started for more"])
    assert address == ("see https://example.com/getting-started", "for more")


def test_a_capital_or_a_number_after_a_page_end_is_no_broken_word() -> None:
    assert _pages(["in Mid-"], ["Atlantic offices"]) == ("in Mid-", "Atlantic offices")
    assert _pages(["since 2019-"], ["2020 it runs."]) == ("since 2019-", "2020 it runs.")
