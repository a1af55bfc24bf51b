"""Why a request to a RunPod endpoint never reached it, in words a person can act on: where (the
host and port only, never the URL, which may be signed), why (the name did not resolve, the
connection was refused, it timed out, TLS failed), after how many attempts, and what to do; and
which part of a URL httpx refuses is at fault (``bad_url``): the base URL, or an endpoint id with a
stray character (``bad_endpoint_id``: the '\\r' a .env file saved with CRLF line ends leaves)."""

from __future__ import annotations

import errno
import re
import socket
import ssl

import httpx

#: what each low-level failure says, most specific first (the first one found in the chain wins)
_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (socket.gaierror, "the name did not resolve: no such host, or no network or DNS on this machine"),
    (ConnectionRefusedError, "connection refused: nothing listens there"),
    (ssl.SSLCertVerificationError, "TLS failed: its certificate is not trusted here"),
    (ssl.SSLError, "TLS failed: the handshake did not complete"),
    (httpx.ProxyError, "the proxy did not connect it (HTTPS_PROXY, ALL_PROXY)"),
    (httpx.ConnectTimeout, "connecting timed out"),
    (TimeoutError, "connecting timed out"),
    (ConnectionResetError, "the connection was reset"),
)
#: an ``OSError`` known only by its errno
_ERRNOS = {
    errno.ENETUNREACH: "the network is unreachable from this machine",
    errno.EHOSTUNREACH: "no route to that host from this machine",
}

#: what to do about an endpoint this machine cannot reach (true of any config: the shipped
#: config.yaml reads runner.runpod.base_url from RUNPOD_API_BASE and runner.kind from SWARM_RUNNER)
FIX = ("check this machine's network and proxy settings and runner.runpod.base_url (RUNPOD_API_BASE),"
       " or run jobs on this machine instead: runner.kind: local (SWARM_RUNNER=local with the shipped config.yaml)")


def where(url: str) -> str:
    """``host`` or ``host:port`` of ``url``: no scheme, credentials, path or query."""
    parsed = httpx.URL(url)
    default = {"https": 443, "http": 80}.get(parsed.scheme)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host  # an IPv6 address, as a URL writes it
    return host if parsed.port in (None, default) else f"{host}:{parsed.port}"


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during, in turn (each once)."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def cause(exc: BaseException) -> str:
    """What went wrong under ``exc`` (an httpx transport error), from its chain of causes."""
    chain = causes(exc)
    for kind, said in _CAUSES:
        if any(isinstance(link, kind) for link in chain):
            return said
    for link in chain:
        if isinstance(link, OSError) and link.errno in _ERRNOS:
            return _ERRNOS[link.errno]
    return type(chain[-1]).__name__  # its text may carry the URL: the class only


def unreachable(endpoint_id: str, url: str, exc: BaseException, attempts: int, elapsed_s: float) -> str:
    """The message of a request to ``endpoint_id`` at ``url`` that never got through."""
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    return (f"RunPod endpoint {endpoint_id} unreachable: could not connect to {where(url)} ({cause(exc)});"
            f" gave up after {tries} in {elapsed_s:.1f} s. To fix: {FIX}")


#: the characters of a RunPod endpoint id (``runner.runpod.endpoint_id``)
ENDPOINT_ID = re.compile(r"[A-Za-z0-9_-]*")
#: the id in an endpoint's URL as the RunPod console shows it (``https://api.runpod.ai/v2/<id>/run``)
_ID_IN_URL = re.compile(r"/v2/([A-Za-z0-9_-]+)(?:[/?#]|$)")
#: what a stray line end is said to be (the value came from a .env file saved with CRLF line ends)
CRLF = "the line end a .env file saved with Windows line ends, CRLF, leaves"


def bad_endpoint_id(endpoint_id: str, named: str | None = "RUNPOD_ENDPOINT_ID with the shipped config.yaml") -> str | None:
    """Why ``endpoint_id`` (``runner.runpod.endpoint_id``, set by ``named`` when given) is no RunPod
    endpoint id, with its first stray character as ``repr`` shows it ('\\r': ``CRLF``); ``None``
    when it is one, or empty (not set)."""
    if ENDPOINT_ID.fullmatch(endpoint_id):
        return None
    stray = next(char for char in endpoint_id if not ENDPOINT_ID.fullmatch(char))
    shown = repr(endpoint_id) if len(endpoint_id) <= 64 else f"{endpoint_id[:64]!r}..."
    said = f" ({CRLF})" if stray == "\r" else ""
    named = f" ({named})" if named else ""
    in_url = _ID_IN_URL.search(endpoint_id)
    which = f" ({in_url.group(1)} in this URL)" if in_url else ""
    return (f"the endpoint id {shown}{named} holds {stray!r}{said}, which no endpoint id has (letters, digits,"
            f" - and _ only); set it to the id alone{which}, as the RunPod console shows it")


def endpoint_id_kept(endpoint_id: str) -> str:
    """``endpoint_id`` without the characters no endpoint id has (what a fix proposes); the id alone
    from an endpoint URL pasted whole."""
    in_url = _ID_IN_URL.search(endpoint_id)
    if in_url:
        return in_url.group(1)
    return "".join(char for char in endpoint_id if ENDPOINT_ID.fullmatch(char))


def whole_url(url: str) -> bool:
    """Whether ``url`` is an ``http(s)://host`` URL httpx takes."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def bad_url(base_url: str, endpoint_id: str, path: str) -> tuple[str, str]:
    """(error type, message) of a request whose URL httpx refuses (``InvalidURL``,
    ``UnsupportedProtocol``), naming the part at fault: ``base_url`` when it is no
    ``http(s)://host`` URL, else ``endpoint_id`` when it has a stray character (both a
    ``ConfigError``), else the ``path``: a job id RunPod gave (a ``ProviderError``)."""
    if not whole_url(base_url):
        return "ConfigError", bad_base_url(base_url)
    why = bad_endpoint_id(endpoint_id)
    if why is not None:
        return "ConfigError", f"runner.runpod.endpoint_id: {why}"
    return "ProviderError", f"RunPod endpoint {endpoint_id}: the request path {path!r} is no URL path (a job id it gave?)"


def stray_character(text: str) -> str | None:
    """The first character of ``text`` no URL or id holds (a control character, a space), if any."""
    return next((char for char in text if not char.isprintable() or char.isspace()), None)


def bad_base_url(base_url: str) -> str:
    """The message of a request to ``base_url`` that is no ``http(s)://host`` URL; the value is
    shown unless it may carry a credential (``user:token@``, a query)."""
    shown = "" if set("@?#") & set(base_url) else f" is {base_url!r}"
    stray = stray_character(base_url)
    if stray is not None:
        said = f" ({CRLF})" if stray == "\r" else ""
        return (f"runner.runpod.base_url{shown}: it holds {stray!r}{said}; set it to the URL alone, as RunPod's own"
                " https://api.runpod.ai/v2 (RUNPOD_API_BASE with the shipped config.yaml)")
    return (f"runner.runpod.base_url{shown}: its scheme (https://) is missing or wrong, or it has no host; set it to"
            " a full URL, as RunPod's own https://api.runpod.ai/v2 (RUNPOD_API_BASE with the shipped config.yaml)")
