"""SearXNG and Tavily backends against loopback servers speaking their JSON APIs."""

from __future__ import annotations

import pytest
from search_fake_servers import serve

from core.errors import ProviderError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable
from providers.search.searxng import SearxngSearch
from providers.search.tavily import TavilySearch

KEY = "tvly-dev-0123456789abcdefSECRET"


@pytest.fixture
def fake():
    with serve() as server:
        yield server


async def test_searxng_maps_results_and_sends_json_format(fake):
    backend = SearxngSearch.from_config("searxng", {"url": fake.url + "/", "format": "json", "timeout_s": 5})
    results = await backend.search("langgraph checkpoints", max_results=5)
    assert [r.url for r in results] == ["https://example.org/a", "https://example.org/b"]
    assert results[0].title == "Alpha page" and results[0].snippet == "alpha about checkpoints"
    assert results[0].source == "searxng" and results[0].score == 2.5
    assert "format=json" in fake.requests[0]["path"] and "q=langgraph" in fake.requests[0]["path"]


async def test_searxng_honours_max_results(fake):
    backend = SearxngSearch(fake.url)
    assert len(await backend.search("x", max_results=1)) == 1


@pytest.mark.parametrize(
    ("mode", "error", "fix"),
    [
        ("403", ProviderUnavailable, "search.formats"),
        ("429", ProviderRateLimited, "server.limiter"),
        ("500", ProviderUnavailable, "HTTP 500"),
        ("notjson", ProviderError, "expected a JSON object"),
    ],
)
async def test_searxng_failures_say_how_to_fix_them(fake, mode, error, fix):
    fake.mode = mode
    with pytest.raises(error) as info:
        await SearxngSearch(fake.url).search("q")
    assert fix in str(info.value)


async def test_searxng_429_carries_retry_after(fake):
    fake.mode = "429"
    with pytest.raises(ProviderRateLimited) as info:
        await SearxngSearch(fake.url).search("q")
    assert info.value.retry_after == 7


async def test_searxng_timeout(fake):
    fake.mode = "slow"
    with pytest.raises(ProviderTimeout):
        await SearxngSearch(fake.url, timeout_s=0.3).search("q")


async def test_searxng_refused_connection_is_unavailable():
    with pytest.raises(ProviderUnavailable, match="cannot reach"):
        await SearxngSearch("http://127.0.0.1:9").search("q")


async def test_searxng_without_url_is_unavailable_and_says_so():
    backend = SearxngSearch.from_config("searxng", {"url": "", "format": "json"})
    assert backend.unconfigured_reason() == "SEARXNG_URL is not set"
    with pytest.raises(ProviderUnavailable, match="SEARXNG_URL is not set"):
        await backend.search("q")


@pytest.mark.parametrize("url", ["not a url", "searxng:8080", "ftp://user:s3cretpass@host/", "http://"])
async def test_searxng_with_a_url_that_is_no_http_url_is_unconfigured_without_quoting_it(url):
    backend = SearxngSearch.from_config("searxng", {"url": url, "format": "json"})
    reason = backend.unconfigured_reason()
    assert reason == "SEARXNG_URL is not an http(s) URL (like http://your-searxng:8080)"
    with pytest.raises(ProviderUnavailable, match="not an http") as raised:
        await backend.search("q")
    assert "s3cretpass" not in str(raised.value)


async def test_tavily_posts_query_with_bearer_key(fake):
    backend = TavilySearch.from_config("tavily", {"api_key": KEY, "base_url": fake.url, "timeout_s": 5})
    results = await backend.search("what is mcp", max_results=1)
    assert [r.url for r in results] == ["https://example.org/a"]
    request = fake.requests[0]
    assert request["method"] == "POST" and request["path"] == "/search"
    assert request["body"]["query"] == "what is mcp" and request["body"]["max_results"] == 1
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(backend)


@pytest.mark.parametrize(("mode", "error"), [("401", ProviderUnavailable), ("429", ProviderRateLimited), ("500", ProviderUnavailable)])
async def test_tavily_errors_never_carry_the_key(fake, mode, error):
    fake.mode = mode
    with pytest.raises(error) as info:
        await TavilySearch(KEY, base_url=fake.url).search("q")
    assert KEY not in str(info.value) and KEY not in str(info.value.to_dict())


async def test_tavily_without_key_is_unavailable():
    backend = TavilySearch.from_config("tavily", {"api_key": ""})
    assert backend.unconfigured_reason() == "TAVILY_API_KEY is not set"
    with pytest.raises(ProviderUnavailable, match="TAVILY_API_KEY"):
        await backend.search("q")


def test_one_reading_of_a_search_answer_for_both_backends():
    from providers.web.http import search_results

    data = {"results": [
        {"title": "no url"},
        "not an object",
        {"url": "https://example.org/a", "content": "alpha", "score": 3},
        {"url": "https://example.org/b", "title": "Beta", "score": "high"},
        {"url": "https://example.org/c"},
    ]}
    results = search_results("tavily", data, 2)
    assert [(r.url, r.title, r.snippet, r.score, r.source) for r in results] == [
        ("https://example.org/a", "https://example.org/a", "alpha", 3.0, "tavily"),
        ("https://example.org/b", "Beta", "", None, "tavily"),
    ]
    assert search_results("searxng", {}, 5) == []
    with pytest.raises(ProviderError, match="'results' to be a list"):
        search_results("searxng", {"results": {"url": "x"}}, 5)
