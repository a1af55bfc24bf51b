"""``warm``: the image backends load their model and make ``precision: auto``'s decision ahead of
the first job, so that job neither measures nor loads.

Real weights (anime-6B, u2netp) on a faked CPU with a scripted clock, as the precision tests run
them: what is checked is who measures and who loads, counted at ``precision.measure``,
``archs.load`` and ``onnxruntime.InferenceSession``.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_image_precision import AMX, upscale, upscaler
from test_image_rembg_precision import EPYC as EPYC_NO_FP16
from test_image_rembg_precision import FP16_ONLY, SAPPHIRE, alpha, remover

from providers.base import Warmable
from providers.image import archs, precision
from providers.image import pull as weights_pull
from providers.image.precision import AutoPrecision
from providers.image.rembg_backend import RembgRemover
from providers.image.upscale import RealESRGANUpscaler

SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"


@pytest.fixture(scope="module")
def models_dir() -> str:
    assert weights_pull.pull(["realesrgan-anime-6b", "u2netp"], SHARED)["ok"]
    return str(SHARED)


def counted(monkeypatch: pytest.MonkeyPatch, module: ModuleType | type, name: str) -> list[Any]:
    """Calls of ``module.name`` from now on (it still runs)."""
    calls: list[Any] = []
    real: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def never(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} called")

    monkeypatch.setattr(module, name, fail)


def decision_of(cache: Path) -> precision.Decision:
    (value,) = json.loads(cache.read_text())["decisions"].values()
    return precision.Decision(**value)


def test_image_backends_declare_warm():
    assert isinstance(RealESRGANUpscaler.__new__(RealESRGANUpscaler), Warmable)
    assert isinstance(RembgRemover.__new__(RembgRemover), Warmable)


# --- the upscaler ----------------------------------------------------------------------------------


async def test_upscaler_warm_decides_and_loads_so_the_first_job_does_neither(models_dir, tmp_path, monkeypatch):
    measures = counted(monkeypatch, precision, "measure")
    loads = counted(monkeypatch, archs, "load")
    provider = upscaler(models_dir, tmp_path, AMX, costs=[1.0, 0.25])
    await provider.warm()
    assert len(measures) == 1 and len(loads) == 1
    decided = decision_of(tmp_path / "precision.json")  # cached for the next process, too

    _, detail = await upscale(provider)
    assert f"precision={decided.describe()}" in detail
    assert len(measures) == 1 and len(loads) == 1  # the job measured nothing and loaded nothing


async def test_upscaler_warm_reads_a_cached_decision_without_measuring(models_dir, tmp_path, monkeypatch):
    first = upscaler(models_dir, tmp_path, AMX, costs=[1.0, 0.25])
    await first.warm()
    never(monkeypatch, precision, "measure")  # a fresh process on the same machine: the cache answers
    again = upscaler(models_dir, tmp_path, AMX)
    await again.warm()
    _, detail = await upscale(again)
    assert f"precision={decision_of(tmp_path / 'precision.json').describe()}" in detail


async def test_pinned_upscaler_warm_loads_without_measuring(models_dir, tmp_path, monkeypatch):
    never(monkeypatch, precision, "measure")
    loads = counted(monkeypatch, archs, "load")
    provider = upscaler(models_dir, tmp_path, AMX, "fp32")
    await provider.warm()
    assert len(loads) == 1
    _, detail = await upscale(provider)
    assert "precision=fp32 (pinned in config)" in detail and len(loads) == 1
    assert not (tmp_path / "precision.json").exists()


def gate_measure(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event, list[Any]]:
    """Make ``precision.measure`` set ``started``, wait for ``release``, then measure; the list
    holds one entry per call."""
    started, release = threading.Event(), threading.Event()
    real_measure = precision.measure
    measures: list[Any] = []

    def gated(*args: Any, **kwargs: Any) -> precision.Decision:
        measures.append(args)
        started.set()
        assert release.wait(30)
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(precision, "measure", gated)
    return started, release, measures


async def test_a_job_arriving_during_the_warm_measurement_waits_for_it(models_dir, tmp_path, monkeypatch):
    """The warm-up's thread holds the decision; a job in another thread waits on the same lock
    and runs the decided path: measured once in all."""
    import asyncio
    import threading

    started, release, measures = gate_measure(monkeypatch)
    provider = upscaler(models_dir, tmp_path, AMX, costs=[1.0, 0.25])
    warm = threading.Thread(target=asyncio.run, args=(provider.warm(),), name="warm")
    warm.start()
    try:
        assert await asyncio.to_thread(started.wait, 30)
        job = asyncio.create_task(upscale(provider))
        await asyncio.sleep(0.2)  # let the job reach the lock (the outcome is the same if it has not)
        release.set()
        _, detail = await job
    finally:
        release.set()
        warm.join(30)
    assert len(measures) == 1  # the warm-up's, begun before the job arrived
    assert f"precision={decision_of(tmp_path / 'precision.json').describe()}" in detail


# --- the background remover ------------------------------------------------------------------------


def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import onnxruntime

    return counted(monkeypatch, onnxruntime, "InferenceSession")


async def test_remover_warm_decides_and_loads_so_the_first_job_does_neither(models_dir, tmp_path, monkeypatch):
    measures = counted(monkeypatch, precision, "measure")
    opened = sessions(monkeypatch)
    provider = remover(models_dir, tmp_path, SAPPHIRE, paths=FP16_ONLY, costs=[1.0, 0.25])
    await provider.warm()
    assert len(measures) == 1
    warmed_sessions = len(opened)  # the job's session and the one-thread one the measurement used
    assert warmed_sessions >= 1

    _, detail = await alpha(provider)
    assert f"path={decision_of(tmp_path / 'precision.json').describe()}" in detail
    assert len(measures) == 1 and len(opened) == warmed_sessions


async def test_pinned_remover_warm_loads_without_measuring(models_dir, tmp_path, monkeypatch):
    never(monkeypatch, precision, "measure")
    opened = sessions(monkeypatch)
    provider = remover(models_dir, tmp_path, EPYC_NO_FP16, "fp32")
    await provider.warm()
    assert len(opened) == 1
    _, detail = await alpha(provider)
    assert "path=fp32 (pinned in config)" in detail and len(opened) == 1
    assert not (tmp_path / "precision.json").exists()


def missing_except(keep: str, models_dir: str) -> Callable[..., Path]:
    """``pull.ensure`` where only ``keep`` is pulled (in ``models_dir``)."""
    from core.errors import ProviderUnavailable

    ensure = weights_pull.ensure

    def patched(name: str, folder: str | None = None) -> Path:
        if name == keep:
            return ensure(name, models_dir)
        raise ProviderUnavailable("rembg-onnx", f"model {name} is not in {folder}; run: swarm models pull {name}")

    return patched


async def test_remover_warm_skips_a_model_that_is_not_pulled_and_warms_the_fallback(models_dir, tmp_path, monkeypatch):
    from providers.image.rembg_backend import RembgSettings

    opened = sessions(monkeypatch)
    monkeypatch.setattr(weights_pull, "ensure", missing_except("u2netp", models_dir))
    settings = RembgSettings(model="isnet-anime", fallback_models=("u2netp",), models_dir=str(tmp_path), precision="fp32")
    provider = RembgRemover(settings, auto_precision=AutoPrecision(tmp_path / "precision.json", lambda: EPYC_NO_FP16))
    await provider.warm()
    assert len(opened) == 1  # u2netp's
    data, steps = await provider.process_traced(*_photo_job())
    assert [(step.model, step.outcome) for step in steps] == [("isnet-anime", "skipped"), ("u2netp", "ok")]
    assert len(opened) == 1


def _photo_job() -> tuple[bytes, Any, Any]:
    from test_image_rembg_precision import PHOTO

    from providers.base import ImageAction, ImageConfig

    return PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig()


async def test_remover_warm_with_no_model_that_loads_raises(models_dir, tmp_path, monkeypatch):
    from core.errors import ProviderUnavailable
    from providers.image.rembg_backend import RembgSettings

    monkeypatch.setattr(weights_pull, "ensure", missing_except("none", models_dir))
    settings = RembgSettings(model="u2netp", fallback_models=(), models_dir=str(tmp_path), precision="fp32")
    provider = RembgRemover(settings, auto_precision=AutoPrecision(tmp_path / "precision.json", lambda: EPYC_NO_FP16))
    with pytest.raises(ProviderUnavailable, match="swarm models pull u2netp") as failed:  # not pulled: the pull to run
        await provider.warm()
    (attempt,) = failed.value.trace  # type: ignore[attr-defined]
    assert attempt["outcome"] == "skipped" and "swarm models pull u2netp" in attempt["detail"]
