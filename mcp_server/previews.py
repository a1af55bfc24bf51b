"""What a client shows of an image result: an ``image`` block (a preview) and a ``resource_link``.

The preview is the stored result itself when it fits its share of ``mcp.max_inline_image_bytes``,
otherwise a downscaled copy (Pillow, imported on first use: starting the server and listing tools
import no image library); the text before it states the real size. The link names
``swarm://artifacts/{key}``, which ``resources/read`` serves byte for byte. Nothing here carries a
URL: a presigned one would be a secret in the client's transcript.
"""

from __future__ import annotations

import base64
import io
import logging
import mimetypes
from dataclasses import dataclass
from typing import Any

import anyio
from mcp_types import ContentBlock, ImageContent, ResourceLink, TextContent

from core.errors import InputError, ProviderError

log = logging.getLogger("swarm.mcp")

#: longest side of a downscaled preview (what vision models read at full detail)
PREVIEW_MAX_SIDE = 1568
#: the smallest preview worth sending; below it the text and the link stand alone
PREVIEW_MIN_SIDE = 16
MIME_BY_FORMAT = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


@dataclass(frozen=True)
class Preview:
    """An image small enough to send inline, and how it relates to the stored result."""

    data: bytes
    mime_type: str
    width: int
    height: int
    downscaled: bool


def artifact_uri(key: str) -> str:
    return f"swarm://artifacts/{key}"


def mime_type_of(key: str, fmt: str | None = None) -> str:
    """The result's MIME type from its format (else its key's extension)."""
    return MIME_BY_FORMAT.get(fmt or "") or mimetypes.guess_type(key)[0] or "application/octet-stream"


def preview(data: bytes, mime_type: str, width: int, height: int, limit: int,
            max_pixels: int | None = None) -> Preview | None:
    """``data`` itself when it fits ``limit`` bytes and ``PREVIEW_MAX_SIDE`` pixels a side, else a
    downscaled copy that does (None if none can). A flat image compresses small whatever its size,
    and a chat refuses a side of thousands of pixels (Claude: 8000) or reads it shrunk anyway.

    The copy keeps the aspect ratio and an alpha channel (PNG), or is a JPEG when the image is opaque.
    The stored image is our own output: it is decoded past Pillow's decompression-bomb limit, up
    to ``max_pixels`` (``providers.image.max_output_pixels``; ``None``: its default), and cheaply
    (``imageio.decode_for_preview``).
    """
    if len(data) <= limit and 0 < max(width, height) <= PREVIEW_MAX_SIDE:
        return Preview(data, mime_type, width, height, downscaled=False)
    from PIL import Image  # on first use: the server starts without Pillow loaded

    from providers.image.imageio import ImageLimits, decode_for_preview, encoded_size

    if min(width, height) <= 0:  # the job gave no size: its header's
        width, height = encoded_size(data)
        if len(data) <= limit and max(width, height) <= PREVIEW_MAX_SIDE:  # it fits as is
            return Preview(data, mime_type, width, height, downscaled=False)
    source = decode_for_preview(data, PREVIEW_MAX_SIDE, max_pixels or ImageLimits.max_output_pixels)
    has_alpha = source.mode == "RGBA"
    side = max(source.size)
    while side >= PREVIEW_MIN_SIDE:
        scale = side / max(source.size)
        size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
        small = source if size == source.size else source.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        small.save(buffer, "PNG" if has_alpha else "JPEG", **({"optimize": True} if has_alpha else {"quality": 85}))
        if buffer.tell() <= limit:
            return Preview(buffer.getvalue(), "image/png" if has_alpha else "image/jpeg", *size, downscaled=True)
        side = int(side * 0.7)
    return None


@dataclass(frozen=True)
class StoredImage:
    """One image of a result, as the job described it."""

    key: str
    width: int
    height: int
    size: int
    fmt: str | None
    label: str  # "result" or "images[3]"

    @classmethod
    def from_entry(cls, entry: dict[str, Any], key: str, label: str) -> StoredImage:
        return cls(key, int(entry.get("width") or 0), int(entry.get("height") or 0), int(entry.get("bytes") or 0),
                   entry.get("format"), label)


async def image_blocks(images: list[StoredImage], storage: Any, budget: int,
                       max_pixels: int | None = None) -> list[ContentBlock]:
    """Per image: a line of text (real size, where the full image is), a preview and a resource link.

    ``budget`` (``mcp.max_inline_image_bytes``) is shared by the images of a batch, so one answer
    stays within it however many images it holds. ``max_pixels``: ``providers.image.max_output_pixels``,
    the most a stored result is decoded at for its preview.
    """
    limit = budget // max(1, len(images))
    blocks: list[ContentBlock] = []
    for image in images:
        blocks.extend(await _blocks_for(image, storage, limit, budget, max_pixels))
    return blocks


async def _blocks_for(image: StoredImage, storage: Any, limit: int, budget: int,
                      max_pixels: int | None) -> list[ContentBlock]:
    mime_type = mime_type_of(image.key, image.fmt)
    try:
        data = bytes(await storage.get(image.key))
        shown = await anyio.to_thread.run_sync(preview, data, mime_type, image.width, image.height, limit, max_pixels)
    except (InputError, ProviderError, FileNotFoundError, KeyError, OSError, ValueError) as exc:
        # the result is stored and linked; only the picture is missing, and the text says why
        log.warning("no preview for %s: %s", image.key, type(exc).__name__)
        text, link = _describe(image, mime_type, image.size)
        return [TextContent(text=f"{text}. No preview: the stored image could not be read ({type(exc).__name__})."),
                link]
    text, link = _describe(image, mime_type, len(data))
    if shown is None:
        return [TextContent(text=f"{text}. No preview: even a {PREVIEW_MIN_SIDE}px copy is over {limit} bytes."), link]
    if shown.downscaled:
        why = (f"the result is over its share of mcp.max_inline_image_bytes={budget}" if len(data) > limit
               else f"a chat shows at most {PREVIEW_MAX_SIDE} px a side")
        text += f". The preview is a downscaled copy ({shown.width}x{shown.height}, {len(shown.data)} bytes): {why}"
    preview_block = ImageContent(data=base64.b64encode(shown.data).decode(), mime_type=shown.mime_type)
    return [TextContent(text=text), preview_block, link]


def _describe(image: StoredImage, mime_type: str, size: int) -> tuple[str, ResourceLink]:
    """The line stating the real image, and the link to it."""
    uri = artifact_uri(image.key)
    text = f"{image.label}: {image.width}x{image.height} {mime_type}, {size} bytes; full image: {uri}"
    link = ResourceLink(uri=uri, name=image.key.rsplit("/", 1)[-1], title=f"{image.label}, full size",
                        description=f"{image.label} at full size ({image.width}x{image.height}"
                                    f" {mime_type}): read this resource for its bytes",
                        mime_type=mime_type, size=size or None)
    return text, link
