"""The worker's warm-up (``handler.start_warm_up``): ``llm`` before the worker loop, the image
models beside it, so no job waits for a model it does not use, an image job arriving meanwhile
waits for its own, and a failed warm-up is logged and costs nothing but the first job's load."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_image_precision import AMX, FIXTURES, upscaler
from test_image_warm import gate_measure, models_dir  # noqa: F401 (models_dir: a fixture)

import handler
from core.config import load_config
from core.errors import ConfigError, ProviderUnavailable
from providers.base import ImageAction, ImageConfig, TraceStep
from providers.image import precision
from providers.image.backend import SingleActionBackend
from providers.testing import FakeLLM
from swarm import worker_warm
from swarm.runtime import Runtime

SECRET = "sk-warmup0123456789abcdefXYZ"
SMALL = (FIXTURES / "sr_input_48.png").read_bytes()
DELEGATE = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi.", "kind": "critical"}}
UPSCALE = {"project": "image_tools", "action": "upscale", "input": {"image": base64.b64encode(SMALL).decode(), "inline": True}}


class GatedUpscaler(SingleActionBackend):
    """An identity "upscaler" whose warm-up waits for ``gate``, then fails with ``fail`` if set."""

    action = ImageAction.UPSCALE
    name = "gated-fake"

    def __init__(self, fail: Exception | None = None) -> None:
        self.gate, self.warming, self.fail = threading.Event(), threading.Event(), fail
        self.warmed = False

    def _warm_sync(self) -> None:
        self.warming.set()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        if self.fail is not None:
            raise self.fail
        self.warmed = True

    def _process_sync(self, image: bytes, config: ImageConfig) -> tuple[bytes, list[TraceStep]]:
        return image, [TraceStep(step="upscale", kind="image", provider=self.name, latency_ms=0.0)]


@pytest.fixture
def worker_config(config_file: Path) -> Path:
    """The shipped config with ``worker.warm: [llm, upscale]`` and no local LLM server to start."""
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    config["worker"]["warm"] = ["llm", "upscale"]
    for spec in config["models"].values():
        spec.pop("local_server", None)
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    return config_file


@pytest.fixture
def worker(worker_config: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Runtime]:
    """Makes ``handler``'s runtime one over ``worker_config`` with the given providers (each
    test closes it on its own event loop)."""

    def make(**providers: Any) -> Runtime:
        runtime = Runtime(worker_config, providers=providers)
        monkeypatch.setattr(handler, "_runtime", runtime)
        return runtime

    return make


async def run_job(body: dict[str, Any]) -> dict[str, Any]:
    return await handler.handler({"id": "local_test", "input": body})


def test_config_accepts_the_image_kinds_and_names_the_valid_ones_for_a_bad_one(config_file: Path):
    assert load_config(config_file).worker.warm == ["llm", "upscale", "remove_background"]  # the shipped one
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    config["worker"]["warm"] = ["llm", "rembg"]
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ConfigError) as bad:
        load_config(config_file)
    assert "worker.warm[1]" in str(bad.value)
    assert all(f"'{kind}'" in str(bad.value) for kind in ("llm", "upscale", "remove_background"))


async def test_worker_takes_jobs_while_the_image_warm_up_is_still_running(worker):
    slow = GatedUpscaler()
    runtime = worker(upscale=slow, llm=FakeLLM(["hello"]))
    try:
        thread = await asyncio.to_thread(handler.start_warm_up)  # as main() calls it: returns at once
        assert thread is not None and await asyncio.to_thread(slow.warming.wait, 30)
        result = await run_job(DELEGATE)  # the first job: not an image job, and not held back
        assert result["status"] == "COMPLETED", result["error"]
        assert result["output"]["text"] == "hello"
        assert thread.is_alive() and not slow.warmed  # the warm-up is still waiting for its gate
        slow.gate.set()
        await asyncio.to_thread(thread.join, 30)
        assert slow.warmed and not thread.is_alive()
    finally:
        slow.gate.set()
        await runtime.aclose()


async def test_the_image_warm_up_waits_until_no_job_has_run_for_a_moment(worker, monkeypatch: pytest.MonkeyPatch):
    """A job in flight holds the warm-up back (it would take the CPU from the job); the warm-up
    starts WARM_IDLE_S after the last job ended."""
    from providers.testing import FunctionLLM

    monkeypatch.setattr(worker_warm, "WARM_IDLE_S", 0.3)
    slow = GatedUpscaler()
    slow.gate.set()
    answer_now = asyncio.Event()

    async def answer(messages: Any, config: Any) -> str:
        await answer_now.wait()
        return "hello"

    runtime = worker(upscale=slow, llm=FunctionLLM(answer))
    try:
        job = asyncio.create_task(run_job(DELEGATE))
        await asyncio.sleep(0.1)  # the job is in flight
        thread = await asyncio.to_thread(handler.start_warm_up)
        assert thread is not None
        assert not await asyncio.to_thread(slow.warming.wait, 1.0)  # held back while the job runs
        answer_now.set()
        result = await job
        ended = asyncio.get_running_loop().time()
        assert result["status"] == "COMPLETED", result["error"]
        assert await asyncio.to_thread(slow.warming.wait, 10)
        assert asyncio.get_running_loop().time() - ended >= 0.25  # a quiet moment first
        await asyncio.to_thread(thread.join, 30)
        assert slow.warmed
    finally:
        answer_now.set()
        await runtime.aclose()


async def test_failed_warm_up_is_logged_redacted_and_the_worker_goes_on(worker, caplog: pytest.LogCaptureFixture):
    broken = GatedUpscaler(fail=ProviderUnavailable("gated-fake", f"weights fetch refused for key {SECRET}"))
    broken.gate.set()
    runtime = worker(upscale=broken, llm=FakeLLM(["hello"]))
    caplog.set_level(logging.INFO, logger="swarm.handler")
    try:
        thread = await asyncio.to_thread(handler.start_warm_up)
        assert thread is not None
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive()
        (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "background warm-up of upscale failed" in failure.getMessage()
        assert "ProviderUnavailable" in failure.getMessage() and SECRET not in caplog.text
        result = await run_job(UPSCALE)  # the kind whose warm-up failed still serves
        assert result["status"] == "COMPLETED", result["error"]
    finally:
        await runtime.aclose()


async def test_an_upscale_job_during_the_warm_up_waits_for_its_decision(worker, models_dir, tmp_path, monkeypatch):  # noqa: F811
    """The real upscaler: the job arrives while the warm-up measures; it runs the decided path
    and measures nothing itself."""
    started, release, measures = gate_measure(monkeypatch)
    runtime = worker(upscale=upscaler(models_dir, tmp_path, AMX, costs=[1.0, 0.25]), llm=FakeLLM(["hello"]))
    try:
        thread = await asyncio.to_thread(handler.start_warm_up)
        assert thread is not None and await asyncio.to_thread(started.wait, 30)
        job = asyncio.create_task(run_job(UPSCALE))
        await asyncio.sleep(0.2)  # let the job reach the lock (the outcome is the same if it has not)
        release.set()
        result = await job
        await asyncio.to_thread(thread.join, 60)
    finally:
        release.set()
        await runtime.aclose()
    assert result["status"] == "COMPLETED", result["error"]
    assert len(measures) == 1  # the warm-up's
    (decision,) = json.loads((tmp_path / "precision.json").read_text())["decisions"].values()
    (step,) = [s for s in result["trace"] if s["step"] == "upscale" and s["kind"] == "image"]
    assert f"precision={precision.Decision(**decision).describe()}" in step["detail"]


def test_the_llm_warm_up_imports_litellm_and_what_its_first_failover_imports(worker_config: Path) -> None:
    """In a fresh interpreter (this one imported litellm long ago): after the ``llm`` warm-up the
    first job's first call pays no import, and its trace's latency is the provider's own."""
    import subprocess
    import sys

    code = ("import asyncio, sys, handler\n"
            "assert 'litellm' not in sys.modules\n"
            "asyncio.run(handler.warm_up(['llm']))\n"
            "print('litellm' in sys.modules, 'fastapi.exceptions' in sys.modules)\n")
    env = {**__import__("os").environ, "SWARM_CONFIG": str(worker_config)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(handler.__file__).parent, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]
