"""Storage key rules (``core.storage_keys``, where config checks an S3 prefix with them too) and a
key's content type."""

from __future__ import annotations

import mimetypes

from core.errors import InputError
from core.storage_keys import MAX_KEY_CHARS, TEMP_MARK, check_key, check_prefix

__all__ = ["MAX_KEY_CHARS", "TEMP_MARK", "check_key", "check_prefix", "guess_content_type", "too_large"]


def guess_content_type(key: str) -> str | None:
    """Content type from the key's extension (``None`` when unknown)."""
    return mimetypes.guess_type(key, strict=False)[0]


def too_large(size: int, max_bytes: int) -> InputError:
    """The error for an object read with a size limit it is over (said before it is read); its
    ``size`` and ``limit`` ride along, for a caller that names the setting the limit comes from."""
    error = InputError(f"object is {size:,} bytes; the limit is {max_bytes:,}", field="key")
    error.size, error.limit = size, max_bytes  # type: ignore[attr-defined]
    return error

