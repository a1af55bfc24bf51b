"""Why a request to a RunPod endpoint never reached it, in words a person can act on: where (the
host and port only, never the URL, which may be signed), why (the name did not resolve, the
connection was refused, it timed out, TLS failed), after how many attempts, and what to do."""

from __future__ import annotations

import errno
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
    return parsed.host if parsed.port in (None, default) else f"{parsed.host}:{parsed.port}"


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


def bad_base_url(base_url: str) -> str:
    """The message of a request to ``base_url`` that is no ``http(s)://host`` URL; the value is
    shown unless it may carry a credential (``user:token@``, a query)."""
    shown = "" if set("@?#") & set(base_url) else f" is {base_url!r}"
    return (f"runner.runpod.base_url{shown}: its scheme (https://) is missing or wrong, or it has no host; set it to"
            " a full URL, as RunPod's own https://api.runpod.ai/v2 (RUNPOD_API_BASE with the shipped config.yaml)")
