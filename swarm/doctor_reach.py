"""Why ``swarm doctor`` could not reach an address: the host resolved? a TCP connection to it
opened? (``no_connection``), found again step by step after a request failed; and whether a
provider that answers serves the model name config asks it for (``not_served_here``: a free
lookup of the name, or the API's list of its models; no completion).

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from core.redact import redact
from swarm.executors.runpod_unreachable import causes

if TYPE_CHECKING:
    from core.config import ModelSpec

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


# --- is the model name served? ------------------------------------------------------------------

#: how many of the names an API lists a finding repeats
LISTED_SHOWN = 6


@dataclass(frozen=True)
class NotServed:
    """A model name its provider does not serve: ``what`` and ``fix`` for the finding; ``certain``:
    the provider said so (its lookup of the name, a hosted API's own list): a FAIL, else a WARN."""

    what: str
    fix: str
    certain: bool = True


#: what a lookup found: served (``True``/``False``; ``None``: not known) and the names listed
Served = tuple[bool | None, list[str]]


async def _get(url: str, headers: dict[str, str]) -> Any:
    import httpx

    from providers.llm.model_access import HEALTH_TIMEOUT_S

    async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
        return await client.get(url, headers=headers)


async def _listed(spec: ModelSpec, served: str, key: str | None, default_base: str) -> Served:
    """An OpenAI-compatible API's ``GET {api_base}/models``: is ``served`` among its ids?"""
    reply = await _get(f"{(spec.api_base or default_base).rstrip('/')}/models",
                       {"Authorization": f"Bearer {key}"} if key else {})
    if reply.status_code != 200:
        return None, []
    try:
        ids = [str(entry["id"]) for entry in reply.json()["data"]]
    except (ValueError, KeyError, TypeError):  # not the list the API documents: nothing known
        return None, []
    return served in ids, ids


async def _looked_up(url: str, headers: dict[str, str]) -> Served:
    """One model's own page (Anthropic's ``GET /v1/models/{id}``, Gemini's ``GET /models/{id}``):
    404 is the provider's "no such model"."""
    status = (await _get(url, headers)).status_code
    return (False if status == 404 else True if status == 200 else None), []


async def _anthropic(spec: ModelSpec, served: str, key: str | None) -> Served:
    base = (spec.api_base or "https://api.anthropic.com").rstrip("/").removesuffix("/v1/messages")
    return await _looked_up(f"{base}/v1/models/{quote(served)}",
                            {"x-api-key": key or "", "anthropic-version": "2023-06-01"})


async def _gemini(spec: ModelSpec, served: str, key: str | None) -> Served:
    base = (spec.api_base or "https://generativelanguage.googleapis.com/v1beta").rstrip("/")
    return await _looked_up(f"{base}/models/{quote(served)}", {"x-goog-api-key": key or ""})


async def _deepseek(spec: ModelSpec, served: str, key: str | None) -> Served:
    return await _listed(spec, served, key, "https://api.deepseek.com")


async def _openai(spec: ModelSpec, served: str, key: str | None) -> Served:
    return await _listed(spec, served, key, "https://api.openai.com/v1")


#: the providers' own API bases: a 404 from one of them is theirs
PROVIDER_BASES = frozenset({"https://api.anthropic.com", "https://api.anthropic.com/v1",
                             "https://generativelanguage.googleapis.com/v1beta", "https://api.deepseek.com"})
#: litellm route -> its free lookup of one model name
_LOOKUPS: dict[str, Callable[[ModelSpec, str, str | None], Awaitable[Served]]] = {
    "deepseek": _deepseek, "anthropic": _anthropic, "gemini": _gemini, "openai": _openai,
}


async def not_served_here(name: str, spec: ModelSpec) -> NotServed | None:
    """Whether the provider of ``name`` (a model of config's ``models`` table) says it does not
    serve ``spec.litellm_model``'s name; ``None`` when it serves it, or when that is not known
    here (a route with no lookup, the lookup unanswered or refused: the probe or the first call
    says why). An OpenAI-compatible server's list is a WARN (llama.cpp answers any name)."""
    import httpx

    from core.credentials import credential
    from providers.llm.litellm_errors import not_served

    route, _, served = spec.litellm_model.partition("/")
    lookup = _LOOKUPS.get(route)
    if lookup is None or not served:
        return None
    try:
        found, ids = await lookup(spec, served, credential(spec.api_key_env) if spec.api_key_env else None)
    except (httpx.HTTPError, OSError):
        return None
    if found is not False:
        return None
    what, fix = not_served(name, route, served, spec.litellm_model_env)
    listed = f"; it lists: {', '.join(ids[:LISTED_SHOWN])}{', ...' if len(ids) > LISTED_SHOWN else ''}" if ids else ""
    if route == "openai" and spec.api_base:
        return NotServed(f"{redact(spec.api_base)} does not list the model {served!r}{listed} (a server that serves"
                         " one model answers any name)", fix, certain=False)
    # a gateway or proxy at another api_base may lack the provider's model pages: its 404 is no proof
    return NotServed(f"{what}{listed}", fix, certain=route == "deepseek" or not own_base(spec))


def own_base(spec: ModelSpec) -> bool:
    """Whether ``spec`` is reached at an api_base of the user's own (a gateway, a proxy, a server
    they host), not its provider's: such a base may lack the provider's model pages, or serve any name."""
    return bool(spec.api_base) and (spec.api_base or "").rstrip("/") not in PROVIDER_BASES
