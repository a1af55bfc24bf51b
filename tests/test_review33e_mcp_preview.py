"""Review 33e: the MCP answer to an image past Pillow's decompression-bomb limit has its preview.

An upscale whose result lies between Pillow's limit (178,956,970 pixels) and ``max_output_pixels``
completed with its result and link, and no inline picture: ``preview`` opened it with
``Image.open``, which refused it. Pillow's limit is set low here so that small images cross it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from mcp_types import ImageContent, ResourceLink, TextContent
from PIL import Image

from mcp_server.previews import StoredImage, image_blocks, preview
from providers.image.imageio import encoded_size
from providers.storage.local import LocalStorage

#: mcp.max_inline_image_bytes here
BUDGET = 20_000


@pytest.fixture
def tiny_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000)  # Pillow refuses past 4,000 pixels


def _stored(fmt: str, mode: str = "RGB") -> bytes:
    """80,000 pixels of noise: hundreds of KB, over the budget of ``BUDGET`` bytes."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(7).integers(0, 256, (200, 400, len(mode)), dtype=np.uint8)
    Image.fromarray(noise, mode).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "mode", "shown"), [("PNG", "RGB", "image/jpeg"), ("PNG", "RGBA", "image/png"),
                                                     ("WEBP", "RGB", "image/jpeg"), ("JPEG", "RGB", "image/jpeg")])
async def test_a_result_past_pillows_limit_has_its_preview(tiny_pillow_limit: None, tmp_path: Path,
                                                          fmt: str, mode: str, shown: str) -> None:
    storage, data = LocalStorage(tmp_path / "artifacts"), _stored(fmt, mode)
    key = f"image_tools/j/upscale.{fmt.lower()}"
    await storage.put(key, data)
    image = StoredImage(key, 400, 200, len(data), fmt.lower(), "result")
    text, picture, link = await image_blocks([image], storage, BUDGET, 100_000)
    assert isinstance(text, TextContent) and isinstance(picture, ImageContent) and isinstance(link, ResourceLink)
    assert "400x200" in text.text and "downscaled copy" in text.text and picture.mime_type == shown
    width, height = encoded_size(base64.b64decode(picture.data))  # Image.open: past Pillow's limit here too
    assert abs(width / height - 2.0) < 0.1 and width < 400 and f"({width}x{height}," in text.text
    text, link = await image_blocks([image], storage, BUDGET, 79_999)  # past max_output_pixels: not decoded
    assert isinstance(link, ResourceLink)
    assert text.text.endswith("No preview: the stored image could not be read (ValueError).")  # type: ignore[union-attr]


def test_a_result_the_job_gave_no_size_for_is_previewed_past_pillows_limit(tiny_pillow_limit: None) -> None:
    shown = preview(_stored("PNG"), "image/png", 0, 0, BUDGET)  # the default max_output_pixels
    assert shown is not None and shown.downscaled and len(shown.data) <= BUDGET
    assert abs(shown.width / shown.height - 2.0) < 0.1
