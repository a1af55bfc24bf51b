"""What a secret looks like, and one pass of redaction over a piece of text.

The shapes of well-known secrets (``_PATTERNS``), the cheap test that text may hold one
(``_may_hold_secret``), and the scan built once per set of secret values (``_values_pattern``).
``core.redact`` keeps the set of values and walks job results; ``core.redact_blob`` is the fast
path for base64 blobs.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from typing import NamedTuple

MASK = "[REDACTED]"

# a key's prefix starts a token: "task-management-system" holds "sk-management-system"
_GOOGLE_KEY = r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{30,}"
_AWS_KEY_ID = r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}"

#: the query parameters that carry a credential (``?api_key=``, ``&x-amz-signature=``, ...)
_QUERY_SECRETS = (r"(?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|api_key|apikey|api-key|key"
                  r"|token|access_token|private_token|code|auth|secret)")

_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic
        r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{16,}",  # OpenAI / DeepSeek style
        r"(?<![A-Za-z0-9])tvly-[A-Za-z0-9_\-]{8,}",  # Tavily
        _GOOGLE_KEY,  # Google API keys
        _AWS_KEY_ID,  # AWS access key ids
        r"(?<![A-Za-z0-9])rpa_[A-Za-z0-9]{20,}",  # RunPod API keys
        r"(?<![A-Za-z0-9])ya29\.[0-9A-Za-z_\-]{20,}",  # Google OAuth access tokens
        r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
        r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}",  # Hugging Face tokens
        # Below, group 1 is kept and only what follows it is masked.
        r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*",
        rf"(?i)([?&]{_QUERY_SECRETS}=)[^&\s\"']+",
        # the same outside a query (a log line's "key=sk%2D...", a string that starts with it): only a
        # token-like value, so prose ("the key=value form") is left alone
        rf"(?i)((?<![A-Za-z0-9_]){_QUERY_SECRETS}=)(?=[A-Za-z0-9_.~+/%\-]*[0-9])[A-Za-z0-9_.~+/%\-]{{16,}}",
        # "%" too: a key with "+/=" percent-encoded (%2B) kept its tail after the first escape
        r"(?i)((?:aws_secret_access_key|secretaccesskey|api_key|apikey|api-key)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9/+_%\-]{8,}",
        r"(?i)((?:access_token|refresh_token|client_secret|x-goog-api-key|x-auth-token|password|passwd|cookie)[\"']?\s*[=:]\s*[\"']?)"
        r"[^\s\"'&,;]{6,}",
        r"(?i)([?&](?:x-goog-signature|x-goog-credential|awsaccesskeyid)=)[^&\s\"']+",
        r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:basic|token|aws4-hmac-sha256)\s+)[^\r\n\"']{8,}",
        r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?digest\s+)[^\r\n]{8,}",  # quoted parameters: the rest of the line
        r"([a-z][a-z0-9+.\-]*://[^:/@\s\"']*:)[^@/\s\"']+(?=@)",  # the password in scheme://user:pass@host (user may be empty)
    )
)


def _scoped(pattern: str) -> str:
    """``pattern`` as one alternative of a bigger regex (a leading ``(?i)`` becomes scoped)."""
    return f"(?i:{pattern[4:]})" if pattern.startswith("(?i)") else f"(?:{pattern})"


#: One scan that finds whether any pattern could match: most strings of a result hold no secret
#: shape, and one search is cheaper than a substitution per pattern.
_ANY_PATTERN = re.compile("|".join(_scoped(p.pattern) for p in _PATTERNS))

#: Lower-case words one of which every match of a pattern above holds (``sk-`` for the ``sk-``
#: keys, ``key=`` for ``?api_key=...``, ``://`` for a password in a URL, ...): text of ASCII
#: characters only whose lower-case form holds none of them matches no pattern, so its one scan
#: is a few substring tests. Add a pattern, add its words (tests/test_security_secrets.py fuzzes
#: the pair).
_TRIGGERS: tuple[str, ...] = (
    "sk-", "tvly-", "aiza", "akia", "asia", "rpa_", "ya29.", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "hf_",
    "bearer", "signature=", "credential=", "token=", "sig=", "key=", "awsaccesskeyid=", "code=", "auth=", "secret=",
    "aws_secret_access_key", "secretaccesskey", "api_key", "apikey", "api-key", "x-auth-token", "cookie",
    "access_token", "refresh_token", "client_secret", "password", "passwd", "authorization", "://",
)

#: no pattern matches fewer characters, and no secret value is shorter (``core.redact``'s
#: ``register_secret``, ``_env_secrets``): a shorter string is returned as it is
#: (tests/test_security_secrets.py checks it)
MIN_SECRET_CHARS = 6


def _forms(value: str) -> set[str]:
    """``value`` and the forms an upstream echoes it in: JSON-escaped (``\\"``, ``\\\\``, ``\\u00e9``)
    and URL-quoted (``%2B``, ``+`` for a space): a key with ``+/=`` came back in either, unmasked."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             urllib.parse.quote(value, safe=""), urllib.parse.quote(value), urllib.parse.quote_plus(value)}
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


class _Scan(NamedTuple):
    """What one redaction looks for, built once per set of secrets."""

    #: every secret value in every form ``_forms`` gives (None: no secret is known)
    values: re.Pattern[str] | None
    #: one scan for a value or any pattern's shape
    anything: re.Pattern[str]
    #: those forms as plain strings, for a substring test over a blob (``_redact_blob``)
    forms: tuple[str, ...] = ()


@functools.lru_cache(maxsize=8)
def _values_pattern(values: frozenset[str]) -> _Scan:
    """The scan for the secret values ``values`` and every pattern."""
    if not values:
        return _Scan(None, _ANY_PATTERN)
    every = sorted(set().union(*(_forms(v) for v in values)), key=len, reverse=True)
    alternatives = "|".join(re.escape(v) for v in every)
    return _Scan(re.compile(alternatives), re.compile(f"{alternatives}|{_ANY_PATTERN.pattern}"), tuple(every))


def _mask(match: re.Match[str]) -> str:
    return (match.group(1) if match.re.groups else "") + MASK


def _redact_text(text: str, scan: _Scan) -> str:
    values = scan.values
    if len(text) < MIN_SECRET_CHARS or not _may_hold_secret(text, scan):
        return text
    if values is not None:
        text = values.sub(MASK, text)
    if _ANY_PATTERN.search(text) is None:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def _may_hold_secret(text: str, patterns: _Scan | tuple[re.Pattern[str] | None, re.Pattern[str]]) -> bool:
    """False only when no secret value and no pattern can match anywhere in ``text``."""
    values, anything = patterns[0], patterns[1]
    if values is not None and values.search(text) is not None:
        return True
    if not text.isascii():  # case-insensitive matching beyond ASCII (K, ſ, ...): the full scan
        return anything.search(text) is not None
    lowered = text.lower()
    return any(word in lowered for word in _TRIGGERS)

