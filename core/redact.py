"""One redaction layer for logs, traces, errors and job results.

Patterns catch the shapes of well-known secrets; on top of that, the value of every
environment variable whose name ends in KEY, TOKEN or SECRET, or that config names as holding a
secret (``api_key_env: MY_CREDENTIAL``), and of every config field named like a secret, is
replaced wherever it appears, as written and as an upstream may echo it escaped (JSON, URL).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

MASK = "[REDACTED]"

# a key's prefix starts a token: "task-management-system" holds "sk-management-system"
_GOOGLE_KEY = r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{30,}"
_AWS_KEY_ID = r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}"

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
        r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|api_key|apikey|api-key|key|token"
        r"|access_token|private_token|code|auth|secret)=)[^&\s\"']+",
        r"(?i)((?:aws_secret_access_key|secretaccesskey|api_key|apikey|api-key)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9/+_\-]{8,}",
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

_SECRET_ENV_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD", "KEYS", "TOKENS", "SECRETS", "_DSN")
_extra_secrets: set[str] = set()
#: names of environment variables that config says hold a secret (``api_key_env``, ``auth_tokens_env``),
#: whatever their names end in
_secret_env_names: set[str] = set()
#: no pattern matches fewer characters, and no secret value is shorter (``register_secret``,
#: ``_env_secrets``): a shorter string is returned as it is (tests/test_security_secrets.py checks it)
MIN_SECRET_CHARS = 6


def register_secret(value: str | None) -> None:
    """Add one literal value to redact everywhere (e.g. a secret read from config)."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _extra_secrets.add(value)


def register_dsn(dsn: str | None) -> None:
    """A database DSN and its password as written, percent-decoded, and as a ``password=`` value:
    a driver's error quotes a piece of a malformed DSN (``invalid percent-encoded token: "pw%zz"``)."""
    if not dsn:
        return
    register_secret(dsn)
    passwords = re.findall(r"(?i)\bpassword\s*=\s*'?([^'\s]+)", dsn)
    if "://" in dsn:
        userinfo = dsn.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo:
            passwords.append(userinfo.split(":", 1)[1])
    for password in passwords:
        register_secret(password)
        register_secret(urllib.parse.unquote(password))


def register_secret_env(name: str | None) -> None:
    """Treat the value of environment variable ``name`` as a secret, now and whenever it changes."""
    if name:
        _secret_env_names.add(name)


def _env_secrets() -> Iterable[str]:
    for name, value in os.environ.items():
        if (name.upper().endswith(_SECRET_ENV_SUFFIXES) or name in _secret_env_names) and value and len(value) >= MIN_SECRET_CHARS:
            yield value
            yield from _pieces(value)


def _pieces(value: str) -> Iterable[str]:
    """The tokens of a list-valued secret (``alice=tok1,bob=tok2``): each may appear alone."""
    if not any(sep in value for sep in ",; "):
        return
    for part in re.split(r"[,;\s]+", value):
        token = part.split("=", 1)[-1]
        if len(token) >= MIN_SECRET_CHARS:
            yield token


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


#: (the environment it was built from, the extra secrets it holds, the scan): rebuilt when
#: either changed, so a secret set in the environment at any time is redacted from then on
_cached: tuple[dict[Any, Any], tuple[frozenset[str], frozenset[str]], _Scan] | None = None


def _environment() -> dict[Any, Any]:
    """The process environment as a plain dict (``os.environ``'s own, not decoded: a cheap compare)."""
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else dict(os.environ)


def _current_patterns() -> _Scan:
    global _cached
    environment = _environment()
    cached = _cached
    if cached is not None and cached[0] == environment and cached[1] == (_extra_secrets, _secret_env_names):
        return cached[2]
    snapshot = dict(environment)  # before the scan: a change during it shows at the next call
    extra = frozenset(_extra_secrets)
    names = frozenset(_secret_env_names)
    patterns = _values_pattern(frozenset({*extra, *_env_secrets()}))
    _cached = (snapshot, (extra, names), patterns)
    return patterns


def _mask(match: re.Match[str]) -> str:
    return (match.group(1) if match.re.groups else "") + MASK


def _redact(text: str, scan: _Scan) -> str:
    if len(text) >= BLOB_MIN_CHARS and (start := _blob_start(text)) is not None:
        return _redact_blob(text, start, scan)
    return _redact_text(text, scan)


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


# --- blobs: base64 (an image given inline), megabytes long -------------------------------------
# ``_redact_text`` costs ~1 s a megabyte on random base64: its lower-case form holds trigger words
# ("aiza", "akia", "asia") by chance, and the patterns then run over all of it. Inside a blob's body
# (``[A-Za-z0-9+/]``, ``=`` at its end only, ASCII white space) only two patterns can match: every
# other one needs a character base64 lacks (``-``, ``_``, ``.``, ``:``, ``?``, ``&``, ``@``, a
# quote), an ``=`` with text after it, or (``bearer``) white space after a word; a blob where that
# word stands before white space, or a secret value appears, takes ``_redact_text``. What comes out
# is the same text either way (tests/test_redact_speed.py fuzzes the two against each other).

#: a string this long or longer is tested for being a blob
BLOB_MIN_CHARS = 4096
_BLOB_HEAD = re.compile(r"data:image/[A-Za-z0-9.+\-]+;base64,", re.IGNORECASE)
_BLOB_BODY = re.compile(r"[A-Za-z0-9+/\t\n\r ]*={0,2}[\t\n\r ]*")
_BLOB_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\t\n\r ")
_BLOB_SPACE = ("\n", " ", "\r", "\t")
_PATTERN_OF = {pattern.pattern: pattern for pattern in _PATTERNS}
#: the patterns that can match inside a blob's body, in ``_PATTERNS`` order, each with the literals
#: every match of it starts with
_BLOB_SHAPES = ((_PATTERN_OF[_GOOGLE_KEY], ("AIza",)), (_PATTERN_OF[_AWS_KEY_ID], ("AKIA", "ASIA")))


def _blob_start(text: str) -> int | None:
    """Where the base64 of ``text`` starts (after a ``data:image/...;base64,`` head), or ``None``
    when ``text`` is not base64 throughout."""
    head = _BLOB_HEAD.match(text)
    start = head.end() if head else 0
    return start if _BLOB_BODY.fullmatch(text, start) else None


def _redact_blob(text: str, start: int, scan: _Scan) -> str:
    """``_redact_text(text, scan)`` for a blob whose base64 starts at ``start``, in a few
    substring searches."""
    head, body = text[:start], text[start:]
    if _holds_a_value(text, start, scan.forms) or _bearer_before_space(body):
        return _redact_text(text, scan)  # rare: the exact general path
    for pattern, prefixes in _BLOB_SHAPES:  # one after the other, as ``_redact_text`` does
        body = _mask_shape(body, pattern, prefixes)
    return (_redact_text(head, scan) if head else "") + body


def _holds_a_value(text: str, start: int, forms: tuple[str, ...]) -> bool:
    # a form with a character a body lacks can only sit across the head
    return any(form in text[:start + len(form) - 1] or (_BLOB_CHARS.issuperset(form) and form in text)
               for form in forms)


def _bearer_before_space(body: str) -> bool:
    if not any(space in body for space in _BLOB_SPACE):
        return False
    lowered = body.lower()
    at = lowered.find("bearer")
    while at != -1:
        if lowered[at + 6:at + 7] in _BLOB_SPACE:
            return True
        at = lowered.find("bearer", at + 1)
    return False


def _mask_shape(body: str, pattern: re.Pattern[str], prefixes: tuple[str, ...]) -> str:
    """``pattern.sub(_mask, body)``, trying only where one of ``prefixes`` starts."""
    starts = []
    for prefix in prefixes:
        at = body.find(prefix)
        while at != -1:
            starts.append(at)
            at = body.find(prefix, at + 1)
    pieces, done = [], 0
    for at in sorted(starts):
        if at < done:
            continue  # inside the last match
        match = pattern.match(body, at)  # its look-behind sees the character before ``at``
        if match:
            pieces += [body[done:at], _mask(match)]
            done = match.end()
    return "".join([*pieces, body[done:]]) if pieces else body


_SEQUENCES = (list, tuple)
#: types with nothing to redact inside: returned as they are, without a call per value
_PLAIN = frozenset({int, float, bool, type(None)})


#: keys whose values are base64 of binary data (an image the job made): never text to redact.
#: Random base64 holds a Google-key shape (``AIza`` + 30 of its letters) now and then (~5% of
#: 4 MB images): masked, the image came back corrupt; scanned, 4 MB cost ~1-2 s of the loop.
BINARY_KEYS = frozenset({"image_b64", "image_base64"})


def _copy(data: Any, strings: list[str]) -> Any:
    """``data`` with its containers copied (tuples as lists), every string in it added to ``strings``.

    Every job result passes through here: plain values are kept without a call of their own."""
    kind = type(data)
    if kind is dict:
        out = {}
        for key, value in data.items():
            if type(value) in _PLAIN or key in BINARY_KEYS:
                out[key] = value
            elif type(value) is str:
                strings.append(value)
                out[key] = value
            else:
                out[key] = _copy(value, strings)
        return out
    if kind is str or isinstance(data, str):
        strings.append(data)
        return data
    if isinstance(data, dict):
        return {k: v if k in BINARY_KEYS else _copy(v, strings) for k, v in data.items()}
    if isinstance(data, _SEQUENCES):
        return [_copy(v, strings) for v in data]
    return data


def _walk(data: Any, one: Callable[[str], str]) -> Any:
    if isinstance(data, str):
        return one(data)
    if isinstance(data, dict):
        return {k: v if k in BINARY_KEYS else _walk(v, one) for k, v in data.items()}
    if isinstance(data, _SEQUENCES):
        return [_walk(v, one) for v in data]
    return data


def redact(text: str) -> str:
    """Return ``text`` with every known secret shape and secret value masked."""
    return _redact(text, _current_patterns())


def redact_data(data: Any) -> Any:
    """Redact every string inside a JSON-like structure (dicts, lists, tuples)."""
    scan = _current_patterns()
    found: list[str] = []
    copied = _copy(data, found)
    # a blob (an inline image) is redacted on its own (``_redact_blob``): joined to the rest, its
    # megabytes would take the slow path of ``_redact_text``
    blobs = {id(s): start for s in found if len(s) >= BLOB_MIN_CHARS and (start := _blob_start(s)) is not None}
    texts = [s for s in found if id(s) not in blobs] if blobs else found
    # one test over all the strings joined: a match inside one string is a match in the whole
    # (no pattern looks behind or anchors), so "nothing" here means nothing in any of them
    texts_may_hold = _may_hold_secret("\x00".join(texts), scan)
    if not blobs and not texts_may_hold:
        return copied

    def one(text: str) -> str:
        start = blobs.get(id(text))
        if start is not None:
            return _redact_blob(text, start, scan)
        return _redact_text(text, scan) if texts_may_hold else text

    return _walk(copied, one)


#: A config key or HTTP header name whose value is a secret: ``api_key``, ``x-api-key``,
#: ``api-key``, ``client_secret``, ``*_token``, ``x-auth-token``, ``X-Auth``, ``Authorization``,
#: ``bearer``, ``cookie``, ``password``, ``dsn``, ``credentials`` (any case; ``_`` or ``-``). A
#: count such as ``max_tokens`` matches too: only text values are secrets (``is_secret_entry``).
SECRET_KEY_NAME = re.compile(
    r"(?i)(?:^|[_\-.])(?:api[_\-]?key|(?:private|access|secret)[_\-]key|secret|token|password|passwd|dsn"
    r"|credentials?|auth|authorization|bearer|cookie)s?$"
    # and any name that merely ends in one (``accessToken``, ``clientSecret``, ``githubtoken``)
    r"|(?i:api_?key|secret|token|password|passwd|dsn|credentials?)s?$"
)


def is_secret_entry(key: object, value: object) -> bool:
    """Whether a config entry holds a secret: its key is named like one and its value is text
    (or a list of texts), not empty. ``redacted_dump`` masks these; a load registers them."""
    if not SECRET_KEY_NAME.search(str(key)):
        return False
    if isinstance(value, list | tuple):
        return bool(value) and all(isinstance(v, str) for v in value)
    return isinstance(value, str) and bool(value)


def register_config_secrets(data: Any) -> int:
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
            elif isinstance(value, str) and is_secret_entry(key, value) and len(value) >= MIN_SECRET_CHARS:
                register_secret(value)
                count += 1
            else:
                count += register_config_secrets(value)
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
            if is_secret_entry(key, value):
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


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments and traceback text (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_swarm_redacted", False):
        return record
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep what there is, redacted
        message = f"{record.msg!r} {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._swarm_redacted = True  # type: ignore[attr-defined]
    return record


_installed_factory: Any = None


def install_log_redaction() -> None:
    """Redact every log record of this process, from any library, wherever it is handled.

    Wraps the log-record factory (so records are masked once, when created, before any handler
    or formatter sees them) and adds ``RedactingFilter`` to the root logger's handlers. Safe to
    call more than once; call it right after logging is configured.
    """
    global _installed_factory
    current = logging.getLogRecordFactory()
    if current is not _installed_factory:
        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return _redact_record(current(*args, **kwargs))

        _installed_factory = factory
        logging.setLogRecordFactory(factory)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
