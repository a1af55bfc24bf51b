"""Review 32g: an image within our limits is never refused by Pillow's decompression-bomb check.

Pillow refuses an image past 2 x ``Image.MAX_IMAGE_PIXELS`` (178,956,970 pixels) when it opens it,
below our ``max_output_pixels`` (268,435,456): an upscale of a 4000x4000 PNG at x4 (256 Mpx) failed
as InternalError after all its work, when its output was read back for its size. Inputs are still
refused by our own ``max_input_pixels``, in our words; Pillow's check stays on for anyone else.
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import EchoImages
from PIL import Image

from core.errors import InputError
from graphs.image.nodes import finalize, finalize_batch, make_batch_step, make_step
from providers.image import pull as weights_pull
from providers.image.imageio import ImageLimits, encoded_size, open_checked, webp_size
from providers.image.rembg_backend import RembgRemover
from providers.image.upscale import RealESRGANUpscaler
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
#: past Pillow's 178,956,970 and within our max_output_pixels: 182,000,000 pixels
BIG = (14_000, 13_000)


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """A 182-megapixel PNG of one colour: 1 bit a pixel, a few KB encoded, ~23 MB decoded."""
    buffer = io.BytesIO()
    Image.new("1", BIG, 1).save(buffer, "PNG")
    return buffer.getvalue()


async def test_a_step_whose_output_passes_pillows_limit_describes_it(big_png: bytes, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "artifacts")
    await storage.put("image_tools/j/input.png", big_png)
    node = make_step("upscale", lambda _step: EchoImages(), storage)
    state: dict[str, Any] = {"action": "upscale", "job_id": "j", "current_key": "image_tools/j/input.png",
                             "options": {"output_format": "png"}}
    done = await node(state)  # type: ignore[arg-type]
    assert done["current_meta"] == {"key": "image_tools/j/upscale.png", "width": 14_000, "height": 13_000,
                                    "bytes": len(big_png)}
    described = await finalize({**state, **done, "current_meta": {}}, storage)  # type: ignore[typeddict-item]
    assert (described["result"]["width"], described["result"]["height"]) == BIG  # read back from storage too


async def test_a_batch_output_past_pillows_limit_is_described(big_png: bytes, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "artifacts")
    await storage.put("image_tools/b/input-0.png", big_png)
    node = make_batch_step("remove_background", lambda _step: EchoImages(), storage)
    state: dict[str, Any] = {"action": "remove_background_batch", "job_id": "b", "options": {"output_format": "png"},
                             "batch": [{"index": 0, "key": "image_tools/b/input-0.png"}]}
    done = await node(state)  # type: ignore[arg-type]
    [entry] = (await finalize_batch(done, storage))["result"]["results"]  # type: ignore[arg-type]
    assert (entry["index"], entry["width"], entry["height"]) == (0, *BIG), entry


def test_an_input_within_max_input_pixels_is_read_past_pillows_limit(big_png: bytes) -> None:
    img = open_checked(big_png, ImageLimits(max_input_pixels=200_000_000))
    assert img.size == BIG and img.getpixel((13_999, 12_999)) == 255


def test_an_input_past_max_input_pixels_is_still_refused_in_our_words(big_png: bytes) -> None:
    with pytest.raises(InputError) as refused:
        open_checked(big_png, ImageLimits(), field="images[2].image")
    assert refused.value.field == "images[2].image"
    assert str(refused.value).endswith("image declares 182,000,000 pixels; the limit is 16,777,216"
                                       " (providers.image.max_input_pixels)")
    with pytest.raises(Image.DecompressionBombError):  # Pillow's own check is left on for everyone else
        Image.open(io.BytesIO(big_png))


@pytest.mark.parametrize(("mode", "options", "chunk"), [
    ("RGB", {"quality": 92, "method": 4}, b"VP8 "), ("RGB", {"lossless": True}, b"VP8L"),
    ("RGBA", {"quality": 92, "method": 4}, b"VP8X"), ("LA", {"quality": 92}, b"VP8X"), ("RGBA", {"lossless": True}, b"VP8L"),
])
@pytest.mark.parametrize("size", [(1, 1), (3, 7), (16_383, 2), (2, 16_383)])
def test_webp_size_reads_each_kind_of_webp_as_pillow_does(mode: str, options: dict[str, Any], chunk: bytes,
                                                          size: tuple[int, int]) -> None:
    buffer = io.BytesIO()
    img = Image.new(mode, size)
    img.putpixel((0, 0), (0,) * len(mode))  # an alpha that hides a pixel: VP8X
    img.save(buffer, "WEBP", **options)
    data = buffer.getvalue()
    assert data[12:16] == chunk
    assert webp_size(data) == encoded_size(data) == Image.open(io.BytesIO(data)).size == size


# --- the real providers, through the dispatcher, with Pillow's limit below what they make -------

@pytest.fixture(scope="module")
def pulled() -> None:
    assert weights_pull.pull(["realesrgan-anime-6b", "u2netp"], SHARED)["ok"]


@pytest.fixture
def tiny_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow refusing past 4,000 pixels: the 48x48 input (2,304) within it and its upscale past it
    stand in for a 4000x4000 input and its 256-megapixel output, which take minutes of CPU."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000)


@pytest.mark.parametrize(("action", "inp", "size"), [
    ("upscale", {"scale": 4, "output_format": "png"}, (192, 192)),
    ("upscale", {"scale": 4, "output_format": "webp"}, (192, 192)),
    ("pipeline", {"scale": 2, "output_format": "jpeg"}, (96, 96)),
])
async def test_real_jobs_complete_when_pillows_limit_is_below_their_images(
    pulled: None, tiny_pillow_limit: None, make_context: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    action: str, inp: dict[str, Any], size: tuple[int, int],
) -> None:
    from core.config import load_config

    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    image, limits = config.providers.image, ImageLimits.from_config(config)
    fp32 = {"precision": "fp32"}  # precision: auto measures its paths first (minutes here)
    make = make_context(
        None, config=config, storage=LocalStorage(tmp_path / "artifacts"),
        upscale=RealESRGANUpscaler.from_config("upscale", image.upscale.model_copy(update=fp32),
                                               models_dir=image.models_dir, limits=limits),
        remove_background=RembgRemover.from_config("remove_background", image.rembg.model_copy(update=fp32),
                                                   models_dir=image.models_dir, limits=limits),
    )
    small = base64.b64encode((FIXTURES / "sr_input_48.png").read_bytes()).decode()
    result = await dispatch({"project": "image_tools", "action": action, "input": {**inp, "image": small}}, make)
    assert result["status"] == "COMPLETED", result["error"]
    assert (result["output"]["width"], result["output"]["height"]) == size
