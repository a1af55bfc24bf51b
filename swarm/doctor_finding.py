"""What a ``swarm doctor`` check gives back (``Finding``) and what it is (``Check``).

Every ``swarm/doctor_*.py`` area module builds findings from these; ``swarm.doctor`` runs the checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

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
