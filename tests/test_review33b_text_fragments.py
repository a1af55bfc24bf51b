"""A research answer's link to a web page opened the page at its top, not at the passage it cites:
the Sources list (and ``citations[].passage.link``) now carry a URL text fragment
(``#:~:text=start,end``, WICG "URL Fragment Text Directives"), while ``sources[].url`` stays the
plain URL; a PDF keeps its ``#page=N`` and a local-index file gets none (the research over the
local index is ``test_research_graph``'s). Pages are served over real
HTTP on loopback (the SSRF guard let through for loopback only here)."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from test_research_graph import Script, _context
from test_search_documents import make_pdf

from graphs.research.action import ResearchInput, research
from graphs.research.fragments import passage_link, text_directive, with_directive
from providers.base import SearchResult
from providers.search.chain import SearchChain
from providers.testing import FakeSearch, FunctionLLM
from providers.web import fetch as web_fetch
from providers.web.html import html_to_text

PAGE = """<html><head><title>Worker guide</title></head><body><main><h1>Worker guide</h1>
<p>The worker stores a checkpoint after every step of the graph, so a run that stops resumes where it stopped.</p>
<p>Jobs time-out after 600 s &amp; retry twice, with a back-off.</p>
</main></body></html>"""
SHORT = "<html><body><main><p>Re-try, then stop &amp; wait.</p></main></body></html>"


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802
        kind, body = self.files[self.path.split("#")[0]]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(web_fetch, "safe_fetch", functools.partial(web_fetch.safe_fetch, allow_private=True))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def _research(tmp_path: Path, url: str, report: str, search: Any = None) -> dict[str, Any]:
    hits = [SearchResult(url=url, title="Worker guide", snippet="a guide", source="web")]
    brain = Script(plan={"queries": ["worker checkpoint"]}, report=report)
    ctx, _ = _context(tmp_path, FunctionLLM(brain), search or SearchChain([("web", FakeSearch(hits))]))
    return await research(ResearchInput(question="When does the worker store a checkpoint?"), ctx)


def _link(report: str) -> str:
    found = re.search(r"^- \[1\] \[[^\]]*\]\(<([^>]+)>\)", report, re.MULTILINE)
    assert found, report
    return found.group(1)


async def test_a_web_source_link_opens_the_page_at_the_cited_passage(served: str, tmp_path: Path) -> None:
    _Files.files = {"/guide": ("text/html; charset=utf-8", PAGE.encode())}
    url = f"{served}/guide#intro"  # a fragment of its own: the directive goes after it
    result = await _research(tmp_path, url, "The worker stores a checkpoint after every step of the graph [1].")
    link = _link(result["report"])
    assert link.startswith(url + ":~:text="), link
    start, end = link.split(":~:text=", 1)[1].split(",")
    # a long passage: its first and last words, each found in the page's own text, in that order
    text = " ".join(html_to_text(PAGE)[0].split())
    assert unquote(start) == "The worker stores a" and unquote(end) == "twice, with a back-off."
    assert text.index(unquote(start)) < text.index(unquote(end))
    assert "-" not in end and "%2C" in end and "%2D" in end  # the spec's delimiters encoded
    assert result["sources"][0]["url"] == url  # the plain URL, as other code keys the source by it
    assert result["citations"][0]["passage"]["link"] == link


async def test_a_short_passage_is_matched_whole_with_dash_comma_and_ampersand_encoded(
        served: str, tmp_path: Path) -> None:
    _Files.files = {"/short": ("text/html", SHORT.encode())}
    result = await _research(tmp_path, f"{served}/short", "Re-try, then stop & wait [1].")
    assert _link(result["report"]) == f"{served}/short#:~:text=Re%2Dtry%2C%20then%20stop%20%26%20wait."


async def test_a_web_pdf_beside_it_keeps_its_page_link_without_a_text_fragment(served: str, tmp_path: Path) -> None:
    pdf = make_pdf([["Installation guide", "Download the installer first."],
                    ["Checkpoints", "Each worker writes its log to the volume."]])
    _Files.files = {"/guide": ("text/html", PAGE.encode()), "/manual": ("application/pdf", pdf)}  # no .pdf: its type says
    hits = [SearchResult(url=f"{served}/guide", title="Worker guide", snippet="a guide", source="web"),
            SearchResult(url=f"{served}/manual", title="Manual", snippet="a manual", source="web")]
    result = await _research(tmp_path, "", "The worker stores a checkpoint after every step of the graph [1]."
                             " Each worker writes its log to the volume [2].",
                             search=SearchChain([("web", FakeSearch(hits))]))
    lines = re.findall(r"^- \[(\d)\] \[[^\]]*\]\(<([^>]+)>\)", result["report"], re.MULTILINE)
    assert dict(lines) == {"1": f"{served}/guide#:~:text=The%20worker%20stores%20a,twice%2C%20with%20a%20back%2Doff.",
                           "2": f"{served}/manual#page=2"}, result["report"]
    links = {c["source_ids"][0]: c["passage"].get("link") for c in result["citations"]}
    assert links == {1: dict(lines)["1"], 2: None}


def test_an_existing_fragment_and_a_search_engines_highlight() -> None:
    assert with_directive("https://a.example/p", "text=x") == "https://a.example/p#:~:text=x"
    assert with_directive("https://a.example/p#", "text=x") == "https://a.example/p#:~:text=x"
    assert with_directive("https://a.example/p?q=1#sec", "text=x") == "https://a.example/p?q=1#sec:~:text=x"
    # a highlight the search engine put there points at its match, not the cited passage: replaced
    assert (with_directive("https://a.example/p#sec:~:text=old&note=1", "text=x")
            == "https://a.example/p#sec:~:note=1&text=x")


def test_only_a_web_page_gets_a_fragment() -> None:
    assert passage_link("https://a.example/guide", "Some words") == "https://a.example/guide#:~:text=Some%20words"
    for url in ("file:///home/me/notes/guide.md", "https://a.example/paper.PDF", "https://a.example/deck.pptx?x=1",
                "ftp://a.example/guide", "http://[::1"):
        assert passage_link(url, "Some words") is None, url


def test_markup_and_blocks_are_left_out_of_the_terms() -> None:
    assert text_directive("## Setup\n\n- Install it first, then run the worker with care today.") \
        == "text=Setup,worker%20with%20care%20today."
    assert text_directive("| a | b |\n|--- |--- |\n```\n```") is None
    one_line = "one two three four five six seven eight nine"
    assert text_directive(one_line) == "text=one%20two%20three%20four,six%20seven%20eight%20nine"
