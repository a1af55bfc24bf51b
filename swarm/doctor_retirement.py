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
from providers.llm.litellm_request import listed_entry
from swarm.doctor_finding import Finding
from swarm.doctor_reach import own_base

CHECK = "model dates"
#: a retirement this close is a WARN (Anthropic and Google give at least 60 days' notice)
WARN_DAYS = 60
_LIST = "model_prices_and_context_window_backup.json"


@functools.cache
def litellm_list() -> dict[str, dict[str, Any]]:
    """litellm's model list as the installed litellm ships it, each entry's retirement date and
    provider only (the file is ~3 MB); empty when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _LIST
    try:
        entries: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {name: {key: entry.get(key) for key in ("deprecation_date", "litellm_provider")}
            for name, entry in entries.items() if isinstance(entry, dict)}


def retirement_date(spec: ModelSpec) -> datetime.date | None:
    """The date litellm's list gives for ``spec``'s model (``listed_entry``: the Gemini API's
    entry, never Vertex AI's of the same bare name)."""
    entry = listed_entry(litellm_list(), spec.litellm_model)
    found = entry.get("deprecation_date") if entry else None
    try:
        return datetime.date.fromisoformat(str(found)) if found else None
    except ValueError:
        return None


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
            (soon if own_base(spec) else past).append(line + (" (at your own api_base)" if own_base(spec) else ""))
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
