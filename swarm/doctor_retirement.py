"""``swarm doctor``'s ``model dates`` line: a configured model its provider has retired, or
retires soon, by the dates litellm's model list carries (``deprecation_date``).

Read offline from the list the installed litellm ships (no import of litellm, no network), so
``--quick`` gives it too. It is the check that would have said both retirements this project
shipped past: DeepSeek's ``deepseek-chat`` (2026-07-24) and Anthropic's ``claude-sonnet-4-5``
(2026-11-30), each of which failed every call of a user who set that provider's key. The list
knows only what it knew when that litellm was released; a name the provider no longer serves is
also found by the full doctor's lookup (``doctor_reach.not_served_here``) and by the first call
(``ModelNotServed``).
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from core.config import ModelSpec, SwarmConfig
from swarm.doctor_finding import Finding
from swarm.doctor_reach import PROVIDER_BASES

CHECK = "model dates"
#: a retirement this close is a WARN (Anthropic and Google give at least 60 days' notice)
WARN_DAYS = 60
_LIST = "model_prices_and_context_window_backup.json"


@functools.cache
def litellm_dates() -> dict[str, tuple[str, str]]:
    """litellm model name -> (the retirement date its list gives, the provider of that entry);
    empty when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _LIST
    try:
        entries: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {name: (str(entry["deprecation_date"]), str(entry.get("litellm_provider") or ""))
            for name, entry in entries.items() if isinstance(entry, dict) and entry.get("deprecation_date")}


def retirement_date(spec: ModelSpec) -> datetime.date | None:
    """The date litellm's list gives for ``spec``'s model: by its full name, else by the name
    without its route where that entry is the same provider's (litellm keys Anthropic's models
    bare; a bare ``gemini-2.5-flash-lite`` is Vertex AI's, with Vertex AI's own date)."""
    dates = litellm_dates()
    route, _, bare = spec.litellm_model.partition("/")
    found = dates.get(spec.litellm_model)
    if found is None and bare in dates and dates[bare][1] == route:
        found = dates[bare]
    try:
        return datetime.date.fromisoformat(found[0]) if found else None
    except ValueError:
        return None


def _own_server(spec: ModelSpec) -> bool:
    """A model at an api_base of the user's own (a gateway, a self-hosted server) may serve any name."""
    base = spec.api_base
    return bool(base) and base is not None and base.rstrip("/") not in PROVIDER_BASES


async def check_retirements(config: SwarmConfig, today: datetime.date | None = None) -> Finding:
    """FAIL for a model past its date at its provider's own API; WARN for one within ``WARN_DAYS``
    of it, or past it at an api_base of the user's own; OK otherwise."""
    today = today or datetime.date.today()
    past: list[str] = []
    soon: list[str] = []
    for name, spec in config.models.items():
        date = retirement_date(spec)
        if date is None:
            continue
        line = f"{name} ({spec.litellm_model}) {'retired' if date <= today else 'retires'} {date.isoformat()}"
        if date <= today:
            (soon if _own_server(spec) else past).append(line + (" (at your own api_base)" if _own_server(spec) else ""))
        elif (date - today).days <= WARN_DAYS:
            soon.append(line)
    fix = ("point models.<name>.litellm_model at a model the provider serves (its deprecations page names"
           " the replacement); calls to a retired model fail and fall over to the next in the chain")
    if past:
        return Finding(CHECK, "fail", "by litellm's model list: " + "; ".join(past + soon), fix)
    if soon:
        return Finding(CHECK, "warn", "by litellm's model list: " + "; ".join(soon), fix)
    return Finding(CHECK, "ok", f"no configured model is past or within {WARN_DAYS} days of a retirement"
                   " date in litellm's model list")
