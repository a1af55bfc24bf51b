"""Review 33e: a WebP input within ``max_input_pixels`` is read past Pillow's decompression-bomb limit.

Pillow's WebP plugin runs the bomb check itself as it opens (the other formats leave it to
``Image.open``), so with ``max_input_pixels`` raised past Pillow's 178,956,970 pixels a WebP was
still refused, as "image declares N pixels; the limit is <ours>" with N within that limit. The lift
is per open, under a lock, bounded by the header's size, and leaves Pillow's setting as it was.

Pillow's limit is set low here (``tiny_pillow_limit``) so that small images cross it: a 180-megapixel
WebP takes 700 MB and many seconds to decode.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError
from providers.image.imageio import ImageLimits, open_checked, read_file

#: Pillow refuses past twice this: 4,000 pixels
PILLOW_LIMIT = 2_000


@pytest.fixture
def tiny_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_LIMIT)


def _webp(size: tuple[int, int], mode: str = "RGB", **options: object) -> tuple[bytes, np.ndarray]:
    """A lossless WebP of a gradient (every pixel told apart), and its pixels."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256, 255 - x % 200], -1).astype(np.uint8)
    img = Image.fromarray(pixels, "RGBA").convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, "WEBP", **(options or {"lossless": True}))
    return buffer.getvalue(), np.asarray(img)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])  # VP8L and VP8X headers
def test_a_webp_within_max_input_pixels_is_read_past_pillows_limit(tiny_pillow_limit: None, mode: str) -> None:
    data, pixels = _webp((100, 80), mode)  # 8,000 pixels: past Pillow's 4,000, within our 10,000
    img = open_checked(data, ImageLimits(max_input_pixels=10_000))
    assert img.size == (100, 80) and img.mode == mode
    assert np.array_equal(np.asarray(img), pixels)
    assert Image.MAX_IMAGE_PIXELS == PILLOW_LIMIT  # lifted for that open only
    with pytest.raises(Image.DecompressionBombError):  # Pillow's own check is left on for everyone else
        Image.open(io.BytesIO(data))
    with pytest.raises(InputError) as refused:  # and ours refuses past our limit, in our words
        open_checked(data, ImageLimits(max_input_pixels=7_999), field="images[1].image")
    assert refused.value.field == "images[1].image"
    assert str(refused.value).endswith("image declares 8,000 pixels; the limit is 7,999 (providers.image.max_input_pixels)")
    assert Image.MAX_IMAGE_PIXELS == PILLOW_LIMIT


def test_a_lossy_webp_is_read_past_pillows_limit_too(tiny_pillow_limit: None) -> None:
    data, _pixels = _webp((90, 90), quality=90)  # a VP8 key frame's header
    assert data[12:16] == b"VP8 "
    assert open_checked(data, ImageLimits(max_input_pixels=8_100)).size == (90, 90)


def test_a_webp_file_given_as_path_is_read_past_pillows_limit(tiny_pillow_limit: None, tmp_path: Path) -> None:
    """The MCP tools' ``path``: the file is decoded once before a job is made (``read_file``)."""
    data, _pixels = _webp((100, 80))
    (tmp_path / "big.webp").write_bytes(data)
    limits = ImageLimits(max_input_pixels=10_000)
    assert read_file(str(tmp_path / "big.webp"), limits, roots=[str(tmp_path)], field="path") == data
    with pytest.raises(InputError, match=r"image declares 8,000 pixels; the limit is 7,999"):
        read_file(str(tmp_path / "big.webp"), ImageLimits(max_input_pixels=7_999), field="path")


def test_lifts_on_many_threads_put_pillows_limit_back_and_stay_bounded(tiny_pillow_limit: None) -> None:
    """Threads reading WebPs of several sizes at once, beside a thread opening a PNG past every one of
    them: each WebP is read, the PNG is refused every time (no lift lets more than its own image
    through), and Pillow's limit is what it was once they are done (no thread put back another's)."""
    webps = [_webp((100 + 10 * n, 80))[0] for n in range(4)]  # 8,000 to 10,400 pixels
    buffer = io.BytesIO()
    Image.new("L", (120, 100)).save(buffer, "PNG")  # 12,000 pixels: past any lift
    bomb, limits = buffer.getvalue(), ImageLimits(max_input_pixels=11_000)
    sizes: list[tuple[int, int]] = []
    opened: list[str] = []
    refused: list[str] = []

    def read(data: bytes) -> None:
        sizes.extend(open_checked(data, limits).size for _ in range(25))

    def open_bomb() -> None:
        for _ in range(200):
            try:
                Image.open(io.BytesIO(bomb)).close()
                opened.append("opened")
            except Image.DecompressionBombError:
                refused.append("refused")

    threads = [threading.Thread(target=read, args=(data,)) for data in webps * 2] + [threading.Thread(target=open_bomb)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(set(sizes)) == [(100, 80), (110, 80), (120, 80), (130, 80)] and len(sizes) == 8 * 25
    assert opened == [] and len(refused) == 200
    assert Image.MAX_IMAGE_PIXELS == PILLOW_LIMIT
