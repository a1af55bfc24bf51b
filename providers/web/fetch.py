"""SSRF-safe HTTP(S) fetch for URLs that come from users, models or search results.

Rules: http and https only; no userinfo; the host is resolved once and the connection goes to
that checked address (the Host header and TLS SNI keep the name), so DNS that changes between
check and use cannot rebind it; loopback, private, link-local (cloud metadata included),
multicast, reserved and unspecified addresses are refused, in IPv6 and IPv4-mapped forms too;
numeric host spellings other than dotted decimal (``2130706433``, ``0x7f.1``, ``0177.0.0.1``)
are refused; redirects are followed by hand (at most ``max_redirects``), each hop checked
again; the body is streamed under a byte cap and the whole fetch under a time cap. A fetch of a
page to read (``only_pages``) reads no body that could not be one: an image, a video or an archive
is told by its Content-Type (and an unnamed binary by its Content-Length) before any of it is read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from core.errors import InputError, ProviderError, ProviderTimeout, ProviderUnavailable
from providers.web.http import tls_context

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_PROVIDER = "fetch"
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
#: the charset parameter of a Content-Type header, quoted or not
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w\-:.]+)""", re.IGNORECASE)
#: the charset an HTML ``<meta charset>`` or ``<meta http-equiv="Content-Type">`` names
_META_CHARSET = re.compile(r"""<meta\b[^>]*?charset\s*=\s*["']?([\w\-:.]+)""", re.IGNORECASE)
#: what a page to read may be: text, or a document ``providers.web.documents`` reads
PAGE_TYPES = frozenset({"text/html", "text/plain", "text/markdown", "application/xhtml+xml"})
DOCUMENT_TYPES = frozenset({
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})
#: a binary of no named type: read only whole (a PDF served so starts with ``%PDF-``; cut, it is none)
_UNNAMED_BINARY = "application/octet-stream"
_DOTTED_DECIMAL = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


@dataclass(frozen=True)
class FetchedPage:
    """One fetched resource. ``text`` is decoded when the content type is textual."""

    url: str
    final_url: str
    status: int
    content_type: str
    content: bytes
    truncated: bool = False
    #: why the body was not read (``only_pages``: no page), "" when it was
    unread: str = ""

    @property
    def text(self) -> str:
        """The body decoded in the charset the Content-Type names (quoted or not), else the one
        an HTML ``<meta>`` near the top names (an old page declares it only there), else UTF-8."""
        charset = "utf-8"
        match = _CHARSET.search(self.content_type) or _META_CHARSET.search(self.content[:2048].decode("ascii", "replace"))
        if match and not (match.re is _META_CHARSET and match.group(1).lower().startswith(("utf-16", "utf-32"))):
            charset = match.group(1)  # a <meta> read as ASCII cannot mean UTF-16 (HTML reads it as UTF-8)
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"embeds {embedded}, which {inner}" if inner else None
    checks = (
        ("is_loopback", "is a loopback address"),
        ("is_link_local", "is link-local (cloud metadata lives there)"),
        ("is_private", "is a private address"),
        ("is_multicast", "is multicast"),
        ("is_unspecified", "is unspecified"),
        ("is_reserved", "is reserved"),
    )
    for attribute, reason in checks:
        if getattr(ip, attribute):
            return reason
    if not ip.is_global:
        return "is not a public address"
    return None


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def not_a_page(content_type: str, declared: int, max_bytes: int) -> str | None:
    """Why a response with these headers is no page to read (its body left unread), else None.

    Text and documents are read (text cut at ``max_bytes`` is still text); a response with no type
    too (an old server's HTML); an unnamed binary over ``max_bytes`` is not (cut, no PDF is read);
    any other type (image, video, archive, JSON) is not."""
    kind = media_type(content_type)
    if not kind or kind in PAGE_TYPES or kind in DOCUMENT_TYPES:
        return None
    if kind == _UNNAMED_BINARY:
        return f"{kind} of {declared:,} bytes, over the {max_bytes:,} read" if declared > max_bytes else None
    return f"{kind} is not a page"


def _declared_length(response: httpx.Response) -> int:
    """The Content-Length the server declared (0: none, or not a number)."""
    try:
        return max(int(response.headers.get("content-length") or 0), 0)
    except ValueError:
        return 0


def _check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL, else InputError(field='url')."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"not a valid URL: {exc}", field="url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"only http and https URLs can be fetched, not {scheme or 'a bare path'!r}", field="url")
    if "@" in parts.netloc:
        raise InputError("URLs with a user name or password are refused", field="url")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InputError("the URL has no host", field="url")
    if _NUMERIC_HOST.match(host) and not _DOTTED_DECIMAL.match(host):
        raise InputError(f"numeric host {host!r} is ambiguous; write the address as four decimal numbers", field="url")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ProviderUnavailable(_PROVIDER, f"cannot resolve host {host!r}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def _pin(url: str, allow_private: bool) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL rewritten to a checked IP, plus the Host header and TLS SNI that keep the name."""
    scheme, host, port = _check_url(url)
    addresses = await _resolve(host, port)
    if not allow_private:
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason:
                raise InputError(f"{host} resolves to {ip}, which {reason}; refused", field="url")
    ip = addresses[0]
    parts = urlsplit(url)
    ip_host = f"[{ip}]" if ip.version == 6 else str(ip)
    default_port = port == (443 if scheme == "https" else 80)
    netloc = ip_host if default_port and parts.port is None else f"{ip_host}:{port}"
    pinned = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    return pinned, {"Host": host_header}, extensions


@dataclass(frozen=True)
class _Rules:
    """What one fetch may do (``safe_fetch``'s arguments)."""

    max_bytes: int
    allow_private: bool
    max_redirects: int
    truncate: bool
    only_pages: bool


class _Got(NamedTuple):
    response: httpx.Response
    body: bytes
    truncated: bool = False
    unread: str = ""


async def _get_once(client: httpx.AsyncClient, url: str, rules: _Rules) -> _Got:
    pinned, headers, extensions = await _pin(url, rules.allow_private)
    request = client.build_request("GET", pinned, headers={**headers, "Accept": "*/*"}, extensions=extensions)
    try:
        response = await client.send(request, stream=True, follow_redirects=False)
    except httpx.TimeoutException:
        raise ProviderTimeout(_PROVIDER, "the server did not answer in time") from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(_PROVIDER, f"cannot connect: {type(exc).__name__}") from None
    try:
        if response.status_code in _REDIRECTS:
            return _Got(response, b"")
        declared = _declared_length(response)
        unread = not_a_page(response.headers.get("content-type", ""), declared, rules.max_bytes) if rules.only_pages else None
        if unread:  # decided on the headers: closing the response drops the body unread
            return _Got(response, b"", unread=unread)
        if declared > rules.max_bytes and not rules.truncate:
            raise InputError(f"the resource is {declared:,} bytes; the limit is {rules.max_bytes:,}", field="url")
        return await _read_body(response, rules)
    except httpx.TransportError as exc:
        raise ProviderUnavailable(_PROVIDER, f"the transfer broke off: {type(exc).__name__}") from None
    finally:
        await response.aclose()


async def _read_body(response: httpx.Response, rules: _Rules) -> _Got:
    """The body streamed under ``rules.max_bytes``: cut there when ``rules.truncate``, else refused."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > rules.max_bytes:
            if not rules.truncate:
                raise InputError(f"the resource is larger than the limit of {rules.max_bytes} bytes", field="url")
            chunks.append(chunk[: rules.max_bytes - (size - len(chunk))])
            return _Got(response, b"".join(chunks), truncated=True)
        chunks.append(chunk)
    return _Got(response, b"".join(chunks))


async def _fetch(client: httpx.AsyncClient, url: str, rules: _Rules) -> FetchedPage:
    current = url
    for _ in range(rules.max_redirects + 1):
        got = await _get_once(client, current, rules)
        response = got.response
        if response.status_code in _REDIRECTS:
            location = response.headers.get("location")
            if not location:
                raise ProviderError(_PROVIDER, f"HTTP {response.status_code} without a Location header")
            current = urljoin(current, location)
            continue
        return FetchedPage(
            url=url,
            final_url=current,
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            content=got.body,
            truncated=got.truncated,
            unread=got.unread,
        )
    raise ProviderError(_PROVIDER, f"more than {rules.max_redirects} redirects")


async def safe_fetch(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
    http: httpx.AsyncClient | None = None,
    max_redirects: int = 5,
    truncate: bool = False,
    only_pages: bool | None = None,
) -> FetchedPage:
    """GET ``url`` under the rules in the module docstring.

    Args:
        max_bytes: body cap; larger bodies raise InputError, or are cut when ``truncate``.
        only_pages: read the body only of a page (text, a document: ``not_a_page``); any other
            comes back with no content and ``unread`` saying why. None: as ``truncate`` (a
            fetch that takes a page cut short reads pages: a cut image or archive serves no one).
        timeout_s: cap on the whole fetch, redirects and body included.
        allow_private: permit non-public addresses (tests, trusted internal sources).
        http: a client to send with; it must not use a proxy (the default one ignores the
            environment's proxy settings, since a proxy would resolve the name again).

    Raises:
        InputError: the URL is refused (scheme, userinfo, blocked address) or too large.
        ProviderTimeout, ProviderUnavailable, ProviderError: the fetch itself failed.
    """
    rules = _Rules(max_bytes, allow_private, max_redirects, truncate, truncate if only_pages is None else only_pages)
    try:
        async with asyncio.timeout(timeout_s):
            if http is not None:
                return await _fetch(http, url, rules)
            async with httpx.AsyncClient(
                trust_env=False, follow_redirects=False, timeout=timeout_s, verify=tls_context()
            ) as client:
                return await _fetch(client, url, rules)
    except TimeoutError:
        raise ProviderTimeout(_PROVIDER, f"fetch took longer than {timeout_s:g} s") from None
