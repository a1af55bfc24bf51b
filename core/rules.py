"""Rules that more than one layer applies, written once: tier names, job ids, idempotency keys.

Every door, the dispatcher, the config schema and the CLI read these; none keeps its own copy.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal, get_args

#: The tiers a job or a call may ask for, cheapest first.
Tier = Literal["fast", "balanced", "premium"]
TIERS: tuple[str, ...] = get_args(Tier)

#: A job id: what a caller may pass to resume or de-duplicate a job (also its checkpoint thread).
MAX_JOB_ID_CHARS = 128
JOB_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"  # ASCII only: str.isalnum() would admit other scripts

#: An idempotency key: same key, same job (printable ASCII, no spaces).
MAX_IDEMPOTENCY_KEY_CHARS = 200
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"

#: The log levels a config or ``SWARM_LOG_LEVEL`` may name (any case; ``log_level_name`` maps
#: logging's aliases WARN and FATAL onto WARNING and CRITICAL).
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
_LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def log_level_name(value: str) -> str:
    """``value`` upper-cased, stripped, with logging's aliases resolved (not checked: see ``LOG_LEVELS``)."""
    name = value.strip().upper()
    return _LOG_LEVEL_ALIASES.get(name, name)


#: The longest name a job may give for a model, family, kind or backend: any config name fits,
#: and an error that names the unknown one never echoes megabytes back.
MAX_NAME_CHARS = 100

#: What separates the pages of a document's text (PDF pages, PPTX slides): a form feed, as
#: pdftotext writes it. The local index joins pages with it; passages count it to know their page.
PAGE_BREAK = "\f"


def valid_job_id(value: object) -> str | None:
    """``value`` when it is a valid job id, else ``None``."""
    if isinstance(value, str) and len(value) <= MAX_JOB_ID_CHARS and re.fullmatch(JOB_ID_PATTERN, value):
        return value
    return None


#: what a door says of a text field that says nothing (``blank``)
EMPTY_TEXT = "is empty; say it in plain words"


def blank(value: str) -> bool:
    """``value`` says nothing: only whitespace and invisible format characters (a zero-width
    space, a BOM: Unicode category Cf)."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in value)


def not_blank(value: str) -> str:
    """A text field that must say something (a task, a question): only whitespace (``blank``) is
    refused. Use as ``_check = field_validator("task")(not_blank)``."""
    if blank(value):
        raise ValueError("must not be empty or only whitespace")
    return value


def shown(value: str, limit: int = 60, *, quoted: bool = True) -> str:
    """``value`` for an error message (``quoted``: as its repr), cut to ``limit`` characters with its
    length said: an error never grows with what it refuses (a 200,000-character tool name came
    back whole)."""
    said = repr if quoted else str
    if len(value) <= limit:
        return said(value)
    return f"{said(value[:limit])}... ({len(value):,} characters)"


def check_text_limit(value: str, limits: Any, key: str, field: str) -> None:
    """``InputError`` on ``field`` when ``value`` is longer than ``limits.<key>`` (the config's
    ``limits`` section), naming both sizes and the key: every door and action says it alike."""
    from core.errors import InputError

    limit = getattr(limits, key)
    if len(value) > limit:
        raise InputError(f"is {len(value):,} characters; the limit is {limit:,} (limits.{key} in config)", field=field)


#: The suffixes a ``routing.delegation`` target may carry after its model or family
#: (``deepseek+search``: the delegation graph searches first, graphs/delegation/action.py).
ROUTE_SUFFIXES: tuple[str, ...] = ("search",)

#: The MCP action tools ``mcp.enabled_tools`` chooses among (mcp_server/tools.py registers them;
#: tests/test_config_mcp_tools.py checks the two agree).
MCP_ACTION_TOOLS: tuple[str, ...] = (
    "delegate", "research", "consensus", "upscale_image", "remove_background", "process_image",
)
#: The MCP tools listed whatever ``mcp.enabled_tools`` says (naming one there changes nothing).
MCP_ALWAYS_ON_TOOLS: tuple[str, ...] = ("job_status", "job_result", "job_cancel", "list_jobs", "list_threads")
