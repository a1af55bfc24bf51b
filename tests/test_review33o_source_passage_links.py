"""A research citation of a web page carries ``passage.link`` (the page opened at the cited passage,
a URL text fragment): the MCP door now shows it. Over real stdio, with a web page served on
loopback and a file of the local index as the two sources, the structured citations (the tool's
and ``job_result``'s) carry the link through, the tool's text (the report's Sources list) holds it,
and ``swarm://jobs/{id}/sources/{n}`` gives it under the quoted passage, while the source's url
stays the plain URL; the local-index file's passage has no link. Before, the source resource
quoted the passage with no way to open the page at it.

The server is the real ``swarm-mcp`` main over stdio, started by this file (``__main__``) with a
scripted model, a search chain of a fixed web hit then the local index, and the fetch guard let
through for loopback only (as ``test_review33b_text_fragments`` does in process)."""

from __future__ import annotations

import http.server
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_helpers import ROOT, write_config

from mcp_server.resources import source_markdown

PAGE = """<html><head><title>Worker guide</title></head><body><main><h1>Worker guide</h1>
<p>The worker stores a checkpoint after every step of the graph, so a run that stops resumes where it stopped.</p>
<p>Jobs time-out after 600 s &amp; retry twice, with a back-off.</p>
</main></body></html>"""
WEB_CLAIM = "The worker stores a checkpoint after every step of the graph [{n}]."
TINYQ = "# Tinyq\n\nTinyq keeps every queue message in memory until a worker takes it.\n"
FILE_CLAIM = "Tinyq keeps every queue message in memory until a worker takes it [{n}]."


def _brain(messages: Any, config: Any) -> Any:
    """Plans one query the web hit answers and one only the local index does; cites both."""
    if config.step == "plan":
        return {"queries": ["worker checkpoint", "tinyq queue"]}
    if config.step in ("write", "revise"):
        shown = dict(re.findall(r'<source id="(\d+)" title="([^"]*)"', messages[1].content))
        return " ".join((WEB_CLAIM if "Worker" in title else FILE_CLAIM).format(n=n) for n, title in shown.items())
    if config.step == "entail":
        return {"verdicts": []}
    return {"approved": True, "issues": []}


def _serve(config: str) -> None:
    """The MCP server over stdio, its runtime handed the scripted model and the search chain."""
    import functools
    from types import MappingProxyType

    from mcp_server.server import main
    from providers.base import SearchResult
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch
    from providers.testing import FakeSearch, FunctionLLM
    from providers.web import fetch as web_fetch
    from swarm.runtime import Runtime

    web_fetch.safe_fetch = functools.partial(web_fetch.safe_fetch, allow_private=True)  # type: ignore[assignment]
    hit = SearchResult(url=os.environ["O_PAGE_URL"], title="Worker guide", snippet="a guide", source="web")
    local = LocalIndexSearch([Path(os.environ["O_CORPUS"])], Path(os.environ["O_INDEX"]), refresh_interval_s=0)
    search = SearchChain([("web", FakeSearch([hit], match_query=True)), ("local", local)])
    Runtime.provider_overrides = MappingProxyType({"llm": FunctionLLM(_brain), "search": search})
    main(["--config", config])


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = PAGE.encode()
        self.send_response(200 if self.path == "/guide" else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/guide"
    finally:
        server.shutdown()
        server.server_close()


def _params(tmp_path: Path, page_url: str) -> StdioServerParameters:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "tinyq.md").write_text(TINYQ)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "O_PAGE_URL": page_url,
           "O_CORPUS": str(corpus), "O_INDEX": str(tmp_path / "idx.sqlite"), "SWARM_HOME": str(tmp_path / "home"),
           "SWARM_LOCAL_PROCESSES": "1"}
    return StdioServerParameters(command=sys.executable, args=[__file__, str(write_config(tmp_path, wait_budget_s=120))],
                                 env=env, cwd=str(ROOT))


async def test_a_web_citation_opens_its_page_at_the_passage_over_stdio(tmp_path: Path, page_url: str) -> None:
    async with Client(_params(tmp_path, page_url)) as client:
        result = await client.call_tool("research", {"question": "When does the worker store a checkpoint,"
                                                     " and where does Tinyq keep queue messages?", "depth": "quick"})
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        assert out["status"] == "COMPLETED", out
        later = (await client.call_tool("job_result", {"job_id": out["job_id"]})).structured_content["output"]
        opened = {s["url"]: (await client.read_resource(s["resource"])).contents[0].text for s in out["sources"]}

    web = next(s for s in out["sources"] if s["url"] == page_url)  # the source keeps the plain URL
    local = next(s for s in out["sources"] if s["url"].startswith("file://"))
    links = {c["passage"]["source_id"]: c["passage"].get("link") for c in out["citations"]}
    link = links[web["id"]]
    assert link and link.startswith(page_url + "#:~:text="), out["citations"]
    assert links[local["id"]] is None  # a local-index file has no browser to scroll it
    assert [c["passage"].get("link") for c in later["citations"]] == [c["passage"].get("link") for c in out["citations"]]
    assert f"(<{link}>)" in result.content[0].text  # the report's Sources list, as the client is shown it
    # the source resource: the plain url, then the passage quoted and the link that opens the page at it
    assert f"- url: <{page_url}>" in opened[page_url]
    assert "\n> The worker stores a checkpoint after every step" in opened[page_url]
    assert re.search(r"^> [^\n]*\n\nOpen at this passage: <" + re.escape(link) + ">\n\nCited for:\n- The worker stores",
                     opened[page_url], re.MULTILINE), opened[page_url]
    assert "Tinyq keeps every queue message" in opened[local["url"]]
    assert "Open at this passage" not in opened[local["url"]]


def test_each_passage_gets_its_own_link_and_a_snippet_none() -> None:
    source = {"id": 1, "url": "https://a.example/guide", "title": "Guide"}
    first, second = "Install the worker first.", "Then start it with care."
    passages = [{"text": first, "start": 0, "end": 25}, {"text": second, "start": 26, "end": 50}]
    citations = [{"claim": second, "passage": {"source_id": 1, "start": 26, "end": 50,
                                               "link": "https://a.example/guide#:~:text=Then%20start%20it%20with%20care."}},
                 {"claim": first, "passage": {"source_id": 1, "start": 0, "end": 25,
                                              "link": "https://a.example/guide#:~:text=Install%20the%20worker%20first."}}]
    page = source_markdown(source, passages, citations, "swarm://jobs/j/sources/1/text")
    assert re.findall(r"^Open at this passage: <[^>]+#:~:text=([^>]+)>$", page, re.MULTILINE) == [
        "Install%20the%20worker%20first.", "Then%20start%20it%20with%20care."]
    assert "- url: <https://a.example/guide>" in page
    snippet = {"text": "a guide", "start": None, "end": None, "snippet": True}
    cited = [{"claim": "A guide.", "passage": {"source_id": 1, "start": None, "end": None, "snippet": True}}]
    assert "Open at this passage" not in source_markdown(source, [snippet], cited, "swarm://jobs/j/sources/1/text")


if __name__ == "__main__":  # the stdio server of the test above
    _serve(sys.argv[1])
