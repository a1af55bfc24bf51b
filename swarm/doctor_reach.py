"""Why ``swarm doctor`` could not reach an address: the host resolved? a TCP connection to it
opened? (``no_connection``), found again step by step after a request failed.

A name lookup runs on a daemon thread (``lookup``; the loop doctor runs on, ``doctor_loop``, sends
every lookup there, httpx's too): a resolver that never answers holds a thread the check gave up
on, and the loop's executor (which ``asyncio.run`` waits for at exit) would hold the process
as long (30 s, not the 3 s the check waited).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from swarm.executors.runpod_unreachable import causes

#: how long each step of ``no_connection``'s diagnosis (resolve, connect) may take
DIAGNOSE_TIMEOUT_S = 3.0


#: what to check when the network between here and a host is in doubt
CHECK_NETWORK = "check this machine's network and proxy (HTTPS_PROXY)"


@dataclass(frozen=True)
class NoConnection:
    """Why a URL could not be reached from here: ``cause`` is what was found ("api.deepseek.com
    does not resolve here: no such host, or no network"), ``fix`` what to do about it;
    ``network``: whether this machine's network (or proxy) may be the cause, not the address."""

    cause: str
    fix: str
    network: bool = True


def proxy_variable(url: str) -> str | None:
    """The variable naming the proxy a request to ``url`` goes through (``HTTPS_PROXY``...), as
    httpx reads the environment; ``None`` when it goes direct."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    scheme = parts.scheme.lower()
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    if proxies.get(scheme):
        return f"{scheme.upper()}_PROXY"
    return "ALL_PROXY" if proxies.get("all") else None


#: what ``getaddrinfo`` gives (typeshed types the socket's and the loop's apart)
AddrInfo = list[Any]


async def lookup(host: bytes | str | None, port: bytes | str | int | None, *, family: int = 0, type: int = 0,
                 proto: int = 0, flags: int = 0) -> AddrInfo:
    """``socket.getaddrinfo`` on a daemon thread of its own: a lookup its caller gave up on never
    holds the process at exit (the loop's executor and ``concurrent.futures`` join their threads)."""
    found: concurrent.futures.Future[AddrInfo] = concurrent.futures.Future()

    def resolve() -> None:
        if not found.set_running_or_notify_cancel():  # given up on before the thread ran
            return
        try:
            found.set_result(socket.getaddrinfo(host, port, family, type, proto, flags))
        except Exception as exc:  # handed to the caller (socket.gaierror, UnicodeError...)
            found.set_exception(exc)

    threading.Thread(target=resolve, name=f"doctor lookup {host!r}", daemon=True).start()
    return await asyncio.wrap_future(found)  # a caller gone by then (loop closed) is skipped


class _DoctorLoop(asyncio.SelectorEventLoop):
    """The event loop doctor runs on: every name lookup (httpx's, the diagnosis's) goes through ``lookup``."""

    async def getaddrinfo(self, host: bytes | str | None, port: bytes | str | int | None, *, family: int = 0,
                          type: int = 0, proto: int = 0, flags: int = 0) -> AddrInfo:
        return await lookup(host, port, family=family, type=type, proto=proto, flags=flags)


def doctor_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for doctor (``asyncio.Runner(loop_factory=doctor_loop)``)."""
    return _DoctorLoop()


def resolved_not(exc: BaseException | None) -> bool:
    """Whether ``exc`` (an httpx error) says already that the name did not resolve
    (a ``socket.gaierror`` in its chain of causes): nothing to look up again."""
    return exc is not None and any(isinstance(link, socket.gaierror) for link in causes(exc))


async def no_connection(url: str, base: str | None = None, exc: BaseException | None = None) -> NoConnection:
    """Why a request to ``url`` got no connection, found by trying again step by step: the host
    resolved? a TCP connection to it opened? ``base`` is the address the fix names (the
    configured base URL; default: the URL's origin); ``exc``, the request's error, when it says
    already that the name did not resolve, is believed. Never raises."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base = base or f"{parts.scheme}://{parts.netloc}"
    proxy = proxy_variable(url)
    if proxy:
        return NoConnection(f"could not connect through the proxy in ${proxy}",
                            f"check that proxy and this machine's network, or unset {proxy} if {host} needs none")
    no_such_host = NoConnection(f"{host} does not resolve here: no such host, or no network",
                                f"{CHECK_NETWORK}, and that {base} is the right address")
    if resolved_not(exc):
        return no_such_host
    try:
        await asyncio.wait_for(lookup(host, port, type=socket.SOCK_STREAM), DIAGNOSE_TIMEOUT_S)
    except TimeoutError:  # a resolver that never answers: not the same as a name it says does not exist
        return NoConnection(f"DNS did not answer for {host} within {DIAGNOSE_TIMEOUT_S:g} s: a slow or unreachable DNS"
                            " server, or no network", f"{CHECK_NETWORK} and its DNS server, then run doctor again")
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        return no_such_host
    return await _connect(host, port, base, parts.scheme)


async def _connect(host: str, port: int, base: str, scheme: str) -> NoConnection:
    """Why the request got no connection, found by opening one to ``host:port`` (it resolves)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), DIAGNOSE_TIMEOUT_S)
    except ConnectionRefusedError:
        return NoConnection(f"connection refused by {host}:{port} (nothing listens there)",
                            f"check that {base} is up and the address is right", network=False)
    except TimeoutError:
        return NoConnection(f"{host}:{port} does not accept a connection within {DIAGNOSE_TIMEOUT_S:g} s",
                            f"{CHECK_NETWORK}, and that {base} is up")
    except OSError as exc:  # no route to the host, the network unreachable
        return NoConnection(f"{host}:{port} is unreachable from here ({exc.strerror or type(exc).__name__})",
                            f"{CHECK_NETWORK}, and that {base} is up")
    writer.close()
    return NoConnection(f"{host}:{port} accepts a connection now, but the request's failed (TLS, or a passing fault)",
                        f"run doctor again; if it persists, check that {base} speaks {scheme or 'http'}", network=False)
