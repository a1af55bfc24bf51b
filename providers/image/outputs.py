"""Image output: the size and format checks made before a model runs, the encoding after, and a
small preview of an encoded output.

The output size is checked against ``max_output_pixels`` and the longest side an output format
can encode (``MAX_SIDE``) before the expensive step; errors are ``InputError`` naming the field
and the limit.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from core.errors import InputError
from providers.image.header import encoded_size, open_header, sniff_format
from providers.image.quiet import quiet_pillow

if TYPE_CHECKING:
    from PIL import Image

    from providers.image.limits import ImageLimits

OUTPUT_FORMATS = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
#: the longest side each output format can encode (libwebp's 16383, libjpeg's 65500); PNG's lies
#: past any ``max_output_pixels``. Past it the encoder failed after the model had run.
MAX_SIDE = {"webp": 16_383, "jpeg": 65_500}
#: output formats without an alpha channel: ``encode`` puts a transparent image on white
OPAQUE_FORMATS = ("jpeg",)


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
