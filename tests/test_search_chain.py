"""The search fallback chain: order, skips, circuit breaking, trace, all-failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from search_fake_servers import serve

from core.config import load_config
from core.errors import AllProvidersFailed, ConfigError, InputError, ProviderUnavailable
from providers.base import SearchResult
from providers.circuit import CircuitBoard
from providers.search.chain import SearchChain, build_search
from providers.testing import FakeSearch


class Down:
    def __init__(self) -> None:
        self.calls = 0

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
        self.calls += 1
        raise ProviderUnavailable("down", "connection refused")


def _hit(url: str) -> SearchResult:
    return SearchResult(url=url, title=url, snippet="s", source="fake")


def _config(tmp_path: Path, searxng_url: str = "", tavily_key: str = "", corpus: Path | None = None):
    env = {
        "SEARXNG_URL": searxng_url,
        "TAVILY_API_KEY": tavily_key,
        "SWARM_HOME": str(tmp_path / "home"),
        "SWARM_CORPUS": str(corpus or tmp_path / "corpus"),
    }
    from core.config import DEFAULT_CONFIG_PATH

    return load_config(DEFAULT_CONFIG_PATH, env=env)


async def test_falls_back_on_error_and_traces_each_attempt():
    chain = SearchChain([("a", Down()), ("b", FakeSearch([_hit("https://b")]))])
    results, trace = await chain.search_traced("q")
    assert [r.url for r in results] == ["https://b"]
    assert [(s.provider, s.outcome, s.kind) for s in trace] == [("a", "error", "search"), ("b", "ok", "search")]
    assert trace[0].error_class == "ProviderUnavailable"


async def test_empty_answer_hands_over_to_next_backend():
    chain = SearchChain([("web", FakeSearch([])), ("local", FakeSearch([_hit("file:///x")]))])
    results, trace = await chain.search_traced("q")
    assert [r.url for r in results] == ["file:///x"]
    assert trace[0].detail == "0 results"


async def test_all_failed_lists_every_attempt():
    chain = SearchChain([("a", Down()), ("b", Down())])
    with pytest.raises(AllProvidersFailed) as info:
        await chain.search("q")
    assert [s.provider for s in info.value.attempts] == ["a", "b"]
    assert info.value.provider == "search"


async def test_all_empty_is_no_results_not_a_failure():
    assert await SearchChain([("a", FakeSearch([]))]).search("q") == []


async def test_circuit_opens_and_skips_the_backend():
    down = Down()
    board = CircuitBoard(failure_threshold=2, cooldown_s=60)
    chain = SearchChain([("a", down), ("b", FakeSearch([_hit("https://b")]))], circuits=board)
    for _ in range(3):
        _, trace = await chain.search_traced("q")
    assert down.calls == 2
    assert trace[0].outcome == "skipped" and "circuit open" in trace[0].detail


async def test_build_search_skips_unconfigured_backends_and_uses_local(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# Apples\nred apples grow on trees")
    chain = build_search(_config(tmp_path, corpus=corpus).providers.search, circuits=CircuitBoard())
    assert chain.names == ["searxng", "tavily", "local"]
    results, trace = await chain.search_traced("apples")
    assert [r.title for r in results] == ["Apples"]
    assert [(s.provider, s.outcome) for s in trace] == [("searxng", "skipped"), ("tavily", "skipped"), ("local", "ok")]
    assert trace[0].detail == "SEARXNG_URL is not set"


async def test_build_search_over_real_http_falls_back_from_a_failing_searxng(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# Apples\nred apples")
    with serve() as searx:
        searx.mode = "403"
        chain = build_search(_config(tmp_path, searxng_url=searx.url, corpus=corpus).providers.search)
        results, trace = await chain.search_traced("apples")
    assert trace[0].outcome == "error" and "search.formats" in trace[0].detail
    assert results[0].source == "local"


async def test_only_restricts_and_rejects_unknown_names(tmp_path):
    chain = build_search(_config(tmp_path).providers.search)
    assert chain.only(["local"]).names == ["local"]
    with pytest.raises(InputError, match="valid: searxng, tavily, local") as info:
        chain.only(["bing"])
    assert info.value.field == "backends"


def test_chain_naming_an_unconfigured_backend_is_a_config_error(tmp_path):
    config = _config(tmp_path)
    bad = config.providers.search.model_copy(update={"fallback_chain": ["local", "bing"]})
    with pytest.raises(ConfigError, match="bing"):
        build_search(bad)
