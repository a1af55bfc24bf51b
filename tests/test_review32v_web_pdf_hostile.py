"""Review 32v: a web source that is a malformed PDF is one source skipped, not the research job
failed. pypdf raises more than its own errors on a hostile file (``RecursionError`` on deeply
nested arrays, ``NotImplementedError`` on an unknown encryption): the research node gathers its
sources without ``return_exceptions``, so one such PDF among the search results failed the job."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from graphs.research.sources import read_source

HEAD, TAIL = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n", b"\nstartxref\n0\n%%EOF"
HOSTILE = {
    "nested": HEAD + b"2 0 obj " + b"[" * 5000 + b"]" * 5000 + b" endobj\ntrailer << /Root 1 0 R >>" + TAIL,
    "encryption": HEAD + b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
                  b"trailer << /Root 1 0 R /Encrypt << /Filter /Standard /V 9 /R 9 >> /ID [<00> <00>] >>" + TAIL,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_a_malformed_web_pdf_is_skipped_with_its_reason(name: str) -> None:
    page = SimpleNamespace(status=200, content_type="application/pdf", content=HOSTILE[name], truncated=False, text="", unread="")

    async def fetch(url: str) -> SimpleNamespace:
        return page

    text, step = await read_source("https://example.org/paper.pdf", read_local=None, fetch=fetch)
    assert text is None and step["outcome"] == "skipped", step
    assert step["detail"].startswith("example.org: PDF: not a readable PDF"), step["detail"]
