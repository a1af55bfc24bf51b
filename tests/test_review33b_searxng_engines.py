"""SearXNG answers with ``unresponsive_engines`` ([[engine, reason], ...]) when some of its
engines failed; that was dropped, and an instance whose every engine failed read as "0 results"
(the query blamed for a blocked instance). Now the search's trace step (and the log) names them,
and no results while engines failed is an error that names them. Against a loopback server
speaking SearXNG's JSON API."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.errors import AllProvidersFailed, ProviderUnavailable
from providers.search.chain import SearchChain
from providers.search.searxng import SearxngSearch

HITS = [{"url": "https://example.org/a", "title": "Alpha", "content": "alpha text", "score": 1.0}]
FAILED = [["google", "timeout"], ["brave", "Suspended: CAPTCHA"], ["duckduckgo", "HTTP error"]]


class _Instance(BaseHTTPRequestHandler):
    answer: dict[str, Any] = {}

    def do_GET(self) -> None:  # noqa: N802
        data = json.dumps(self.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def instance() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Instance)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_engines_that_did_not_answer_are_named_in_the_step_and_the_log(
        instance: str, caplog: pytest.LogCaptureFixture) -> None:
    _Instance.answer = {"query": "q", "results": HITS, "unresponsive_engines": FAILED}
    backend = SearxngSearch(instance)
    with caplog.at_level(logging.WARNING, logger="providers.search.searxng"):
        results, (step,) = await backend.search_traced("q", 5, step="search[0]")
    said = "SearXNG: engines that did not answer: google (timeout), brave (Suspended: CAPTCHA), duckduckgo (HTTP error)"
    assert [r.url for r in results] == ["https://example.org/a"]
    assert step.outcome == "ok" and step.step == "search[0]" and step.provider == "searxng"
    assert step.detail == f"1 results; {said}"
    assert said in caplog.text
    assert [r.url for r in await backend.search("q", 5)] == ["https://example.org/a"]  # search() as before


async def test_no_results_because_every_engine_failed_is_an_error_naming_them(instance: str) -> None:
    _Instance.answer = {"query": "q", "results": [], "unresponsive_engines": FAILED[:2]}
    with pytest.raises(ProviderUnavailable) as info:
        await SearxngSearch(instance).search("q")
    assert "no results: the instance's engines did not answer: google (timeout), brave (Suspended: CAPTCHA)" \
        in str(info.value)
    # through the chain, the attempt says why instead of "0 results"
    with pytest.raises(AllProvidersFailed) as failed:
        await SearchChain([("searxng", SearxngSearch(instance))]).search_traced("q", 5)
    (attempt,) = failed.value.attempts
    assert attempt.outcome == "error" and "google (timeout)" in (attempt.detail or ""), attempt


async def test_no_results_with_every_engine_answering_is_still_no_results(instance: str) -> None:
    _Instance.answer = {"query": "q", "results": [], "unresponsive_engines": []}
    results, (step,) = await SearxngSearch(instance).search_traced("q", 5)
    assert results == [] and step.detail == "0 results"


async def test_odd_entries_are_read_as_well_as_they_can_be_and_a_long_list_is_cut(instance: str) -> None:
    odd: list[Any] = ["bing", ["bing", "again"], [], [None, "x"], 7, ["qwant", "r" * 500],
                      *[[f"engine{i}", "timeout"] for i in range(10)]]
    _Instance.answer = {"query": "q", "results": HITS, "unresponsive_engines": odd}
    _, (step,) = await SearxngSearch(instance).search_traced("q", 5)
    detail = step.detail or ""
    assert detail.startswith("1 results; SearXNG: engines that did not answer: bing, 7, qwant (rrr")
    assert "r" * 81 not in detail and "engine4 (timeout) and 5 more" in detail, detail


async def test_the_chain_keeps_the_backends_own_step_so_the_research_trace_names_the_engines(instance: str) -> None:
    _Instance.answer = {"query": "q", "results": HITS, "unresponsive_engines": FAILED[:1]}
    results, (attempt,) = await SearchChain([("searxng", SearxngSearch(instance))]).search_traced("q", 5, step="search[1]")
    assert [r.url for r in results] == ["https://example.org/a"]
    assert attempt.outcome == "ok" and attempt.step == "search[1]"
    assert attempt.detail == "1 results; SearXNG: engines that did not answer: google (timeout)", attempt
