"""A pipeline whose second step fails keeps its first: at each door (the dispatcher, the RunPod
handler, ``swarm run``, the MCP tool) the error comes with the finished step's trace row (provider,
model, latency), the failed step's own row, and the stored image of the finished step as the
partial result.

It was the error alone: the trace held only the dispatch step, no output, though the background
removal had run and its image was in storage."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import use_fake_llm, write_config

from providers.base import ImageAction, ImageConfig, TraceStep

SMALL = Path(__file__).parent / "fixtures" / "sr_input_48.png"
IMAGE = base64.b64encode(SMALL.read_bytes()).decode()
#: an upscaling model that no installed package carries either: only a pull gets it
MISSING = "realesrgan-x4plus"


class Remover:
    """Removes nothing, reports one step as the real remover does (engine, model, latency)."""

    async def process(self, image: bytes, action: ImageAction, config: ImageConfig) -> bytes:
        return (await self.process_traced(image, action, config))[0]

    async def process_traced(self, image: bytes, action: ImageAction,
                             config: ImageConfig) -> tuple[bytes, list[TraceStep]]:
        return image, [TraceStep(step="remove_background", kind="image", provider="rembg-onnx", model="u2netp",
                                 latency_ms=12.5, cost_usd=0.0, detail="device=cpu")]


class NotPulled:
    """An upscaler whose model is not in the (empty) model store: the store's own error."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def process(self, image: bytes, action: ImageAction, config: ImageConfig) -> bytes:
        from providers.image import weights

        weights.path_for(MISSING, self.folder)
        raise AssertionError("the model store has no model")


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every Runtime removes backgrounds with ``Remover`` and upscales with ``NotPulled``; the
    folder of the empty model store."""
    from mcp_helpers import SlowLLM

    folder = tmp_path / "models"
    monkeypatch.setenv("SWARM_MODELS_DIR", str(folder))
    use_fake_llm(monkeypatch, SlowLLM(), remove_background=Remover(), upscale=NotPulled(folder))
    return folder


def expected_error(folder: Path) -> str:
    return f"model {MISSING} is not pulled; run: swarm models pull {MISSING} --models-dir {folder}"


def assert_kept(result: dict[str, Any], folder: Path, job_id: str) -> None:
    """The error, the finished step and the failed one in the trace, the finished step's image."""
    assert result["status"] == "FAILED"
    assert result["error"]["message"] == expected_error(folder), result["error"]
    rows = [(s["step"], s["provider"], s["model"], s["outcome"], s["error_class"]) for s in result["trace"]
            if s["kind"] == "image"]
    assert rows == [("remove_background", "rembg-onnx", "u2netp", "ok", None),
                    ("upscale", "models", MISSING, "error", "ProviderUnavailable")], result["trace"]
    assert result["trace"][0]["latency_ms"] == 12.5
    assert result["output"] == {"partial": True, "steps_done": ["remove_background"], "stopped_at": "upscale",
                                "image_key": f"image_tools/{job_id}/remove_background.png"}, result["output"]


async def test_the_dispatcher_and_the_runpod_handler_keep_the_finished_step(
        fakes: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import handler
    from swarm.runtime import Runtime

    runtime = Runtime(config_file)
    monkeypatch.setattr(handler, "_runtime", runtime)
    job = {"project": "image_tools", "action": "pipeline", "input": {"image": IMAGE}}
    try:
        local = await runtime.run({**job, "job_id": "pipe-local"})
        remote = await handler.handler({"id": "rp-pipe", "input": job})
        stored = await runtime.providers().storage.get("image_tools/rp-pipe/remove_background.png")
    finally:
        await runtime.aclose()
    assert_kept(local, fakes, "pipe-local")
    assert_kept({**remote, "error": json.loads(remote["error"])}, fakes, "rp-pipe")
    assert stored == SMALL.read_bytes()  # the key names the image the background removal stored


async def test_the_same_job_id_failing_again_still_has_the_first_step(fakes: Path, config_file: Path) -> None:
    """A resumed job runs from the failed step: its finished step comes from the checkpoint."""
    from swarm.runtime import Runtime

    runtime = Runtime(config_file)
    job = {"project": "image_tools", "action": "pipeline", "input": {"image": IMAGE}, "job_id": "pipe-again"}
    try:
        await runtime.run(job)
        again = await runtime.run(job)
    finally:
        await runtime.aclose()
    assert_kept(again, fakes, "pipe-again")


async def test_the_mcp_tool_says_what_it_kept(fakes: Path, tmp_path: Path) -> None:
    async with Client(build_server_for(tmp_path)) as client:
        result = await client.call_tool("process_image", {"image": IMAGE})
    text = result.content[0].text
    assert result.is_error
    lines = text.splitlines()
    assert lines[0] == f"ProviderUnavailable: {expected_error(fakes)}", text
    job_id = text.rsplit("job_id: ", 1)[1].split()[0]
    assert lines[1:3] == ["partial result (stopped at upscale):",
                          f"image after remove_background stored as key image_tools/{job_id}/remove_background.png"], text
    assert "remove_background image u2netp ok" in text, text  # the trace line names the finished step
    failed = result.structured_content or {}
    assert failed["output"]["image_key"] == f"image_tools/{job_id}/remove_background.png"
    assert [(s["step"], s["outcome"]) for s in failed["trace"] if s["kind"] == "image"] == [
        ("remove_background", "ok"), ("upscale", "error")]


def build_server_for(tmp_path: Path) -> Any:
    from mcp_server.server import build_server

    return build_server(str(write_config(tmp_path, wait_budget_s=60)))


async def test_the_command_line_shows_the_finished_step_and_its_image(
        fakes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli import main

    argv = ["--config", str(write_config(tmp_path)), "run", "image_tools", "pipeline", "--job-id", "pipe-cli",
            "--input", json.dumps({"path": str(SMALL)})]
    assert await asyncio.to_thread(main, argv) == 1
    said = capsys.readouterr().err
    rows = [line.split() for line in said.splitlines() if line.startswith(("remove_background ", "upscale "))]
    assert [row[:4] for row in rows] == [["remove_background", "image", "u2netp", "ok"],
                                         ["upscale", "image", MISSING, "error"]], said
    assert "partial result (stopped at upscale): image after remove_background stored as key" \
           " image_tools/pipe-cli/remove_background.png" in said, said
    assert f"\nerror: ProviderUnavailable: {expected_error(fakes)}\n" in said
    # the pull first, then the same job id skips the background removal
    assert said.endswith("\nonce that is done, run it again; it resumes after remove_background: swarm --config"
                         f" {tmp_path}/config.yaml run image_tools pipeline --job-id pipe-cli --input"
                         f" '{{\"path\": \"{SMALL}\"}}'\n"), said
