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


@dataclass(frozen=True)
class Finding:
    """What one check found: ``status`` is ok | warn | fail | info; ``fix`` says what to do."""

    check: str
    status: Status
    detail: str
    fix: str = ""


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
