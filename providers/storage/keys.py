"""Storage key rules (``core.storage_keys``, where config checks an S3 prefix with them too) and a
key's content type."""

from __future__ import annotations

import mimetypes

from core.storage_keys import MAX_KEY_CHARS, TEMP_MARK, check_key, check_prefix

__all__ = ["MAX_KEY_CHARS", "TEMP_MARK", "check_key", "check_prefix", "guess_content_type"]


def guess_content_type(key: str) -> str | None:
    """Content type from the key's extension (``None`` when unknown)."""
    return mimetypes.guess_type(key, strict=False)[0]
