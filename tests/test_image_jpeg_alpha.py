"""``output_format: jpeg`` has no transparency: the job still runs (the transparent parts come out
white), and says so: a warning in the result, and a trace that does not claim the alpha was kept.
It dropped a cut-out's transparency without a word, and an upscale's trace said ``alpha=kept``."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image, ImageDraw

from core.config import load_config
from providers.image import pull as weights_pull
from providers.image.imageio import ImageLimits
from providers.image.rembg_backend import RembgRemover
from providers.image.upscale import RealESRGANUpscaler
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch

SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
WARNING = ("output_format jpeg has no transparency: the transparent parts were filled white;"
           " give output_format png or webp to keep them")


def half_transparent() -> str:
    """40x30, red; its left half fully transparent."""
    img = Image.new("RGBA", (40, 30), (255, 0, 0, 255))
    ImageDraw.Draw(img).rectangle([0, 0, 19, 29], fill=(0, 0, 255, 0))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def job(make_context: Any, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``job(action, input)`` -> the dispatched result, on the real upscaler and background remover
    (fp32 pinned: nothing is measured first); ``job.storage`` holds the outputs."""
    assert weights_pull.pull(["realesrgan-anime-6b", "u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["image"]["upscale"]["precision"] = "fp32"
    raw["providers"]["image"]["rembg"]["precision"] = "fp32"
    config_file.write_text(yaml.safe_dump(raw))
    config = load_config(config_file)
    image, limits = config.providers.image, ImageLimits.from_config(config)
    storage = LocalStorage(tmp_path / "artifacts")
    make = make_context(
        None, config=config, storage=storage,
        upscale=RealESRGANUpscaler.from_config("upscale", image.upscale, models_dir=image.models_dir, limits=limits),
        remove_background=RembgRemover.from_config("remove_background", image.rembg, models_dir=image.models_dir,
                                                   limits=limits),
    )

    async def run(action: str, inp: dict[str, Any]) -> dict[str, Any]:
        result = await dispatch({"project": "image_tools", "action": action, "input": inp}, make)
        assert result["status"] == "COMPLETED", result["error"]
        return result

    run.storage = storage  # type: ignore[attr-defined]
    return run


def details(result: dict[str, Any], step: str) -> list[str]:
    return [s["detail"] for s in result["trace"] if s["step"] == step]


async def test_a_jpeg_cut_out_and_upscale_say_their_transparency_was_filled_white(job: Any) -> None:
    cut = await job("remove_background", {"image": half_transparent(), "output_format": "jpeg"})
    assert cut["output"]["warnings"] == [WARNING]
    assert [d for d in details(cut, "remove_background") if "alpha=flattened_on_white(jpeg)" in d], cut["trace"]
    stored = Image.open(io.BytesIO(await job.storage.get(cut["output"]["image_key"])))
    assert stored.mode == "RGB" and min(stored.getpixel((2, 2))) > 240  # the job still works: white where it hid

    up = await job("upscale", {"image": half_transparent(), "scale": 2, "output_format": "jpeg"})
    assert up["output"]["warnings"] == [WARNING]
    [detail] = details(up, "upscale")
    assert "alpha=flattened_on_white(jpeg)" in detail and "alpha=kept" not in detail

    batch = await job("remove_background", {"images": [{"image": half_transparent()}], "output_format": "jpeg"})
    assert batch["output"]["warnings"] == [WARNING]


async def test_no_warning_where_nothing_was_transparent_or_the_format_keeps_it(job: Any) -> None:
    kept = await job("upscale", {"image": half_transparent(), "scale": 2, "output_format": "png"})
    assert "warnings" not in kept["output"] and "alpha=kept" in details(kept, "upscale")[0]
    webp = await job("remove_background", {"image": half_transparent(), "output_format": "webp"})
    assert "warnings" not in webp["output"]
    on_green = await job("remove_background", {"image": half_transparent(), "output_format": "jpeg",
                                               "background_color": [0, 255, 0]})
    assert "warnings" not in on_green["output"]
    assert not [d for d in details(on_green, "remove_background") if "alpha=" in d]
    mask = await job("remove_background", {"image": half_transparent(), "output_format": "jpeg", "only_mask": True})
    assert "warnings" not in mask["output"]
