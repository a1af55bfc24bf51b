"""A web source that is a PDF (or a Word or PowerPoint file) is read as the local index reads one,
its pages kept, so a citation names and opens the page; it was skipped as "HTTP 200
application/pdf" with no reason, and research lost the document. Served over real HTTP on loopback
(the SSRF guard let through for loopback only here)."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_research_graph import Script, _context
from test_search_documents import make_pdf

from graphs.research.action import ResearchInput, research
from providers.base import SearchResult
from providers.search.chain import SearchChain
from providers.testing import FakeSearch, FunctionLLM
from providers.web import fetch as web_fetch

PDF = make_pdf([["Installation guide", "Download the installer first."],
                ["Checkpoints", "The worker stores a checkpoint after every step of the graph."]])


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802
        kind, body = self.files[self.path]
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


async def _research(tmp_path: Any, url: str, report: str) -> dict[str, Any]:
    hits = [SearchResult(url=url, title="Worker guide", snippet="a guide", source="web")]
    brain = Script(plan={"queries": ["worker checkpoint"]}, report=report)
    ctx, _ = _context(tmp_path, FunctionLLM(brain), SearchChain([("web", FakeSearch(hits))]))
    return await research(ResearchInput(question="When does the worker store a checkpoint?"), ctx)


@pytest.mark.parametrize("kind", ["application/pdf", "application/octet-stream"])
async def test_a_web_pdf_is_read_and_cited_by_its_page(served: str, tmp_path: Any, kind: str) -> None:
    _Files.files = {"/guide.pdf": (kind, PDF)}
    result = await _research(tmp_path, f"{served}/guide.pdf",
                             "The worker stores a checkpoint after every step of the graph [1].")
    (read,) = [s for s in result["trace"] if s["kind"] == "fetch"]
    assert read["outcome"] == "ok" and "2 pages (PDF)" in read["detail"], read
    assert result["citations"] and result["citations"][0]["source_ids"] == [1], result["citations"]
    assert re.search(r"\(<http://127\.0\.0\.1:\d+/guide\.pdf#page=2>\) — guide\.pdf p\. 2", result["report"]), \
        result["report"]


async def test_a_web_file_that_is_neither_text_nor_a_document_says_why_it_was_not_read(
        served: str, tmp_path: Any) -> None:
    _Files.files = {"/photo.png": ("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)}
    result = await _research(tmp_path, f"{served}/photo.png", "A photo [1].")
    (read,) = [s for s in result["trace"] if s["kind"] == "fetch"]
    assert read["outcome"] == "skipped" and read["detail"].endswith("HTTP 200 image/png: not a text page"), read


async def test_a_web_pdf_without_text_is_said_so(served: str, tmp_path: Any) -> None:
    _Files.files = {"/scan.pdf": ("application/pdf", make_pdf([[], []]))}
    result = await _research(tmp_path, f"{served}/scan.pdf", "A scan [1].")
    (read,) = [s for s in result["trace"] if s["kind"] == "fetch"]
    assert read["outcome"] == "skipped" and "no text layer" in read["detail"], read


async def test_a_web_docx_that_is_no_zip_is_skipped_not_the_job_failed(served: str, tmp_path: Any) -> None:
    _Files.files = {"/notes.docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                                    b"PK\x03\x04 this is no zip archive at all")}
    result = await _research(tmp_path, f"{served}/notes.docx", "Notes [1].")
    (read,) = [s for s in result["trace"] if s["kind"] == "fetch"]
    assert read["outcome"] == "skipped" and read["detail"].split(": ", 1)[1].startswith("DOCX"), read
