"""What a ``swarm doctor`` check gives back (``Finding``) and what it is (``Check``).

Every ``swarm/doctor_*.py`` area module builds findings from these; ``swarm.doctor`` runs the checks.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from core.errors import SwarmError
from core.redact import redact

Status = Literal["ok", "warn", "fail", "info"]
CHECK_TIMEOUT_S = 20.0


#: what ``fix`` is called on an INFO line about an option left unused (nothing to fix)
TO_USE_IT = "to use it"


@dataclass(frozen=True)
class Finding:
    """What one check found: ``status`` is ok | warn | fail | info; ``fix`` says what to do.

    ``fix_label`` names ``fix`` on the printed line: ``fix``, or ``TO_USE_IT`` for an optional
    backend left unconfigured (not a fault). The JSON report carries ``fix`` without its label.
    """

    check: str
    status: Status
    detail: str
    fix: str = ""
    fix_label: str = "fix"


@dataclass(frozen=True)
class Check:
    """One named check; ``run`` must give its finding within ``timeout_s``."""

    name: str
    run: Callable[[], Awaitable[Finding]]
    timeout_s: float = CHECK_TIMEOUT_S


def error_message(exc: BaseException) -> str:
    """The text a finding carries for ``exc``: a ``SwarmError``'s message, else the redacted error."""
    if isinstance(exc, SwarmError):
        return str(exc.to_dict()["message"])
    return redact(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Fallback:
    """Where the chains holding a model go without it (``fallback_of``): ``after``, the members
    that answer here and are tried after it; ``before``, those tried before it (the chain "still
    has" them); ``passed``, the members tried after it, before one that answers, that fail here."""

    after: tuple[str, ...]
    before: tuple[str, ...]
    passed: tuple[str, ...] = ()

    def phrase(self, chain_name: str = "the chain", failing: Mapping[str, str] | None = None) -> str:
        """"the chain goes on to local", "the chain goes on to deepseek-v3.1-q8 (unreachable from
        here, see its line), then local", "the chain still has u2netp"."""
        if self.before:
            return f"{chain_name} still has {' or '.join(dict.fromkeys(self.before + self.after))}"
        answers = " or ".join(self.after)
        if not self.passed:
            return f"{chain_name} goes on to {answers}"
        why = failing or {}
        passed = ", ".join(f"{m} ({why.get(m, 'failing here')}, see its line)" for m in self.passed)
        return f"{chain_name} goes on to {passed}, then {answers}"


def fallback_of(
    chains: list[list[str]], name: str, runs_here: set[str], failing: Mapping[str, str] | None = None
) -> Fallback | None:
    """What the chains holding ``name`` fall back on when it is skipped (or fails); ``None`` when
    one of them has no other member in ``runs_here`` (without ``name`` that chain has nothing
    that answers here). ``failing``: members that are tried here but fail (name -> why, in a few
    words), named when a chain passes through them before one that answers.

    In each chain the first member after ``name`` in ``runs_here`` is named, else the first
    before it (then the chain "still has" it). A ``name`` that no chain holds is judged against
    all of them, as if put first (a call that prefers it).
    """
    failing = failing or {}
    own = [chain for chain in chains if name in chain] or [[name, *chain] for chain in chains]
    if not own:
        return None
    after: list[str] = []
    before: list[str] = []
    passed: list[str] = []
    for chain in own:
        at = chain.index(name)
        tried = [m for m in chain[at + 1:] if m != name and (m in runs_here or m in failing)]
        answering = next((n for n, m in enumerate(tried) if m in runs_here), None)
        earlier = [m for m in chain[:at] if m in runs_here]
        if answering is None and not earlier:
            return None
        if answering is None:
            before.append(earlier[0])
            continue
        after.append(tried[answering])
        passed += tried[:answering]
    return Fallback(tuple(dict.fromkeys(after)), tuple(dict.fromkeys(before)), tuple(dict.fromkeys(passed)))


def goes_on_to(chains: list[list[str]], name: str, runs_here: set[str], chain_name: str = "the chain",
               failing: Mapping[str, str] | None = None) -> str | None:
    """``fallback_of`` said as a phrase ("the chain goes on to local"), ``None`` where it is."""
    found = fallback_of(chains, name, runs_here, failing)
    return found.phrase(chain_name, failing) if found else None


# --- why a connection failed -------------------------------------------------------------------

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


async def no_connection(url: str, base: str | None = None) -> NoConnection:
    """Why a request to ``url`` got no connection, found by trying again step by step: the host
    resolved? a TCP connection to it opened? ``base`` is the address the fix names (the
    configured base URL; default: the URL's origin). Never raises."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base = base or f"{parts.scheme}://{parts.netloc}"
    proxy = proxy_variable(url)
    if proxy:
        return NoConnection(f"could not connect through the proxy in ${proxy}",
                            f"check that proxy and this machine's network, or unset {proxy} if {host} needs none")
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), DIAGNOSE_TIMEOUT_S)
    except (OSError, TimeoutError):  # socket.gaierror is an OSError; a resolver that never answers times out
        return NoConnection(f"{host} does not resolve here: no such host, or no network",
                            f"{CHECK_NETWORK}, and that {base} is the right address")
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
                        f"run doctor again; if it persists, check that {base} speaks {parts.scheme or 'http'}", network=False)
