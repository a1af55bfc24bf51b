"""Secrets named by operator config: which keys name one, registering their values at load, and
``swarm doctor``'s warning about a secret too short to mask."""

from __future__ import annotations

import os
import re
from typing import Any

from core.redact import MIN_SECRET_CHARS, _secret_env_names, register_secret, register_secret_env

#: A config key or HTTP header name whose value is a secret: ``api_key``, ``x-api-key``,
#: ``api-key``, ``client_secret``, ``*_token``, ``x-auth-token``, ``X-Auth``, ``Authorization``,
#: ``bearer``, ``cookie``, ``password``, ``dsn``, ``credentials`` (any case; ``_`` or ``-``). A
#: count such as ``max_tokens`` matches too: only text values are secrets (``is_secret_entry``).
SECRET_KEY_NAME = re.compile(
    r"(?i)(?:^|[_\-.])(?:api[_\-]?key|(?:private|access|secret)[_\-]key|secret|token|password|passwd|dsn"
    r"|credentials?|auth|authorization|bearer|cookie"
    # a header's key (``Ocp-Apim-Subscription-Key``, ``x-functions-key``, ``X-Auth-Key``, ``xi-api-key``)
    r"|(?:subscription|functions?|auth|access|api|account|client|master|admin|app|service|private)[_\-]key)s?$"
    # any header or entry whose name ends in a separate "key" (``X-RapidAPI-Key``, ``x-portkey-virtual-key``)
    r"|[_\-.]key$"
    # and any name that merely ends in one (``accessToken``, ``clientSecret``, ``githubtoken``)
    r"|(?i:api_?key|secret|token|password|passwd|dsn|credentials?)s?$"
)


#: mappings of HTTP headers: every value there is a credential (``X-RapidAPI-Key``,
#: ``x-portkey-virtual-key``, ``X-Honeycomb-Team`` were shown in clear), except these plain ones
_HEADER_MAPS = frozenset({"extra_headers", "headers", "default_headers"})
_PLAIN_HEADERS = frozenset({"accept", "accept-encoding", "accept-language", "anthropic-beta", "anthropic-version",
                            "cache-control", "content-type", "http-referer", "openai-beta", "referer", "user-agent",
                            "x-title"})


def is_secret_entry(key: object, value: object, parent: object = None) -> bool:
    """Whether a config entry holds a secret: its key is named like one (or it is a header, not a
    plain one, in a mapping of headers: ``parent``) and its value is text (or a list of texts),
    not empty. ``redacted_dump`` masks these; a load registers them."""
    header = str(parent).rsplit(".", 1)[-1] in _HEADER_MAPS and str(key).lower() not in _PLAIN_HEADERS
    if not header and not SECRET_KEY_NAME.search(str(key)):
        return False
    if isinstance(value, list | tuple):
        return bool(value) and all(isinstance(v, str) for v in value)
    return isinstance(value, str) and bool(value)


def _token_like(value: str) -> bool:
    """A header value (of a header not named like a secret) that looks like a credential: one word
    of 12 or more characters with letters and digits. Only such values are masked everywhere a
    registered secret is: "production" (``X-Environment``) was masked in every report and log."""
    return len(value) >= 12 and " " not in value.strip() and any(c.isdigit() for c in value) \
        and any(c.isalpha() for c in value)


def register_config_secrets(data: Any, parent: object = None) -> int:
    """Register every value in operator config whose key names a secret (``SECRET_KEY_NAME``:
    ``api_key``, ``x-api-key``, ``Authorization``, ``*_token``, ``password``, ``dsn``, ...), and
    every environment variable a ``*_env`` key of such a name points at (``api_key_env``,
    ``auth_tokens_env``: its value is a secret whatever the variable is called); call it whenever
    a config is loaded. Returns the count."""
    count = 0
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and str(key).endswith("_env") and SECRET_KEY_NAME.search(str(key)[:-4]):
                register_secret_env(value)
                count += 1
            elif (isinstance(value, str) and is_secret_entry(key, value, parent) and len(value) >= MIN_SECRET_CHARS
                  and (SECRET_KEY_NAME.search(str(key)) or _token_like(value))):
                register_secret(value)
                count += 1
            else:
                count += register_config_secrets(value, key)
    elif isinstance(data, list | tuple):
        count += sum(register_config_secrets(v) for v in data)
    return count


def short_secrets(data: Any, where: str = "") -> list[str]:
    """Where a secret shorter than ``MIN_SECRET_CHARS`` sits, which no log, trace or error masks:
    config entries named like a secret (by their key path) and the environment variables that a
    ``*_env`` key points at (by name). ``swarm doctor`` warns."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(value, str) and str(key).endswith("_env") and SECRET_KEY_NAME.search(str(key)[:-4]):
                continue  # its variable is checked by name below
            if is_secret_entry(key, value, where):
                values = value if isinstance(value, list | tuple) else [value]
                if any(0 < len(v) < MIN_SECRET_CHARS for v in values):
                    found.append(path)
            else:
                found += short_secrets(value, path)
    elif isinstance(data, list | tuple):
        for n, value in enumerate(data):
            found += short_secrets(value, f"{where}[{n}]")
    if not where:  # the variables config names as secrets (``api_key_env``: a flag such as
        # HF_HUB_DISABLE_IMPLICIT_TOKEN=1 merely ends like one)
        for name in sorted(_secret_env_names):
            if 0 < len(os.environ.get(name, "").strip()) < MIN_SECRET_CHARS:
                found.append(f"${name}")
    return found
