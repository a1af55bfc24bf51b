"""What a ``swarm doctor`` check gives back (``Finding``) and what it is (``Check``).

Every ``swarm/doctor_*.py`` area module builds findings from these; ``swarm.doctor`` runs the checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


def goes_on_to(chains: list[list[str]], name: str, runs_here: set[str], chain_name: str = "the chain") -> str | None:
    """What the chains holding ``name`` fall back on when it is skipped, said as a phrase
    ("the chain goes on to local"); ``None`` when one of them has no other member in
    ``runs_here`` (skipping ``name`` leaves that chain with nothing that can run here).

    In each chain the first member after ``name`` that runs here is named, else the first
    before it (then the chain "still has" it). A ``name`` that no chain holds is judged
    against all of them, as if put first (a call that prefers it).
    """
    own = [chain for chain in chains if name in chain] or [[name, *chain] for chain in chains]
    if not own:
        return None
    after: list[str] = []
    before: list[str] = []
    for chain in own:
        at = chain.index(name)
        later = [m for m in chain[at + 1:] if m in runs_here and m != name]
        earlier = [m for m in chain[:at] if m in runs_here]
        if not later and not earlier:
            return None
        (after if later else before).append(later[0] if later else earlier[0])
    if before:
        return f"{chain_name} still has {' or '.join(dict.fromkeys(before + after))}"
    return f"{chain_name} goes on to {' or '.join(dict.fromkeys(after))}"
