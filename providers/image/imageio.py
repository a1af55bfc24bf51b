"""Safe image input and output: base64 / URL / storage key / local file in, checked pixels, bytes out.

Every limit is checked before the expensive step it guards: base64 length before decoding,
magic bytes before Pillow sees the data, the declared width x height (read from the header)
before any pixel is decoded, and the output size before a model runs. Pillow's own
``MAX_IMAGE_PIXELS`` only warns up to twice its value, so it is not relied on, nor let refuse an
image within our limits (``open_header``). Errors are
``InputError`` naming the field and the limit.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
import struct
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InputError
from providers.base import BoundedStorage
from providers.image.quiet import quiet_pillow

if TYPE_CHECKING:
    from PIL import Image

    from core.config import ImageSection, SwarmConfig
    from providers.base import StorageProvider

#: format name -> magic-byte test; Pillow is never given anything that fails these.
_MAGIC = {
    "png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    "webp": lambda b: len(b) >= 12 and b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "gif": lambda b: b[:6] in (b"GIF87a", b"GIF89a"),
    "bmp": lambda b: b.startswith(b"BM"),
}
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}
OUTPUT_FORMATS = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
#: the longest side each output format can encode (libwebp's 16383, libjpeg's 65500); PNG's lies
#: past any ``max_output_pixels``. Past it the encoder failed after the model had run.
MAX_SIDE = {"webp": 16_383, "jpeg": 65_500}
#: output formats without an alpha channel: ``encode`` puts a transparent image on white
OPAQUE_FORMATS = ("jpeg",)
_DATA_URL = re.compile(r"^data:image/[\w.+-]+(?:;[^,;]*)*;base64,", re.IGNORECASE)
#: any data: URL head: one that is not image/...;base64 is named as such, not as bad base64
_ANY_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)


@dataclass(frozen=True)
class ImageLimits:
    """The limits of ``providers.image`` in config."""

    max_input_bytes: int = 20 * 1024 * 1024
    max_input_pixels: int = 16_777_216
    max_output_pixels: int = 268_435_456
    formats: tuple[str, ...] = ("png", "jpeg", "webp", "gif", "bmp")

    @classmethod
    def from_section(cls, image: ImageSection) -> ImageLimits:
        """The limits of ``providers.image``."""
        return cls(image.max_input_bytes, image.max_input_pixels, image.max_output_pixels)

    @classmethod
    def from_config(cls, config: SwarmConfig) -> ImageLimits:
        """The limits of ``config.providers.image``."""
        return cls.from_section(config.providers.image)


def sniff_format(data: bytes) -> str | None:
    """The format the magic bytes announce, or ``None``."""
    return next((name for name, test in _MAGIC.items() if test(data[:16])), None)


def base64_payload(text: str, limits: ImageLimits, *, field: str = "image") -> str:
    """The base64 of ``text`` (plain, or a ``data:image/...;base64,`` URL), its length checked
    against ``limits`` (cheap: nothing is decoded). The MCP tools call it before a job exists."""
    text = text.strip()
    head, image_head = _ANY_DATA_URL.match(text[:256]), _DATA_URL.match(text[:256])
    if head and not image_head:
        media = head.group(1) or "text/plain"
        if media.lower().startswith("image/"):
            raise InputError(f"a data: URL of {media} without ;base64; send data:image/png;base64,... (or plain base64)",
                             field=field)
        raise InputError(f"a data: URL of {media}, not an image type; send data:image/png;base64,..."
                         " (or image/jpeg, image/webp), or plain base64", field=field)
    text = text[image_head.end():] if image_head else text
    limit_chars = base64_limit_chars(limits)
    if len(text) > limit_chars + 4:
        raise InputError(
            f"base64 image is {len(text)} characters; the limit is {limit_chars}"
            f" ({limits.max_input_bytes} bytes decoded, providers.image.max_input_bytes)",
            field=field,
        )
    return text


def base64_limit_chars(limits: ImageLimits) -> int:
    """The base64 length of ``limits.max_input_bytes`` bytes."""
    return (limits.max_input_bytes + 2) // 3 * 4


def decode_base64(text: str, limits: ImageLimits, *, field: str = "image") -> bytes:
    """Base64 (optionally a ``data:image/...;base64,`` URL) to bytes, length checked first."""
    text = base64_payload(text, limits, field=field)
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError("not valid base64", field=field) from None
    if len(data) > limits.max_input_bytes:
        raise InputError(f"image is {len(data):,} bytes; the limit is {limits.max_input_bytes:,} (providers.image.max_input_bytes)",
                         field=field)
    return data


def open_header(data: bytes, kind: str) -> Image.Image:
    """``data``, a ``kind`` image by its magic bytes, opened by its header only (nothing decoded),
    as ``Image.open(formats=[...])`` opens it but without Pillow's decompression-bomb check: that
    check refuses past 2 x ``Image.MAX_IMAGE_PIXELS`` (178,956,970 pixels), below our own
    ``max_output_pixels`` (268,435,456), so an upscale allowed by it failed after all its work, when
    its output was read back for its size. The size is ours to check: an output's was checked
    against ``max_output_pixels`` before it was made, and an input is opened so only where
    ``max_input_pixels``, set past Pillow's limit, allows it (``_open_input``). Not a process-wide
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


#: held while ``Image.MAX_IMAGE_PIXELS`` is lifted, and while ``_open_input`` relies on it
_limit_lock = threading.RLock()


@contextmanager
def _pillow_limit_at_least(pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb check letting an image of ``pixels`` through while inside: for a
    size ours has allowed (WebP's plugin checks as it opens, and takes no limit of its own). Keep
    it to the open: the lift is under a lock, so lifts on several threads never put back each
    other's values, and our own input checks (``_open_input``) wait it out. Another library's
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


def _open_input(data: bytes, kind: str, limits: ImageLimits) -> Image.Image:
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


def _header(data: bytes, kind: str, limits: ImageLimits, field: str) -> Image.Image:
    """``data`` opened by its header only (nothing decoded), its declared size within
    ``limits.max_input_pixels``, or ``InputError`` naming ``field``."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = _open_input(data, kind, limits)
    except Image.DecompressionBombError as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)):,} pixels" if declared else "too many pixels"
        raise InputError(
            f"image declares {size}; the limit is {limits.max_input_pixels:,} (providers.image.max_input_pixels)", field=field
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read the {kind} header ({type(exc).__name__})", field=field) from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputError(f"image has an empty size {width}x{height}", field=field)
    if width * height > limits.max_input_pixels:
        raise InputError(
            f"image is {width}x{height} = {width * height:,} pixels; the limit is {limits.max_input_pixels:,}"
            " (providers.image.max_input_pixels)",
            field=field,
        )
    return img


#: what Pillow raises decoding a file cut short or corrupt
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError)


def _unreadable(exc: BaseException) -> str:
    """What is wrong with an image Pillow could not decode: "truncated", or "corrupt (<error>)"."""
    return "truncated" if "truncated" in str(exc).lower() else f"corrupt ({type(exc).__name__})"


def open_checked(data: bytes, limits: ImageLimits, *, field: str = "image") -> Image.Image:
    """Decode ``data`` into a loaded Pillow image (first frame), or raise ``InputError``.

    Refuses: too many bytes, unknown magic bytes or a format outside ``limits.formats``, a
    declared size over ``max_input_pixels`` (checked from the header, before decoding), and
    truncated or corrupt files. Animated images give their first frame. The image comes back
    upright (its EXIF orientation applied: ``size`` is the size a viewer shows) and with 8-bit
    channels (``to_8bit``).
    """
    from PIL import ImageOps

    if len(data) > limits.max_input_bytes:
        raise InputError(f"image is {len(data):,} bytes; the limit is {limits.max_input_bytes:,} (providers.image.max_input_bytes)",
                         field=field)
    kind = sniff_format(data)
    if kind is None or kind not in limits.formats:
        raise InputError(
            f"not a supported image (magic bytes {data[:8].hex() or 'empty'}); formats: {', '.join(limits.formats)}",
            field=field,
        )
    with quiet_pillow():
        img = _header(data, kind, limits, field)
        try:
            img.seek(0)
            img.load()
        except _UNREADABLE as exc:
            raise InputError(f"{kind} image is {_unreadable(exc)}", field=field) from None
        ImageOps.exif_transpose(img, in_place=True)  # a phone photo is stored sideways, with a tag saying so
        return to_srgb(to_8bit(img))


#: modes an embedded colour profile is applied to
_PROFILED = ("RGB", "RGBA", "CMYK")


def to_srgb(img: Image.Image) -> Image.Image:
    """``img`` in sRGB where it embeds another colour profile (Adobe RGB, Display P3, a printer's
    CMYK): every output is written untagged, which viewers show as sRGB, so the profile's values
    read as sRGB shifted the colours (a green of (0,201,37) came back as (37,200,58)). An sRGB
    profile, or none, leaves the image as it is (greys and palettes too), and so does a profile that
    cannot be read or applied, as a viewer shows such an image."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in _PROFILED:
        return img
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = (ImageCms.getProfileDescription(profile) or "").lower()
        if "srgb" in name and img.mode != "CMYK":
            return img
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        base = img.convert("RGB") if alpha is not None else img
        out = ImageCms.profileToProfile(base, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (OSError, ImageCms.PyCMSError, TypeError, ValueError):  # as a viewer does: read as sRGB
        return img
    if out is None:  # profileToProfile(inPlace=True) only
        return img
    if alpha is not None:
        out = out.convert("RGBA")
        out.putalpha(alpha)
    out.info = {k: v for k, v in img.info.items() if k != "icc_profile"}
    return out


#: modes of one channel wider than 8 bits (16-bit PNG greyscale), which ``convert`` would clip
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def to_8bit(img: Image.Image) -> Image.Image:
    """``img`` with 8-bit channels: a 16-bit greyscale image scaled to ``L`` (``v / 257``,
    rounded), as ``convert("L")``/``convert("RGB")`` do not (they clip every value over 255 to
    white); with a ``tRNS`` level, ``LA`` whose alpha is 0 exactly there. Any other image is
    returned as it is."""
    if img.mode not in _WIDE_MODES:
        return img
    import numpy as np
    from PIL import Image

    wide = np.asarray(img).astype(np.int64)
    grey = ((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):  # a tRNS level: exact on the 16-bit values (several share an 8-bit one)
        alpha = np.where(wide == transparent, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, alpha], axis=-1), "LA")
    return Image.fromarray(grey, "L")


def check_output_pixels(
    width: int, height: int, scale: float, limits: ImageLimits, *, field: str = "scale"
) -> tuple[int, int]:
    """The output size of ``scale``; ``InputError`` when it passes ``max_output_pixels``."""
    out_w, out_h = round(width * scale), round(height * scale)
    if out_w * out_h > limits.max_output_pixels:
        raise InputError(
            f"output would be {out_w}x{out_h} = {out_w * out_h:,} pixels; the limit is {limits.max_output_pixels:,}"
            f" (providers.image.max_output_pixels; input {width}x{height} at x{scale:g})",
            field=field,
        )
    return out_w, out_h


def check_output_side(
    width: int, height: int, scale: float, output_format: str, *, field: str = "output_format"
) -> None:
    """``InputError`` when the output of a ``width`` x ``height`` input at ``scale`` is longer a side
    than ``output_format`` can encode (``MAX_SIDE``); it says what would fit: another format, or a
    smaller scale."""
    out_w, out_h = round(width * scale), round(height * scale)
    limit = MAX_SIDE.get(output_format)
    if limit is None or max(out_w, out_h) <= limit:
        return
    fits = [name for name in OUTPUT_FORMATS if max(out_w, out_h) <= MAX_SIDE.get(name, max(out_w, out_h))]
    smaller = [s for s in (3, 2) if s < scale and max(round(width * s), round(height * s)) <= limit]
    instead = f"output_format {' or '.join(fits)}" + (
        f", or scale {smaller[0]} ({round(width * smaller[0])}x{round(height * smaller[0])})" if smaller else "")
    made = f" (input {width}x{height} at x{scale:g})" if scale != 1 else ""
    raise InputError(
        f"output would be {out_w}x{out_h}{made}; output_format {output_format} takes at most {limit:,} pixels a side:"
        f" give {instead}",
        field=field,
    )


def has_transparency(img: Image.Image) -> bool:
    """Whether ``img`` hides any pixel, wholly or in part (an alpha channel, or a ``tRNS`` colour)."""
    return to_rgb_alpha(img)[1] is not None


def alpha_fate(see_through: bool, output_format: str) -> str:
    """What became of an output's transparency, for its trace: none, kept, or flattened_on_white(jpeg)."""
    if not see_through:
        return "none"
    return f"flattened_on_white({output_format})" if output_format in OPAQUE_FORMATS else "kept"


def transparency_lost(output_format: str) -> str:
    """What a result says when ``output_format`` (one of ``OPAQUE_FORMATS``) drops its transparency."""
    return (f"output_format {output_format} has no transparency: the transparent parts were filled white;"
            " give output_format png or webp to keep them")


def to_rgb_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Split into an RGB image and its alpha channel (``None`` when fully opaque or absent)."""
    # a tRNS chunk makes one colour transparent in P, L and RGB images alike
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if not has_alpha:
        return img.convert("RGB"), None
    rgba = img.convert("RGBA")
    alpha = rgba.getchannel("A")
    if alpha.getextrema() == (255, 255):
        return rgba.convert("RGB"), None
    return rgba.convert("RGB"), alpha


def encode(img: Image.Image, output_format: str = "png", *, quality: int = 92) -> bytes:
    """Encode for output; JPEG has no alpha, so a transparent image is put on white first."""
    from PIL import Image

    if output_format not in OUTPUT_FORMATS:
        raise InputError(
            f"output_format {output_format!r}; valid: {', '.join(OUTPUT_FORMATS)}", field="output_format"
        )
    check_output_side(img.width, img.height, 1, output_format)  # the actions check it before a model runs
    buffer = io.BytesIO()
    if output_format == "jpeg":
        if img.mode in ("RGBA", "LA"):
            background = Image.new("RGB", img.size, (255, 255, 255))
            background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
            img = background
        img.convert("RGB").save(buffer, "JPEG", quality=quality)
    elif output_format == "webp":
        img.save(buffer, "WEBP", quality=quality, method=4)
    else:
        img.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


#: pixels of the decoded image copied at a time to shrink it (``_reduce_in_strips``): 16 MB of RGBA
_STRIP_PIXELS = 1 << 22


def decode_for_preview(data: bytes, max_side: int, max_pixels: int) -> Image.Image:
    """One of our own outputs, decoded small for a preview: at most ``max_side`` pixels a side,
    ``RGBA`` where it has transparency, else ``RGB``. Trusted (this code encoded it), so Pillow's
    decompression-bomb check, below our ``max_output_pixels``, is not asked (``open_header``); the
    size its header declares is checked against ``max_pixels`` (that setting) instead. Cheaply: a
    JPEG is decoded at 1/2 to 1/8 scale where that still covers the preview (``draft``); the others
    decode whole, then shrink by box averages a strip at a time (``_reduce_in_strips``) before a
    Lanczos resize to the final size, so memory stays near the decoded image's own.

    Raises:
        ValueError: the header declares more than ``max_pixels``.
        PIL.UnidentifiedImageError: ``data`` is no image Pillow can read (an ``OSError``, as a
            truncated or corrupt one raises).
    """
    from PIL import Image, UnidentifiedImageError

    kind = sniff_format(data)
    if kind is None:
        raise UnidentifiedImageError(f"not an image by its first bytes ({data[:8].hex() or 'empty'})")
    width, height = encoded_size(data)
    if width * height > max_pixels:
        raise ValueError(f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
                         " (providers.image.max_output_pixels)")
    with quiet_pillow(), open_header(data, kind) as img:
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale))) if scale < 1 else (width, height)
        img.draft(None, size)  # a JPEG only; the others ignore it
        img.load()
        mode = "RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB"
        factor = max(1, min(img.width // size[0], img.height // size[1]) // 2)  # Pillow's reducing_gap=2
        small = _reduce_in_strips(img, factor, mode)  # ``img`` itself where it is already small and in mode
        return small.copy() if small.size == size else small.resize(size, Image.Resampling.LANCZOS)


def _reduce_in_strips(img: Image.Image, factor: int, mode: str) -> Image.Image:
    """``img`` in ``mode``, ``factor`` times smaller each way (box averages, as ``Image.reduce``).
    An image already in ``mode`` (RGB) is reduced where it lies; any other is copied, converted
    and reduced a strip at a time, so the copy ``reduce`` makes of RGBA (premultiplied) is a
    strip's, not a second whole image. A strip stays within Pillow's limit, which ``crop`` checks."""
    from PIL import Image

    if factor == 1:  # at most four times the preview a side: resized as it is
        return img if img.mode == mode else img.convert(mode)
    if img.mode == mode and mode == "RGB":
        return img.reduce(factor)
    budget = min(_STRIP_PIXELS, Image.MAX_IMAGE_PIXELS or _STRIP_PIXELS)
    rows = factor * max(1, budget // (img.width * factor))
    if img.width * rows > budget:  # one row of blocks is over Pillow's limit: a line thousands of times longer than high
        return img.convert(mode).reduce(factor)
    out = Image.new(mode, (-(-img.width // factor), -(-img.height // factor)))
    for top in range(0, img.height, rows):
        strip = img.crop((0, top, img.width, min(img.height, top + rows)))
        out.paste(strip.convert(mode).reduce(factor), (0, top // factor))
    return out


async def read_input(
    *,
    image_b64: str | None = None,
    url: str | None = None,
    key: str | None = None,
    storage: StorageProvider | None = None,
    limits: ImageLimits,
    fetch_timeout_s: float = 20.0,
    http: Any = None,
) -> bytes:
    """The raw bytes of exactly one of: base64 text, an http(s) URL, a storage key.

    URLs go through ``providers.web.fetch.safe_fetch`` (SSRF rules, redirects re-checked, byte cap while
    streaming). Bytes are not decoded here: pass them to ``open_checked``.
    """
    given = [(name, value) for name, value in (("image", image_b64), ("url", url), ("key", key)) if value is not None]
    if len(given) != 1:
        raise InputError("give exactly one of image (base64), url, key", field="image")
    name, value = given[0]
    if not value.strip():  # a zero-byte file's base64 is ""
        raise InputError("is empty", field=name)
    if image_b64:
        return decode_base64(image_b64, limits)
    if url:
        from providers.web.fetch import safe_fetch

        page = await safe_fetch(url, max_bytes=limits.max_input_bytes, timeout_s=fetch_timeout_s, http=http)
        if page.status >= 400:  # an error page is no image (its body, a placeholder PNG, was processed)
            raise InputError(f"the server answered HTTP {page.status}, not an image", field="url")
        return page.content
    if storage is None:
        raise InputError("no storage is configured to read a key from", field="key")
    if isinstance(storage, BoundedStorage):  # refused from its size, before it is read
        try:
            return await storage.get_at_most(key or "", limits.max_input_bytes)
        except InputError as exc:
            if getattr(exc, "size", None) is None:
                raise
            raise _key_too_large(exc.size, limits) from None  # type: ignore[attr-defined]
    data = await storage.get(key or "")
    if len(data) > limits.max_input_bytes:
        raise _key_too_large(len(data), limits)
    return data


def _key_too_large(size: int, limits: ImageLimits) -> InputError:
    """As the ``image`` and ``path`` errors say it: with the setting the limit comes from."""
    return InputError(f"object is {size:,} bytes; the limit is {limits.max_input_bytes:,}"
                      " (providers.image.max_input_bytes)", field="key")


# --- a local file (the MCP tools' ``path``) -----------------------------------------------------

#: longest path taken (Linux's PATH_MAX)
MAX_PATH_CHARS = 4096
_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")


def looks_like_path(text: str) -> bool:
    """Whether ``text``, given as an image's base64, is rather a file's name (``/home/me/cat.png``,
    ``~/cat.png``, ``C:\\cat.png``, ``file:///...``, ``cat.png``): said so, it tells a caller to
    give it as ``path``. An image's base64 that starts with ``/`` (JPEG's ``/9j/``) is not one."""
    text = text.strip()
    if not text or len(text) > MAX_PATH_CHARS or _ANY_DATA_URL.match(text):
        return False
    if text[:5].lower() == "file:" or text.startswith("~") or _WINDOWS_PATH.match(text):
        return True
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):  # not base64: a name if it has a folder or an extension
        return "/" in text or "\\" in text or _EXTENSION.search(text) is not None
    return text.startswith("/") and sniff_format(data) is None


def local_path(text: str, *, field: str = "path", base: Path | None = None) -> Path:
    """``text`` (an absolute path, ``~/...``, or a ``file://`` URL) as an absolute ``Path``; a
    relative path is refused, or names a file in ``base`` when the door has one (the command line's
    working folder)."""
    text = text.strip()
    if not text:
        raise InputError("is empty", field=field)
    if len(text) > MAX_PATH_CHARS:
        raise InputError(f"is {len(text)} characters; the limit is {MAX_PATH_CHARS}", field=field)
    if "\x00" in text:
        raise InputError("holds a NUL character", field=field)
    is_url = text[:5].lower() == "file:"
    if is_url:
        parsed = urllib.parse.urlsplit(text)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"a file:// URL of host {parsed.netloc!r}; only files on the machine the MCP server"
                             " runs on can be read", field=field)
        text = urllib.parse.unquote(parsed.path)
        if os.name == "nt" and re.match(r"^/[A-Za-z]:", text):  # file:///C:/Users/... -> C:/Users/...
            text = text[1:]
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute() and not is_url:
        path = base / path
    if not path.is_absolute():
        raise InputError(f"{text!r} is not an absolute path; give the full path (/home/me/cat.png,"
                         " C:\\Users\\me\\cat.png) or a file:// URL", field=field)
    return path


def _listed(roots: Sequence[str], most: int = 5) -> str:
    """``roots`` for an error: the first ``most`` as given, then how many more."""
    shown = ", ".join(str(r) for r in roots[:most]) or "none"
    return shown + (f" and {len(roots) - most} more" if len(roots) > most else "")


def read_file(text: str, limits: ImageLimits, *, roots: Sequence[str] | None = None, field: str = "path",
              base: Path | None = None, check_image: bool = True) -> bytes:
    """The bytes of the image file ``text`` names (``local_path``), checked before and while it is
    read: inside one of ``roots`` once every link is followed (``None``: anywhere), a regular file
    (not a folder, device or pipe: opened without blocking, then checked on the open file), at most
    ``limits.max_input_bytes``, an image by its magic bytes, and, with ``check_image``, its declared
    size and a whole decode. Without it (one image of a batch), a file that is an image by its
    first bytes but no good one fails alone in the job, as the same bytes given as ``image`` do; a
    file that is no image at all (``~/.aws/credentials``, ``/proc/self/environ``) never enters a
    job: its bytes were stored with it, sent to the runner, and quoted in its error.

    Raises:
        InputError: naming ``field``, the file, and what was wrong.
    """
    path = local_path(text, field=field, base=base)
    real = Path(os.path.realpath(path))
    if roots is not None and not any(real.is_relative_to(os.path.realpath(Path(r).expanduser())) for r in roots):
        raise InputError(f"{path} is outside the folders this server may read (mcp.file_roots: {_listed(roots)});"
                         " copy the file into one of them, or send it as url, key or base64", field=field)
    # not blocking: a pipe would wait for a writer; not following a link made since realpath
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", field=field) from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied", field=field) from None
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror or type(exc).__name__}", field=field) from None
    try:
        data = _read_regular(fd, path, limits.max_input_bytes, field)
    finally:
        os.close(fd)
    if not data:
        raise InputError(f"{path} is empty", field=field)
    kind = sniff_format(data)
    if kind is None or kind not in limits.formats:
        raise InputError(f"{path} is not a supported image (by its first bytes); formats: {', '.join(limits.formats)}",
                         field=field)
    if not check_image:
        return data
    with quiet_pillow():
        img = _header(data, kind, limits, field)  # a size past the limit is the path's, not a job's "image"
        try:  # and so is a file cut short: decoded once here, it is refused before a job, naming the path
            img.seek(0)
            img.load()
        except _UNREADABLE as exc:
            raise InputError(f"{path} is a {_unreadable(exc)} {kind} image", field=field) from None
        finally:
            img.close()
    return data


def _read_regular(fd: int, path: Path, limit: int, field: str) -> bytes:
    """Up to ``limit`` bytes of the open file ``fd``, refused unless it is a regular file that small."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a folder, not a file", field=field)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a device, pipe or socket)", field=field)
    if info.st_size > limit:
        raise InputError(f"{path} is {info.st_size:,} bytes; the limit is {limit:,} (providers.image.max_input_bytes)",
                         field=field)
    chunks, size = [], 0
    while size <= limit:  # the file may have grown since fstat
        try:
            chunk = os.read(fd, limit + 1 - size)
        except OSError as exc:  # /proc/self/mem (EIO), a file on a failing disk: it was the call's crash
            raise InputError(f"cannot read {path}: {exc.strerror or type(exc).__name__}", field=field) from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise InputError(f"{path} is over {limit} bytes (providers.image.max_input_bytes)", field=field)
    return b"".join(chunks)
