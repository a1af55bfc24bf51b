"""An output longer a side than its format can encode (WebP 16,383 pixels, JPEG 65,500) is refused
before the model runs, naming ``output_format``, the limit and what fits; in a batch that image fails
alone. It crashed the job as InternalError after the model had run (a batch lost its good images)."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_helpers import EchoImages
from PIL import Image

from core.config import load_config
from core.errors import InputError
from providers.image import pull as weights_pull
from providers.image.imageio import ImageLimits, encode
from providers.image.rembg_backend import RembgRemover
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch

SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
#: the longest side each encoder writes, found by encoding (libwebp, libjpeg)
ENCODERS = {"webp": 16_383, "jpeg": 65_500}


def png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 10)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(("fmt", "limit"), ENCODERS.items())
def test_an_image_past_the_encoders_side_is_an_input_error_naming_the_limit(fmt: str, limit: int) -> None:
    for size in ((limit, 1), (1, limit)):
        assert encode(Image.new("RGB", size), fmt)  # at the limit it encodes
    with pytest.raises(InputError) as info:  # it was ValueError('encoding error 5') / OSError('broken data stream')
        encode(Image.new("RGB", (1, limit + 1)), fmt)
    assert info.value.field == "output_format"
    assert f"output would be 1x{limit + 1}; output_format {fmt} takes at most {limit:,} pixels a side" in str(info.value)


async def test_an_upscale_past_webps_side_is_refused_before_the_model_runs(make_context: Any, tmp_path: Path) -> None:
    echo = EchoImages()
    storage = LocalStorage(tmp_path / "artifacts")
    make = make_context(None, storage=storage, upscale=echo, remove_background=echo)
    result = await dispatch({"project": "image_tools", "action": "upscale",
                             "input": {"image": png(4100, 4), "scale": 4, "output_format": "webp"}}, make)
    assert result["status"] == "FAILED", result
    assert result["error"] == {
        "type": "InputError", "field": "output_format",
        "message": "output_format: output would be 16400x16 (input 4100x4 at x4); output_format webp takes at most"
                   " 16,383 pixels a side: give output_format png or jpeg, or scale 3 (12300x12)"}
    assert echo.seen == [] and await storage.list() == []  # refused before the model and before any write

    cut = await dispatch({"project": "image_tools", "action": "remove_background",
                          "input": {"image": png(70_000, 2), "output_format": "jpeg"}}, make)
    assert cut["status"] == "FAILED", cut
    assert cut["error"]["field"] == "output_format"
    assert cut["error"]["message"].endswith("jpeg takes at most 65,500 pixels a side: give output_format png")
    assert echo.seen == []


@pytest.fixture
def real_remover(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, RembgRemover]:
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["image"]["rembg"]["precision"] = "fp32"  # onnxruntime: nothing to measure first
    config_file.write_text(yaml.safe_dump(raw))
    config = load_config(config_file)
    image = config.providers.image
    return config, RembgRemover.from_config("remove_background", image.rembg, models_dir=image.models_dir,
                                            limits=ImageLimits.from_config(config))


async def test_in_a_batch_the_image_too_wide_for_webp_fails_alone(
    make_context: Any, tmp_path: Path, real_remover: tuple[Any, RembgRemover]
) -> None:
    config, remover = real_remover
    make = make_context(None, config=config, storage=LocalStorage(tmp_path / "artifacts"), remove_background=remover)
    result = await dispatch({"project": "image_tools", "action": "remove_background",
                             "input": {"images": [{"image": png(40, 30)}, {"image": png(17_000, 8)}],
                                       "output_format": "webp"}}, make)
    assert result["status"] == "COMPLETED", result["error"]
    good, wide = result["output"]["results"]
    assert good["format"] == "webp" and (good["width"], good["height"]) == (40, 30)
    assert wide["error"] == {
        "type": "InputError", "field": "images[1].image",
        "message": "images[1].image: output would be 17000x8; output_format webp takes at most 16,383 pixels a side:"
                   " give output_format png or jpeg"}
    assert (result["output"]["succeeded"], result["output"]["failed"]) == (1, 1)
    # the wide image never reached the model: its one step is the refusal
    ran = [step for step in result["trace"] if step["step"] == "remove_background"]
    assert len(ran) == 1 and ran[0]["outcome"] == "ok" and ran[0]["detail"].startswith("index=0 ")
