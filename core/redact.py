"""One redaction layer for logs, traces, errors and job results.

Patterns catch the shapes of well-known secrets (``core.redact_patterns``); on top of that, the
value of every environment variable whose name ends in KEY, TOKEN or SECRET, or that config names
as holding a secret (``api_key_env: MY_CREDENTIAL``), and of every config field named like a
secret (``core.redact_config``), is replaced wherever it appears, as written and as an upstream
may echo it escaped (JSON, URL). A value a client forwarded with a RunPod job is masked too, but
only the most recent ``FORWARDED_SECRETS_KEPT`` of them (``register_forwarded_secret``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from core.redact_blob import BLOB_MIN_CHARS, _blob_start, _redact_blob
from core.redact_patterns import MASK as MASK
from core.redact_patterns import MIN_SECRET_CHARS, _may_hold_secret, _redact_text, _Scan, _values_pattern

_SECRET_ENV_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD", "KEYS", "TOKENS", "SECRETS", "_DSN")
_extra_secrets: set[str] = set()
#: names of environment variables that config says hold a secret (``api_key_env``, ``auth_tokens_env``),
#: whatever their names end in
_secret_env_names: set[str] = set()
#: how many values forwarded by clients (``register_forwarded_secret``) stay masked: the most
#: recent ones. A worker serving many clients would otherwise keep every key it was ever sent,
#: and rebuild its scan over all of them for each new one.
FORWARDED_SECRETS_KEPT = 256
#: the forwarded values, least recently registered first
_forwarded_order: OrderedDict[str, None] = OrderedDict()
#: the same values, replaced whole when they change (read without the lock, compared by identity)
_forwarded_secrets: frozenset[str] = frozenset()
_forwarded_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Add one literal value to redact everywhere (e.g. a secret read from config).

    A value a client forwarded (``register_forwarded_secret``) stays in the bounded set: a
    job's config loaded with it, or a backend built with it, registers it here too."""
    if value and len(value) >= MIN_SECRET_CHARS and value not in _forwarded_secrets:
        _extra_secrets.add(value)


def register_forwarded_secret(value: str | None) -> None:
    """Redact ``value``, a provider key a client forwarded with a job (``core.credentials``),
    while it is among the ``FORWARDED_SECRETS_KEPT`` most recently registered; registering it
    again makes it the most recent. The process's own secrets (environment, config) are kept
    apart, all of them, for the life of the process."""
    global _forwarded_secrets
    if not value or len(value) < MIN_SECRET_CHARS:
        return
    with _forwarded_lock:
        if value in _forwarded_order:
            _forwarded_order.move_to_end(value)
            return  # the same values: the scan built for them stands
        _forwarded_order[value] = None
        while len(_forwarded_order) > FORWARDED_SECRETS_KEPT:
            _forwarded_order.popitem(last=False)
        _forwarded_secrets = frozenset(_forwarded_order)


def register_masked_parts(data: Any) -> None:
    """Remember, as forwarded secrets (the bounded set), what redaction masks in ``data`` (a job's
    input): ``Bearer <token>`` in a question is masked there, but the research report quoted the
    bare token back ("None of the sources found mentions PLANTEDtok3n...") where no pattern saw
    it, and the result, the job store and the thread kept it. Only strings redaction changes are
    looked at, so a job without a secret pays one scan of its input."""

    def one(text: str) -> str:
        masked = redact(text)
        if masked == text:
            return text
        parts = masked.split(MASK)
        pos = 0
        for before, after in zip(parts, parts[1:], strict=False):
            pos = text.find(before, pos) + len(before) if before else pos
            # the masked span runs to where the text after the mask resumes (adjacent masks: the word)
            end = text.find(after, pos) if after else len(text)
            if not after and (space := re.search(r"\s", text[pos:])):
                end = pos + space.start()
            piece = text[pos:end if end >= pos else len(text)].strip("\"'`,;:()[]{}<> ")
            if piece and not any(c.isspace() for c in piece):  # a token, never a run of ordinary words
                register_forwarded_secret(piece)
            pos = max(pos, end)
        return text

    _walk(data, one)


def register_dsn(dsn: str | None) -> None:
    """A database DSN and its password as written, percent-decoded, and as a ``password=`` value:
    a driver's error quotes a piece of a malformed DSN (``invalid percent-encoded token: "pw%zz"``)."""
    if not dsn:
        return
    register_secret(dsn)
    passwords = re.findall(r"(?i)\bpassword\s*=\s*'?([^'\s]+)", dsn)
    # a password with a space, not quoted: libpq's error quotes the word after the space
    # (``missing "=" after "HorseBatteryStaple"``), so each word up to the next key=value is one too
    for rest in re.findall(r"(?i)\bpassword\s*=\s*[^'\s]+((?:\s+[^=\s]+)+)(?=\s+\w+\s*=|\s*$)", dsn):
        passwords += [word for word in rest.split() if len(word) >= MIN_SECRET_CHARS]
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


#: (the environment it was built from, the extra secrets it holds, the forwarded ones, the scan):
#: rebuilt when any changed, so a secret set in the environment at any time is redacted from then on
_cached: tuple[dict[Any, Any], tuple[frozenset[str], frozenset[str]], frozenset[str], _Scan] | None = None


def _environment() -> dict[Any, Any]:
    """The process environment as a plain dict (``os.environ``'s own, not decoded: a cheap compare)."""
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else dict(os.environ)


def _current_patterns() -> _Scan:
    global _cached
    environment = _environment()
    cached = _cached
    forwarded = _forwarded_secrets
    if (cached is not None and cached[0] == environment and cached[1] == (_extra_secrets, _secret_env_names)
            and cached[2] is forwarded):
        return cached[3]
    snapshot = dict(environment)  # before the scan: a change during it shows at the next call
    extra = frozenset(_extra_secrets)
    names = frozenset(_secret_env_names)
    patterns = _values_pattern(frozenset({*extra, *forwarded, *_env_secrets()}))
    _cached = (snapshot, (extra, names), forwarded, patterns)
    return patterns


def _redact(text: str, scan: _Scan) -> str:
    if len(text) >= BLOB_MIN_CHARS and (start := _blob_start(text)) is not None:
        return _redact_blob(text, start, scan)
    return _redact_text(text, scan)


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
    else:
        _redact_message(record, message)
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._swarm_redacted = True  # type: ignore[attr-defined]
    return record


def _redact_message(record: logging.LogRecord, message: str) -> None:
    """``record``'s message (``message``, formatted) without secrets, its args kept where that is
    safe: a formatter that reads them (uvicorn's access log unpacks client, method, path, version
    and status) failed on every request, with a traceback, once they were always merged away. A
    clean message is left as it was; a tuple of args has each string masked, so long as the
    message they make is clean; anything else is merged into one masked message."""
    safe = redact(message)
    if safe == message:
        return
    args = record.args
    if isinstance(args, tuple) and isinstance(record.msg, str):
        masked = tuple(redact(arg) if isinstance(arg, str) else arg for arg in args)
        msg = redact(record.msg)
        try:
            made = msg % masked if masked else msg
        except (TypeError, ValueError):
            made = None
        if made is not None and redact(made) == made:
            record.msg, record.args = msg, masked
            return
    record.msg, record.args = safe, None


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
