"""Review 32g: an unknown background-removal model is refused before the job reads or writes
anything, naming ``model`` and the valid ones, as an upscale's unknown model is. It failed inside
the step: a failed job with its input stored, a provider call counted and its cost unknown."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from providers.image.imageio import ImageLimits
from providers.image.rembg_backend import RembgRemover
from providers.image.upscale import RealESRGANUpscaler
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch

SMALL = base64.b64encode((Path(__file__).parent / "fixtures" / "sr_input_48.png").read_bytes()).decode()
BACKGROUND_MODELS = "valid: isnet-anime, u2net, u2netp"


@pytest.fixture
def setup(make_context: Any, tmp_path: Path) -> tuple[Any, LocalStorage]:
    """The real providers as the runtime builds them (no weights are needed: nothing runs)."""
    from core.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    image, limits = config.providers.image, ImageLimits.from_config(config)
    storage = LocalStorage(tmp_path / "artifacts")
    make = make_context(
        None, config=config, storage=storage,
        upscale=RealESRGANUpscaler.from_config("upscale", image.upscale, models_dir=image.models_dir, limits=limits),
        remove_background=RembgRemover.from_config("remove_background", image.rembg, models_dir=image.models_dir,
                                                   limits=limits),
    )
    return make, storage


@pytest.mark.parametrize(("action", "inp", "message"), [
    ("remove_background", {"image": SMALL, "model": "nope"}, f"unknown model 'nope'; {BACKGROUND_MODELS}"),
    ("remove_background", {"images": [{"image": SMALL}], "model": "nope"}, f"unknown model 'nope'; {BACKGROUND_MODELS}"),
    ("pipeline", {"image": SMALL, "model": "nope"}, f"unknown model 'nope'; {BACKGROUND_MODELS}"),
    ("remove_background", {"image": SMALL, "model": "realesrgan-x4plus"},
     f"'realesrgan-x4plus' is not a background-removal model; {BACKGROUND_MODELS}"),
])
async def test_an_unknown_background_model_is_refused_before_the_job_runs(
    setup: tuple[Any, LocalStorage], action: str, inp: dict[str, Any], message: str
) -> None:
    make, storage = setup
    result = await dispatch({"project": "image_tools", "action": action, "input": inp}, make)
    assert result["status"] == "FAILED"
    assert result["error"] == {"type": "InputError", "field": "model", "message": f"model: {message}"}
    assert [(s["step"], s["outcome"]) for s in result["trace"]] == [("dispatch", "error")]  # no step ran
    assert result["totals"]["cost_usd"] == 0.0 and result["totals"]["provider_calls"] == 0
    assert await storage.list() == []  # the input was not stored


async def test_the_upscale_model_is_still_checked_after_a_good_background_model(setup: tuple[Any, LocalStorage]) -> None:
    make, storage = setup
    result = await dispatch({"project": "image_tools", "action": "pipeline",
                             "input": {"image": SMALL, "model": "u2netp", "upscale_model": "u2netp"}}, make)
    assert result["error"]["field"] == "upscale_model" and "'u2netp' is not an upscaling model" in result["error"]["message"]
    assert await storage.list() == []
