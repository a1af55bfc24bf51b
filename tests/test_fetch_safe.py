"""safe_fetch: the SSRF battery, redirects re-checked per hop, DNS pinning, size and time caps."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from core.errors import InputError, ProviderError, ProviderTimeout
from providers.web import fetch
from providers.web.fetch import blocked_reason, safe_fetch


class _Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path == "/ok":
            self._send(200, f"hello; host={self.headers['Host']}".encode(), {"Content-Type": "text/plain; charset=utf-8"})
        elif path.startswith("/hop/"):
            remaining = int(path.rsplit("/", 1)[1])
            self._send(302, headers={"Location": f"/hop/{remaining - 1}" if remaining else "/ok"})
        elif path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif path == "/big":
            self._send(200, b"x" * 200_000, {"Content-Type": "text/plain"})
        elif path == "/big-undeclared":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"y" * 10_000)
            self.close_connection = True
        elif path == "/trickle":
            self._send_trickle()
        else:
            self._send(404, b"missing")

    def _send_trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            try:
                self.wfile.write(b"z")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# --- address and URL battery -----------------------------------------------------------------

@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "http://localhost/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://0.0.0.0/", "http://224.0.0.1/",
        "http://240.0.0.1/", "http://[::1]/", "http://[::]/", "http://[fe80::1]/", "http://[fc00::1]/",
        "http://[ff02::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:7f00:1::]/",
    ],
)
async def test_blocked_addresses_are_refused(url):
    with pytest.raises(InputError) as info:
        await safe_fetch(url, max_bytes=1000, timeout_s=2)
    assert info.value.field == "url" and "refused" in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://0x7f.1/", "http://127.1/", "http://017700000001/"],
)
async def test_odd_numeric_spellings_are_refused(url):
    with pytest.raises(InputError, match="ambiguous"):
        await safe_fetch(url, max_bytes=1000, timeout_s=2)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.org/x", "only http and https"),
        ("gopher://example.org/", "only http and https"),
        ("http://user:pw@example.org/", "user name or password"),
        ("http://example.org@127.0.0.1/", "user name or password"),
        ("http:///nohost", "no host"),
        ("http://example.org:99999/", "not a valid URL"),
    ],
)
async def test_bad_urls_are_refused(url, message):
    with pytest.raises(InputError, match=message):
        await safe_fetch(url, max_bytes=1000, timeout_s=2)


def test_public_addresses_pass():
    for text in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"):
        assert blocked_reason(ipaddress.ip_address(text)) is None


# --- pinning and per-hop checks (a mock transport stands in for the network) -------------------

def _fake_dns(monkeypatch, table: dict[str, list[str]]) -> list[str]:
    asked: list[str] = []

    async def resolve(host: str, port: int):
        if host not in table:  # a literal address resolves to itself
            return [ipaddress.ip_address(host)]
        asked.append(host)
        answers = table[host]
        return [ipaddress.ip_address(answers.pop(0) if len(answers) > 1 else answers[0])]

    monkeypatch.setattr(fetch, "_resolve", resolve)
    return asked


async def test_connects_to_the_checked_address_with_the_name_in_host_and_sni(monkeypatch):
    # DNS rebinding: the second answer would be loopback; only one lookup per hop is made.
    asked = _fake_dns(monkeypatch, {"news.example": ["93.184.216.34", "127.0.0.1"]})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok", headers={"Content-Type": "text/html"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        page = await safe_fetch("https://news.example/a?b=1", max_bytes=100, timeout_s=2, http=client)
    assert page.text == "ok" and page.final_url == "https://news.example/a?b=1"
    assert asked == ["news.example"]
    assert str(seen[0].url) == "https://93.184.216.34/a?b=1"
    assert seen[0].headers["host"] == "news.example"
    assert seen[0].extensions["sni_hostname"] == "news.example"


async def test_redirect_to_a_private_address_is_refused_at_that_hop(monkeypatch):
    _fake_dns(monkeypatch, {"news.example": ["93.184.216.34"], "internal.example": ["10.0.0.5"]})
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.headers["host"] == "news.example":
            return httpx.Response(302, headers={"Location": "http://internal.example/admin"})
        return httpx.Response(200, text="secret")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InputError, match="10.0.0.5"):
            await safe_fetch("http://news.example/", max_bytes=100, timeout_s=2, http=client)
        with pytest.raises(InputError, match="169.254.169.254"):
            handler_redirect = httpx.MockTransport(
                lambda r: httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
            )
            async with httpx.AsyncClient(transport=handler_redirect) as other:
                await safe_fetch("http://news.example/", max_bytes=100, timeout_s=2, http=other)
    assert hosts == ["93.184.216.34"]


# --- real loopback server (allow_private=True) ---------------------------------------------------

async def test_fetches_text_and_keeps_the_host_header(server):
    page = await safe_fetch(server + "/ok", max_bytes=1000, timeout_s=5, allow_private=True)
    assert page.status == 200 and page.content_type.startswith("text/plain")
    assert page.text == f"hello; host={server.removeprefix('http://')}"


async def test_loopback_is_refused_without_allow_private(server):
    with pytest.raises(InputError, match="loopback"):
        await safe_fetch(server + "/ok", max_bytes=1000, timeout_s=5)


async def test_follows_up_to_five_redirects(server):
    page = await safe_fetch(server + "/hop/4", max_bytes=1000, timeout_s=5, allow_private=True)
    assert page.final_url == server + "/ok" and page.text.startswith("hello")


async def test_too_many_redirects(server):
    with pytest.raises(ProviderError, match="more than 5 redirects"):
        await safe_fetch(server + "/loop", max_bytes=1000, timeout_s=5, allow_private=True)
    with pytest.raises(ProviderError, match="more than 5 redirects"):
        await safe_fetch(server + "/hop/5", max_bytes=1000, timeout_s=5, allow_private=True)


@pytest.mark.parametrize("path", ["/big", "/big-undeclared"])
async def test_size_cap(server, path):
    with pytest.raises(InputError, match="limit"):
        await safe_fetch(server + path, max_bytes=50_000, timeout_s=5, allow_private=True)
    page = await safe_fetch(server + path, max_bytes=50_000, timeout_s=5, allow_private=True, truncate=True)
    assert page.truncated and len(page.content) == 50_000


async def test_total_time_cap_covers_a_trickling_body(server):
    with pytest.raises(ProviderTimeout, match="longer than"):
        await safe_fetch(server + "/trickle", max_bytes=1000, timeout_s=0.5, allow_private=True)
