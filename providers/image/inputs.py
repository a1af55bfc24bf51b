"""Image input: base64, an http(s) URL or a storage key in, checked 8-bit sRGB pixels out.

Every limit is checked before the expensive step it guards: base64 length before decoding,
magic bytes before Pillow sees the data, and the declared width x height (read from the header,
``providers.image.header``) before any pixel is decoded. Errors are ``InputError`` naming the
field and the limit. A local file (the MCP tools' ``path``) is read by ``providers.image.local_files``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import TYPE_CHECKING, Any

from core.errors import InputError
from providers.base import BoundedStorage
from providers.image.header import open_input, sniff_format
from providers.image.quiet import quiet_pillow

if TYPE_CHECKING:
    from PIL import Image

    from providers.base import StorageProvider
    from providers.image.limits import ImageLimits

_DATA_URL = re.compile(r"^data:image/[\w.+-]+(?:;[^,;]*)*;base64,", re.IGNORECASE)
#: any data: URL head: one that is not image/...;base64 is named as such, not as bad base64
ANY_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)


def base64_payload(text: str, limits: ImageLimits, *, field: str = "image") -> str:
    """The base64 of ``text`` (plain, or a ``data:image/...;base64,`` URL), its length checked
    against ``limits`` (cheap: nothing is decoded). The MCP tools call it before a job exists."""
    text = text.strip()
    head, image_head = ANY_DATA_URL.match(text[:256]), _DATA_URL.match(text[:256])
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


def checked_header(data: bytes, kind: str, limits: ImageLimits, field: str) -> Image.Image:
    """``data`` opened by its header only (nothing decoded), its declared size within
    ``limits.max_input_pixels``, or ``InputError`` naming ``field``."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = open_input(data, kind, limits)
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
UNREADABLE = (OSError, SyntaxError, ValueError, EOFError)


def unreadable(exc: BaseException) -> str:
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
        img = checked_header(data, kind, limits, field)
        try:
            img.seek(0)
            img.load()
        except UNREADABLE as exc:
            raise InputError(f"{kind} image is {unreadable(exc)}", field=field) from None
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
