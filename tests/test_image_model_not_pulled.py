"""A background-removal model that is not pulled, asked for at each door (MCP tool, ``swarm run``,
the RunPod handler): one short error, what is missing and the command that gets it, said once.

It was "AllProvidersFailed: remove_background: every backend failed: isnet-anime: skipped
ProviderUnavailable models (isnet-anime): model isnet-anime is not in DIR and it only comes from a
download (needs internet once); run: swarm models pull isnet-anime (4 ms)", then the same again as
the MCP text's "attempts:" line, or the command line's trace note."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import write_config

import handler
from mcp_server.server import build_server
from swarm.runtime import Runtime

SMALL = Path(__file__).parent / "fixtures" / "sr_input_48.png"
IMAGE = base64.b64encode(SMALL.read_bytes()).decode()


@pytest.fixture
def empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model store: nothing pulled (u2netp would be made from its installed package)."""
    folder = tmp_path / "models"
    monkeypatch.setenv("SWARM_MODELS_DIR", str(folder))
    return folder


def expected(name: str, folder: Path) -> str:
    return f"model {name} is not pulled (needs internet once); run: swarm models pull {name} --models-dir {folder}"


async def test_the_mcp_tools_say_it_once_with_the_pull_command(empty_store: Path, tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        for tool in ("remove_background", "process_image"):
            result = await client.call_tool(tool, {"image": IMAGE, "model": "isnet-anime"})
            text = result.content[0].text
            assert result.is_error
            assert text.splitlines()[0] == f"ProviderUnavailable: {expected('isnet-anime', empty_store)}", text
            assert text.count("swarm models pull") == 1, text
            assert "skipped: isnet-anime" in text  # the trace line still names the attempt
            assert result.structured_content["trace"][0]["model"] == "isnet-anime"

        # the fallback (isnet-anime) is missing too: the model asked for is the one to pull
        both = await client.call_tool("remove_background", {"images": [{"image": IMAGE}], "model": "u2net"})
        assert both.content[0].text.splitlines()[0] == f"ProviderUnavailable: {expected('u2net', empty_store)}"
        assert "skipped: isnet-anime, u2net" in both.content[0].text


async def test_the_command_line_says_it_once(empty_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli import main

    argv = ["--config", str(write_config(tmp_path)), "run", "image_tools", "remove_background",
            "--input", json.dumps({"path": str(SMALL), "model": "isnet-anime"})]
    assert await asyncio.to_thread(main, argv) == 1
    said = capsys.readouterr().err
    assert f"\nerror: ProviderUnavailable: {expected('isnet-anime', empty_store)}\n" in said
    assert said.count("run: swarm models pull") == 1, said  # the trace row points to the error line, no note
    assert "run it again" not in said  # a resume fails the same way before the pull, and nothing had finished
    row = next(line for line in said.splitlines() if line.startswith("remove_background "))
    assert "skipped (ProviderUnavailable)" in row and row.endswith("… (error below)")


async def test_a_runpod_job_says_it_once(empty_store: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = Runtime(config_file)
    monkeypatch.setattr(handler, "_runtime", runtime)
    job: dict[str, Any] = {"project": "image_tools", "action": "remove_background",
                           "input": {"image": IMAGE, "model": "isnet-anime"}}
    try:
        result = await handler.handler({"id": "rp-missing", "input": job})
    finally:
        await runtime.aclose()
    error = json.loads(result["error"])
    carried = error.pop("envelope")  # the rest of the envelope rides in the string (swarm.envelope.for_runpod)
    assert error == {"type": "ProviderUnavailable", "message": expected("isnet-anime", empty_store)}
    assert "error" not in carried and carried["trace"] == result["trace"]  # the message is not carried twice
    assert [(s["model"], s["outcome"]) for s in result["trace"] if s["kind"] == "image"] == [("isnet-anime", "skipped")]


def test_the_pull_command_names_the_folder_unless_a_plain_terminal_pulls_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started with its own SWARM_HOME (Claude Desktop's env) reads another store than a
    terminal's ``swarm models pull`` fills: the bare command would leave the job failing."""
    from providers.image.weights import pull_command

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert pull_command("u2net", tmp_path / ".cache" / "runpod-swarm" / "models") == "swarm models pull u2net"
    assert pull_command("u2net", tmp_path / "my models", force=True) == (
        f"swarm models pull u2net --force --models-dir '{tmp_path}/my models'")
