"""An image job says what it is doing when it is not running tiles: waiting for the model another
job holds, or measuring its precision (up to 120 s on a fresh machine). Both used to be silent.

Real upscaler and remover on real weights; the precision measurement runs on a faked CPU with
tiny probes and a scripted clock (tests/test_image_precision.py).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import tempfile
import threading
from pathlib import Path

import pytest
from PIL import Image
from test_image_precision import AMX, IDLE, MODEL, NOT_READ, FakeModel, chooser, upscaler

from providers.base import ImageAction, ImageConfig
from providers.image import pull as weights_pull
from providers.image.backend import listen_to_progress
from providers.image.precision import AutoPrecision, machine_key
from providers.image.precision_cache import DecisionCache
from providers.image.rembg_backend import RembgRemover, RembgSettings
from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
SMALL = (FIXTURES / "sr_input_48.png").read_bytes()
MEASURING = ("measuring the fastest accurate path on this CPU for realesrgan-anime-6b (first run on this machine,"
             " up to 120 s)")


@pytest.fixture(scope="module")
def models_dir():
    assert weights_pull.pull([MODEL, "u2netp"], SHARED)["ok"]
    return str(SHARED)


def png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(FIXTURES / "sr_input_48.png").resize((size, size)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_an_upscale_waiting_for_another_says_so_then_runs(models_dir):
    """Job A holds the model (kept at its first tile until B has spoken); B, on the same provider,
    reports that it waits, then runs once A is done."""
    provider = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir, device="cpu", precision="fp32",
                                                  tile=16, tile_pad=4))
    a_holds, b_waits = threading.Event(), threading.Event()

    def a_tiles(done: int, total: int) -> None:
        a_holds.set()
        if done == 1:
            assert b_waits.wait(60), "B never said it was waiting"

    with listen_to_progress(a_tiles):
        first = asyncio.create_task(provider.process(png(64), ImageAction.UPSCALE, ImageConfig(scale=2)))
    while not a_holds.is_set():
        await asyncio.sleep(0.01)
    messages: list[str] = []

    def b_messages(message: str) -> None:
        messages.append(message)
        b_waits.set()

    with listen_to_progress(messages=b_messages):
        second = asyncio.create_task(provider.process(SMALL, ImageAction.UPSCALE, ImageConfig(scale=2)))
    outputs = await asyncio.gather(first, second)
    assert [Image.open(io.BytesIO(out)).size for out in outputs] == [(128, 128), (96, 96)]
    assert messages and messages[0] == "waiting for another upscale to finish (0 s)"
    assert all(m.startswith("waiting for another upscale to finish (") for m in messages)


async def test_a_background_removal_waiting_for_the_model_says_so(models_dir):
    provider = RembgRemover(RembgSettings(model="u2netp", fallback_models=(), models_dir=models_dir, precision="fp32"))
    messages: list[str] = []
    with provider._lock.hold("another background removal"):  # another job holds the model
        with listen_to_progress(messages=messages.append):
            waiting = asyncio.create_task(provider.process(SMALL, ImageAction.REMOVE_BACKGROUND, ImageConfig()))
        while not messages:
            await asyncio.sleep(0.01)
        assert not waiting.done()
    assert Image.open(io.BytesIO(await waiting)).size == (48, 48)
    assert messages[0] == "waiting for another background removal to finish (0 s)"


async def test_a_job_measuring_its_precision_says_so_before_its_tiles(models_dir, make_context, tmp_path, monkeypatch):
    """``precision: auto`` at the first image job on a fresh machine: the job's progress says it is
    measuring (and for how long at most) before any tile, through the job's own progress."""
    from core.config import load_config

    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    provider = upscaler(models_dir, tmp_path, AMX, costs=[1.0, 0.25])  # fp32 vs bf16 measured, scripted clock
    make = make_context(None, config=config, storage=LocalStorage(tmp_path / "artifacts"), upscale=provider)
    events: list[str] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        events.append(message)

    async def make_with_progress(job_id: str):
        return dataclasses.replace(await make(job_id), progress=progress)

    result = await dispatch({"project": "image_tools", "action": "upscale",
                             "input": {"image": base64.b64encode(SMALL).decode()}}, make_with_progress)
    assert result["status"] == "COMPLETED", result["error"]
    assert f"upscale (1/1): {MEASURING}" in events
    assert events.index(f"upscale (1/1): {MEASURING}") < events.index("upscale (1/1): tile 0/1")
    detail = next(s for s in result["trace"] if s["step"] == "upscale")["detail"]
    assert "(auto: bf16 4.0x" in detail or "precision=bf16 (auto: 4.0x fp32" in detail, detail  # it did measure


def test_a_job_waiting_for_another_process_measuring_says_so(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: IDLE, wait_s=0.2, cpu_share=NOT_READ)
    messages: list[str] = []
    with DecisionCache(tmp_path / "precision.json").measuring(machine_key(AMX), 0), \
            listen_to_progress(messages=messages.append):
        auto.decide(MODEL, "t", model.run)
    assert messages == ["waiting for another process measuring the fastest accurate path on this CPU (up to 0.2 s)"]
    messages.clear()
    with listen_to_progress(messages=messages.append):
        chooser(tmp_path / "fresh", AMX, model).decide(MODEL, "t", model.run)
    assert messages == [MEASURING.replace("realesrgan-anime-6b", MODEL)]
