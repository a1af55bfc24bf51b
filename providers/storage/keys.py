"""Storage key rules (``core.storage_keys``, where config checks an S3 prefix with them too) and a
key's content type."""

from __future__ import annotations

import mimetypes
from typing import Any

from core.errors import InputError
from core.redact import redact
from core.storage_keys import MAX_KEY_CHARS, TEMP_MARK, check_key, check_prefix

__all__ = ["MAX_KEY_CHARS", "TEMP_MARK", "check_key", "check_prefix", "guess_content_type", "public_url", "too_large"]


def guess_content_type(key: str) -> str | None:
    """Content type from the key's extension (``None`` when unknown)."""
    return mimetypes.guess_type(key, strict=False)[0]


def too_large(size: int, max_bytes: int) -> InputError:
    """The error for an object read with a size limit it is over (said before it is read); its
    ``size`` and ``limit`` ride along, for a caller that names the setting the limit comes from."""
    error = InputError(f"object is {size:,} bytes; the limit is {max_bytes:,}", field="key")
    error.size, error.limit = size, max_bytes  # type: ignore[attr-defined]
    return error


async def public_url(storage: Any, key: str) -> dict[str, Any]:
    """``{"url": ...}`` of ``key`` in ``storage`` for a result, or, where that URL is a credential
    (a presigned S3 URL: results, traces and logs never carry one), ``url`` None and a note on
    how to read the image instead."""
    url: str | None = await storage.url(key)
    if url and redact(url) != url:
        return {"url": None, "url_note": f"read swarm://artifacts/{key}, or presign the key with your own credentials"}
    return {"url": url}
