"""Image headers: the format by magic bytes, and the size a header declares, read without decoding.

Pillow's decompression-bomb check (``Image.MAX_IMAGE_PIXELS``) only warns up to twice its value,
so it is not relied on, nor let refuse an image within our limits: ``open_header`` opens without
it, and ``open_input`` keeps it for an input except where ``max_input_pixels`` allows more. WebP's
plugin runs the check itself as it opens, so its limit is lifted for that moment, under a lock.
"""

from __future__ import annotations

import io
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from providers.image.limits import ImageLimits

#: format name -> magic-byte test; Pillow is never given anything that fails these.
_MAGIC = {
    "png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    "webp": lambda b: len(b) >= 12 and b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "gif": lambda b: b[:6] in (b"GIF87a", b"GIF89a"),
    "bmp": lambda b: b.startswith(b"BM"),
}
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}


def sniff_format(data: bytes) -> str | None:
    """The format the magic bytes announce, or ``None``."""
    return next((name for name, test in _MAGIC.items() if test(data[:16])), None)


def open_header(data: bytes, kind: str) -> Image.Image:
    """``data``, a ``kind`` image by its magic bytes, opened by its header only (nothing decoded),
    as ``Image.open(formats=[...])`` opens it but without Pillow's decompression-bomb check: that
    check refuses past 2 x ``Image.MAX_IMAGE_PIXELS`` (178,956,970 pixels), below our own
    ``max_output_pixels`` (268,435,456), so an upscale allowed by it failed after all its work, when
    its output was read back for its size. The size is ours to check: an output's was checked
    against ``max_output_pixels`` before it was made, and an input is opened so only where
    ``max_input_pixels``, set past Pillow's limit, allows it (``open_input``). Not a process-wide
    switch: Pillow's check stays on for every other ``Image.open``. WebP's plugin runs the check
    itself as it opens: its limit is lifted to the size its header declares, for that moment only
    (``_pillow_limit_at_least``).

    Raises:
        PIL.UnidentifiedImageError: ``data`` is not a ``kind`` image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    name = _PIL_FORMAT[kind]
    if name not in Image.OPEN:  # WebP's plugin is registered by init() only, as Image.open does it
        Image.init()
    factory, _accept = Image.OPEN[name]
    declared = _webp_pixels(data) if kind == "webp" else None  # WebP's plugin checks as it opens
    try:
        with nullcontext() if declared is None else _pillow_limit_at_least(declared):
            return factory(io.BytesIO(data), "")
    except (SyntaxError, IndexError, TypeError, struct.error) as exc:  # what Image.open turns into this
        raise UnidentifiedImageError(f"cannot identify the {kind} image ({type(exc).__name__})") from None


def encoded_size(data: bytes) -> tuple[int, int]:
    """The width and height of an image this code encoded (``encode``), from its header only;
    WebP's by ``webp_size``: Pillow's WebP plugin runs the bomb check itself, as it opens."""
    kind = sniff_format(data) or "png"
    if kind == "webp":
        return webp_size(data)
    with open_header(data, kind) as img:
        return img.size


def webp_size(data: bytes) -> tuple[int, int]:
    """A WebP's canvas width and height, from its first chunk: VP8X (extended: alpha, animation),
    VP8L (lossless) or VP8 (lossy), as the WebP container specification lays them out.

    Raises:
        PIL.UnidentifiedImageError: ``data`` does not start as one of those.
    """
    chunk, body = data[12:16], data[20:30]
    if chunk == b"VP8X" and len(body) == 10:  # flags, 3 reserved bytes, then width - 1 and height - 1 in 24 bits
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:  # width - 1 and height - 1 in 14 bits each
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if chunk == b"VP8 " and len(body) == 10 and body[3:6] == b"\x9d\x01\x2a":  # a key frame: 14 bits each
        return int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF
    from PIL import UnidentifiedImageError

    raise UnidentifiedImageError(f"cannot read the size of a WebP whose first chunk is {chunk!r}")


def _webp_pixels(data: bytes) -> int | None:
    """The pixels a WebP's header declares, or ``None`` where ``webp_size`` cannot read it (Pillow's
    plugin, which reads it the same way, then runs no check either)."""
    from PIL import UnidentifiedImageError

    try:
        width, height = webp_size(data)
    except UnidentifiedImageError:
        return None
    return width * height


#: held while ``Image.MAX_IMAGE_PIXELS`` is lifted, and while ``open_input`` relies on it
_limit_lock = threading.RLock()


@contextmanager
def _pillow_limit_at_least(pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb check letting an image of ``pixels`` through while inside: for a
    size ours has allowed (WebP's plugin checks as it opens, and takes no limit of its own). Keep
    it to the open: the lift is under a lock, so lifts on several threads never put back each
    other's values, and our own input checks (``open_input``) wait it out. Another library's
    ``Image.open`` on another thread meanwhile reads the lifted limit: at most ``pixels``, a size
    our config allows."""
    from PIL import Image

    with _limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        if saved is not None and pixels > 2 * saved:  # Pillow refuses past twice its value
            Image.MAX_IMAGE_PIXELS = -(-pixels // 2)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def open_input(data: bytes, kind: str, limits: ImageLimits) -> Image.Image:
    """``data`` opened by its header only, Pillow's decompression-bomb check kept for an input,
    except where ``limits.max_input_pixels``, set past Pillow's limit, allows what it declares: a
    size ours allows was refused, with our limit in the message."""
    from PIL import Image

    try:
        with _limit_lock:  # Pillow's own limit, never one lifted meanwhile for another image
            return Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[kind]])
    except Image.DecompressionBombError as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        if declared is None or int(declared.group(1)) > limits.max_input_pixels:
            raise
    return open_header(data, kind)
