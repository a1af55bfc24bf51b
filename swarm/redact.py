"""One redaction layer for logs, traces, errors and job results.

Patterns catch the shapes of well-known secrets; on top of that, the value of every
environment variable whose name ends in KEY, TOKEN or SECRET (and of every config field named
like a secret) is replaced wherever it appears.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"

_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic
        r"sk-[A-Za-z0-9_\-]{16,}",  # OpenAI / DeepSeek style
        r"tvly-[A-Za-z0-9_\-]{8,}",  # Tavily
        r"AIza[0-9A-Za-z_\-]{30,}",  # Google API keys
        r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
        r"rpa_[A-Za-z0-9]{20,}",  # RunPod API keys
        # Below, group 1 is kept and only what follows it is masked.
        r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*",
        r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|api_key|apikey|key|token|access_token)=)[^&\s\"']+",
        r"(?i)((?:aws_secret_access_key|api_key|apikey|x-api-key)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9/+_\-]{8,}",
    )
)

_SECRET_ENV_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Add one literal value to redact everywhere (e.g. a secret read from config)."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def _env_secrets() -> Iterable[str]:
    for name, value in os.environ.items():
        if name.upper().endswith(_SECRET_ENV_SUFFIXES) and value and len(value) >= 6:
            yield value


@functools.lru_cache(maxsize=8)
def _values_pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def _current_values_pattern() -> re.Pattern[str] | None:
    return _values_pattern(frozenset({*_extra_secrets, *_env_secrets()}))


def _mask(match: re.Match[str]) -> str:
    return (match.group(1) if match.re.groups else "") + MASK


def _redact(text: str, values: re.Pattern[str] | None) -> str:
    if not text:
        return text
    if values is not None:
        text = values.sub(MASK, text)
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def _walk(data: Any, values: re.Pattern[str] | None) -> Any:
    if isinstance(data, str):
        return _redact(data, values)
    if isinstance(data, dict):
        return {k: _walk(v, values) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_walk(v, values) for v in data]
    return data


def redact(text: str) -> str:
    """Return ``text`` with every known secret shape and secret value masked."""
    return _redact(text, _current_values_pattern())


def redact_data(data: Any) -> Any:
    """Redact every string inside a JSON-like structure (dicts, lists, tuples)."""
    return _walk(data, _current_values_pattern())
