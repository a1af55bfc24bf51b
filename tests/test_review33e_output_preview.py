"""Review 33e: an output past Pillow's decompression-bomb limit can still be shown small.

An upscale whose result lies between Pillow's limit (178,956,970 pixels) and ``max_output_pixels``
completes, but its preview was made with ``Image.open``, which refused it: the MCP answer had the
result and its link, and no picture. ``decode_for_preview`` decodes our own output (trusted) past
Pillow's limit, up to ``max_output_pixels``, and shrinks it cheaply (a JPEG at a reduced scale,
the others by box averages a strip at a time).

Pillow's limit is set low (``tiny_pillow_limit``) so that small images cross it; one real-size
PNG (1 bit a pixel, 23 MB decoded) checks the real limit.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from providers.image.imageio import decode_for_preview

#: Pillow refuses past twice this: 4,000 pixels
PILLOW_LIMIT = 2_000
SIZE = (300, 200)


@pytest.fixture
def tiny_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_LIMIT)


def _encoded(mode: str, fmt: str) -> bytes:
    """A ``SIZE`` gradient in ``mode``, with a grid of transparent holes where it has alpha."""
    width, height = SIZE
    y, x = np.mgrid[0:height, 0:width]
    alpha = np.where((x // 7 + y // 5) % 3 == 0, 0, 255)
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height), alpha], -1)
    img = Image.fromarray(pixels.astype(np.uint8), "RGBA")
    img = img.convert("RGB").convert("P") if mode == "P" else img.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def _premultiplied(img: Image.Image) -> np.ndarray:
    """Pixels as they show: colour times alpha (a transparent pixel's colour is nobody's)."""
    rgba = np.asarray(img.convert("RGBA")).astype(float)
    return rgba[..., :3] * rgba[..., 3:] / 255


@pytest.mark.parametrize(("mode", "fmt", "shown"), [
    ("RGB", "PNG", "RGB"), ("RGBA", "PNG", "RGBA"), ("LA", "PNG", "RGBA"), ("L", "PNG", "RGB"), ("P", "PNG", "RGB"),
    ("RGB", "WEBP", "RGB"), ("RGBA", "WEBP", "RGBA"), ("RGB", "JPEG", "RGB"), ("L", "JPEG", "RGB"),
])
def test_an_output_past_pillows_limit_is_decoded_small(tiny_pillow_limit: None, monkeypatch: pytest.MonkeyPatch,
                                                       mode: str, fmt: str, shown: str) -> None:
    data = _encoded(mode, fmt)  # 60,000 pixels: fifteen times Pillow's limit
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    small = decode_for_preview(data, 64, 100_000)
    assert small.size == (64, 43) and small.mode == shown
    assert Image.MAX_IMAGE_PIXELS == PILLOW_LIMIT
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the same image the slow way, as a reference
    reference = Image.open(io.BytesIO(data)).convert(shown).resize(small.size, Image.Resampling.LANCZOS)
    assert np.abs(_premultiplied(small) - _premultiplied(reference)).mean() < 2.5


def test_a_small_output_keeps_its_size(tiny_pillow_limit: None) -> None:
    data = _encoded("RGBA", "PNG")
    small = decode_for_preview(data, 1568, 100_000)
    assert small.size == SIZE and small.mode == "RGBA"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(io.BytesIO(data)) as img:
            assert np.array_equal(np.asarray(small), np.asarray(img))  # the very pixels


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
def test_an_output_past_max_output_pixels_is_not_decoded(fmt: str) -> None:
    with pytest.raises(ValueError, match=r"the image is 300x200 = 60,000 pixels; the limit is 59,999"
                                         r" \(providers.image.max_output_pixels\)"):
        decode_for_preview(_encoded("RGB", fmt), 64, 59_999)


def test_a_real_output_past_pillows_limit_is_decoded_small() -> None:
    """182,000,000 pixels, past Pillow's real 178,956,970 and within the default max_output_pixels."""
    buffer = io.BytesIO()
    big = Image.new("1", (14_000, 13_000), 1)
    big.paste(0, (0, 0, 7_000, 13_000))  # the left half black
    big.save(buffer, "PNG")
    del big
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(buffer.getvalue()))
    small = decode_for_preview(buffer.getvalue(), 1568, 268_435_456)
    assert small.size == (1568, 1456) and small.mode == "RGB"
    assert small.getpixel((10, 700)) == (0, 0, 0) and small.getpixel((1560, 700)) == (255, 255, 255)


def test_an_output_whose_every_strip_passes_pillows_limit_is_reduced_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line of blocks 300 wide and 2 high is past a limit of 100 pixels (``crop`` checks it):
    then the whole image is reduced at once, as Pillow would."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    small = decode_for_preview(_encoded("RGBA", "PNG"), 64, 100_000)
    assert small.size == (64, 43) and small.mode == "RGBA" and Image.MAX_IMAGE_PIXELS == 100
