"""Storage key rules shared by every storage backend and by config (an S3 ``prefix`` is checked
at load): a key is a relative, slash-separated path. Anything that could climb out of the
root/prefix or mean different things on different filesystems is refused before any I/O happens.
"""

from __future__ import annotations

from typing import Any

from core.errors import InputError
from core.redact import redact

MAX_KEY_CHARS = 1024
#: Segments starting with this are our own temporary files; callers may not name them.
TEMP_MARK = ".swarm-tmp-"


def check_key(key: object, *, field: str = "key") -> str:
    """Return ``key`` when it is a safe relative key, else raise ``InputError``.

    Refused: empty or over ``MAX_KEY_CHARS``, absolute paths, backslashes, NUL and other control
    characters, empty segments (``a//b``), ``.`` and ``..`` segments, segments with leading or
    trailing spaces or a trailing dot (Windows strips those, so ``"a."`` would alias ``"a"``),
    and names reserved for temporary files.
    """
    if not isinstance(key, str) or not key:
        raise InputError("storage key must be a non-empty string", field=field)
    if len(key) > MAX_KEY_CHARS or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_CHARS:
        raise InputError(f"storage key is {len(key.encode('utf-8', 'surrogatepass'))} bytes in UTF-8; the limit is"
                         f" {MAX_KEY_CHARS} (S3's)", field=field)
    if any(ord(ch) < 32 or 127 <= ord(ch) <= 159 for ch in key):  # C0, DEL and C1 (U+0085 is a newline)
        raise InputError("storage key contains a control character (NUL, newline, U+0085, ...)", field=field)
    if key.startswith("/") or "\\" in key or (len(key) > 1 and key[1] == ":"):
        raise InputError(f"storage key {key!r} must be a relative path with '/' separators", field=field)
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InputError(f"storage key {key!r} has an empty, '.' or '..' segment", field=field)
        if segment != segment.strip() or segment.endswith("."):
            raise InputError(
                f"storage key {key!r} has a segment with leading/trailing spaces or a trailing dot",
                field=field,
            )
        if segment.startswith(TEMP_MARK):
            raise InputError(f"storage key {key!r} uses the reserved prefix {TEMP_MARK!r}", field=field)
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix: empty, or a key prefix (a trailing '/' allowed)."""
    if not prefix:
        return ""
    check_key(prefix.rstrip("/") or "x", field="prefix")
    return prefix


async def public_url(storage: Any, key: str) -> dict[str, Any]:
    """``{"url": ...}`` of ``key`` in ``storage`` for a result, or, where that URL is a credential
    (a presigned S3 URL: results, traces and logs never carry one), ``url`` None and a note on
    how to read the image instead."""
    url: str | None = await storage.url(key)
    if url and redact(url) != url:
        return {"url": None, "url_note": f"read swarm://artifacts/{key}, or presign the key with your own credentials"}
    return {"url": url}
