"""The fast path of redaction for blobs: base64 (an image given inline), megabytes long."""

from __future__ import annotations

import re

from core.redact_patterns import _AWS_KEY_ID, _GOOGLE_KEY, _PATTERNS, _mask, _redact_text, _Scan

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
