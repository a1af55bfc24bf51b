"""``background_color`` at every door (MCP tool, ``swarm run``, the RunPod handler): an RGB triple is
an opaque fill, RGBA is taken as given, and anything else is one sentence naming the field, what it
takes and what it got (an RGB triple was "background_color.3: Field required")."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import EchoImages, use_echo_images, write_config
from test_mcp_stdio import server_params

import handler
from mcp_server.server import build_server
from swarm.runtime import Runtime

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = FIXTURES / "sr_input_48.png"
IMAGE = base64.b64encode(SMALL.read_bytes()).decode()
TAKES = "give 3 or 4 values 0-255 (R, G, B[, A])"
#: a bad colour -> what the error says it got
BAD = [([255, 255, 255, 255, 0], "5 values"), ([9], "1 value"), ([0, 0, 0, 300], "A=300"), ([0, -1, 0], "G=-1"),
       ([0, 0.5, 0], "G=0.5"), ([0, "255", 0], "G as text"), ([True, 0, 0], "R as true/false"),
       ("white", "text, not a list")]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> EchoImages:
    return use_echo_images(monkeypatch)


async def handler_job(monkeypatch: pytest.MonkeyPatch, config: Path, action: str, inp: dict[str, Any]) -> dict[str, Any]:
    """One job through the RunPod door (``handler.handler``), on a runtime over ``config``."""
    runtime = Runtime(config)
    monkeypatch.setattr(handler, "_runtime", runtime)
    try:
        return await handler.handler({"id": "rp-colour", "input": {"project": "image_tools", "action": action, "input": inp}})
    finally:
        await runtime.aclose()


async def test_an_rgb_triple_is_an_opaque_fill_at_every_door(
    recorder: EchoImages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.cli import main

    config = write_config(tmp_path, wait_budget_s=30)
    async with Client(build_server(str(config))) as client:
        for tool in ("remove_background", "process_image"):
            result = await client.call_tool(tool, {"image": IMAGE, "background_color": [255, 255, 255]})
            assert not result.is_error, result.content[0].text
        rgba = await client.call_tool("remove_background", {"image": IMAGE, "background_color": [10, 20, 30, 40]})
        assert not rgba.is_error, rgba.content[0].text

    assert await asyncio.to_thread(main, ["--config", str(config), "run", "image_tools", "remove_background", "-q",
                                          "--input", json.dumps({"path": str(SMALL), "background_color": [0, 128, 0]})]) == 0

    result = await handler_job(monkeypatch, config, "pipeline", {"image": IMAGE, "background_color": [1, 2, 3]})
    assert result["status"] == "COMPLETED", result["error"]

    colours = [c.background_color for c in recorder.configs if c.background_color is not None]
    assert colours == [(255, 255, 255, 255)] * 2 + [(10, 20, 30, 40), (0, 128, 0, 255), (1, 2, 3, 255)]


@pytest.mark.parametrize(("colour", "got"), BAD)
async def test_a_bad_colour_is_one_sentence_naming_the_field_at_every_door(
    colour: Any, got: str, recorder: EchoImages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from swarm.cli import main

    config = write_config(tmp_path, wait_budget_s=30)
    async with Client(build_server(str(config))) as client:
        result = await client.call_tool("remove_background", {"image": IMAGE, "background_color": colour})
        assert result.is_error
        assert result.content[0].text == (
            f"InputError: invalid arguments for remove_background: background_color: {TAKES}; got {got}")
        assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}  # refused before a job

    capsys.readouterr()
    assert await asyncio.to_thread(main, ["--config", str(config), "run", "image_tools", "pipeline", "-q",
                                          "--input", json.dumps({"path": str(SMALL), "background_color": colour})]) == 1
    assert f"error: InputError: input.background_color: {TAKES}; got {got}\n" in capsys.readouterr().err

    failed = await handler_job(monkeypatch, config, "remove_background", {"image": IMAGE, "background_color": colour})
    assert failed["status"] == "FAILED"  # RunPod takes the error as a string: the JSON of {type, message}
    error = json.loads(failed["error"])
    assert error.pop("envelope")["status"] == "FAILED"  # the rest of the job rides along (swarm.envelope.for_runpod)
    assert error == {"type": "InputError", "message": f"input.background_color: {TAKES}; got {got}",
                     "field": "background_color"}
    assert recorder.configs == []  # no door ran the image


async def test_the_tool_schemas_over_stdio_say_three_or_four_channels() -> None:
    async with Client(server_params()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("remove_background", "process_image"):
        schema = tools[name].input_schema["properties"]["background_color"]
        assert (schema["minItems"], schema["maxItems"]) == (3, 4), schema
        assert schema["items"] == {"type": "integer", "minimum": 0, "maximum": 255}
        assert schema["type"] == ["array", "null"]
