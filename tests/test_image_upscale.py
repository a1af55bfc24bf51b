"""Upscaler on real Real-ESRGAN weights: agreement with ncnn, tiling, alpha, scales, limits."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError, ProviderUnavailable
from providers.base import ImageAction, ImageConfig, ImageProvider
from providers.image import pull as weights_pull
from providers.image import weights
from providers.image.imageio import ImageLimits
from providers.image.tiling import plan_tiles
from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"


@pytest.fixture(scope="module")
def models_dir():
    report = weights_pull.pull(["realesrgan-anime-6b", "realesr-animevideov3-x4"], SHARED)
    assert report["ok"], report
    return str(SHARED)


def upscaler(models_dir, **kw) -> RealESRGANUpscaler:
    """fp32 pinned: these tests hold the bit-level agreement that ``precision: fp32`` promises
    (``auto`` is tests/test_image_precision.py)."""
    limits = kw.pop("limits", None)
    kw.setdefault("precision", "fp32")
    return RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir, device="cpu", **kw), limits)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize(
    ("model", "reference"),
    [
        ("realesrgan-anime-6b", "sr_ncnn_anime6b_x4.png"),
        ("realesr-animevideov3-x4", "sr_ncnn_animevideov3_x4.png"),
    ],
)
async def test_agrees_with_ncnn_within_one_level(models_dir, model, reference):
    provider = upscaler(models_dir, tile=0)
    assert isinstance(provider, ImageProvider)
    data, (step,) = await provider.process_traced(
        (FIXTURES / "sr_input_48.png").read_bytes(), ImageAction.UPSCALE, ImageConfig(model=model, scale=4)
    )
    out = pixels(data).astype(int)
    ref = np.asarray(Image.open(FIXTURES / reference)).astype(int)
    assert out.shape == ref.shape == (192, 192, 3)
    assert np.abs(out - ref).max() <= 1
    assert step.model == model and "device=cpu" in step.detail and "tiles=1" in step.detail
    assert "precision=fp32 (pinned in config)" in step.detail


async def test_tiled_output_matches_untiled_and_overlap_matters(models_dir):
    src = (FIXTURES / "sr_input_48.png").read_bytes()
    whole = pixels(
        await upscaler(models_dir, tile=0).process(src, ImageAction.UPSCALE, ImageConfig())
    ).astype(int)
    diffs = {}
    for pad in (2, 16):
        data, (step,) = await upscaler(models_dir, tile=16, tile_pad=pad).process_traced(
            src, ImageAction.UPSCALE, ImageConfig()
        )
        assert "tiles=9" in step.detail
        diffs[pad] = np.abs(whole - pixels(data).astype(int))
    # RRDBNet's receptive field is wider than any pad, so tiles never match exactly; on this
    # detailed face crop pad 16 gives ~0.9 levels mean error, pad 2 ~6 (visible seams).
    assert diffs[16].mean() < 1.5 and np.percentile(diffs[16], 99) <= 10
    assert diffs[2].mean() > 4 * diffs[16].mean()


def test_tile_plan_covers_every_pixel_once():
    tiles = plan_tiles(100, 37, 32, 8)
    cover = np.zeros((37, 100), int)
    for t in tiles:
        x0, y0, x1, y1 = t.keep
        cover[y0:y1, x0:x1] += 1
        px0, py0, px1, py1 = t.padded
        assert px0 <= x0 and py0 <= y0 and px1 >= x1 and py1 >= y1
    assert (cover == 1).all()


async def test_alpha_kept_and_scale_two(models_dir):
    rgba = Image.open(FIXTURES / "sr_input_48.png").convert("RGBA")
    alpha = np.zeros((48, 48), np.uint8)
    alpha[:, 24:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    data, (step,) = await upscaler(models_dir, tile=0).process_traced(
        buf.getvalue(), ImageAction.UPSCALE, ImageConfig(scale=2, output_format="png")
    )
    out = pixels(data)
    assert out.shape == (96, 96, 4)
    assert out[:, :40, 3].max() == 0 and out[:, 56:, 3].min() == 255
    assert "alpha=kept" in step.detail and "scale=2" in step.detail


async def test_jpeg_and_webp_outputs(models_dir):
    src = (FIXTURES / "sr_input_48.png").read_bytes()
    provider = upscaler(models_dir, tile=0)
    jpeg = await provider.process(src, ImageAction.UPSCALE, ImageConfig(scale=3, output_format="jpeg"))
    assert jpeg[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(jpeg)).size == (144, 144)
    webp = await provider.process(src, ImageAction.UPSCALE, ImageConfig(output_format="webp"))
    assert Image.open(io.BytesIO(webp)).size == (192, 192)


async def test_output_pixel_cap_refused_before_running(models_dir):
    provider = upscaler(models_dir, limits=ImageLimits(max_output_pixels=30_000))
    with pytest.raises(InputError, match="limit is 30,000 ") as info:
        await provider.process(
            (FIXTURES / "sr_input_48.png").read_bytes(), ImageAction.UPSCALE, ImageConfig()
        )
    assert info.value.field == "scale"


async def test_model_that_cannot_be_prepared_names_pull_command(tmp_path, monkeypatch):
    # missing, and its weights package is not installed (another version): nothing to prepare
    # it from offline (an empty folder with the package installed works: test_models_first_use)
    import dataclasses

    spec = weights.MODELS["realesrgan-anime-6b"]
    elsewhere = dataclasses.replace(spec.sources[0], version="0.0.0")
    monkeypatch.setitem(weights.MODELS, spec.name, dataclasses.replace(spec, sources=(elsewhere, *spec.sources[1:])))
    provider = upscaler(str(tmp_path))
    with pytest.raises(ProviderUnavailable, match="not installed; run: swarm models pull realesrgan-anime-6b"):
        await provider.process(
            (FIXTURES / "sr_input_48.png").read_bytes(), ImageAction.UPSCALE, ImageConfig()
        )


async def test_bad_scale_and_action(models_dir):
    provider = upscaler(models_dir)
    with pytest.raises(InputError, match="scale"):
        await provider.process(
            (FIXTURES / "sr_input_48.png").read_bytes(), ImageAction.UPSCALE, ImageConfig(scale=8)
        )
    with pytest.raises(InputError, match="only does upscale"):
        await provider.process(b"", ImageAction.REMOVE_BACKGROUND, ImageConfig())


async def test_cancelling_an_upscale_stops_its_thread_between_tiles_and_frees_the_model(models_dir):
    """A cancelled job's worker thread stops at its next tile: it no longer holds the model for
    the whole image, so the next upscale runs at once instead of after every remaining tile."""
    import asyncio

    from providers.image.backend import listen_to_progress

    buffer = io.BytesIO()
    Image.open(FIXTURES / "sr_input_48.png").resize((128, 128)).save(buffer, "PNG")
    provider = upscaler(models_dir, tile=16, tile_pad=4)  # 64 tiles
    reported: list[tuple[int, int]] = []
    with listen_to_progress(lambda done, total: reported.append((done, total))):
        running = asyncio.create_task(
            provider.process_traced(buffer.getvalue(), ImageAction.UPSCALE, ImageConfig(scale=4))
        )
    while len(reported) < 3:  # 0 (before the first tile), then two tiles done
        await asyncio.sleep(0.01)
    running.cancel()
    done_at_cancel = reported[-1][0]
    with pytest.raises(asyncio.CancelledError):
        await running

    # the same provider (its model lock) is free for the next job: one small untiled image
    data, (step,) = await provider.process_traced(
        (FIXTURES / "sr_input_48.png").read_bytes(), ImageAction.UPSCALE, ImageConfig(scale=2)
    )
    assert Image.open(io.BytesIO(data)).size == (96, 96)
    assert {total for _, total in reported} == {64}
    # at most the tile under way when the cancel came was finished; the rest never ran
    assert reported[-1][0] <= done_at_cancel + 1 < 64, reported[-3:]


@pytest.mark.parametrize("precision", ["fp32", "ncnn"])
async def test_a_tiny_input_keeps_its_colour(models_dir, precision):
    """A reviewer's 1x1 (200, 50, 50) came back as (125, 65, 51) on average: the network pads with
    zeros, and on so small an input the border was all there was. It is now grown by its own edge
    pixels to ``MIN_SIDE`` and its part cut out of the output."""
    from providers.image.upscale import MIN_SIDE, grown_to_min_side

    provider = upscaler(models_dir, precision=precision)
    for size, colour in (((1, 1), (200, 50, 50)), ((2, 1), (10, 20, 30)), ((20, 3), (90, 160, 220))):
        buffer = io.BytesIO()
        Image.new("RGB", size, colour).save(buffer, "PNG")
        out = np.asarray(Image.open(io.BytesIO(await provider.process(buffer.getvalue(), ImageAction.UPSCALE, ImageConfig()))))
        assert out.shape == (size[1] * 4, size[0] * 4, 3)
        assert np.abs(out.reshape(-1, 3).mean(0) - colour).max() <= 3, (size, out.reshape(-1, 3).mean(0))
    grown, offset = grown_to_min_side(np.zeros((3, 20, 3), np.uint8))
    assert grown.shape == (MIN_SIDE, 20, 3) and offset == (6, 0)
