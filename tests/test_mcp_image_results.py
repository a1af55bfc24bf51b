"""Image results and inputs at the MCP door: what job_result, the artifact resource and the
image tools answer for inputs and results at the edges (a folder key, an empty image, a result
over the inline limit, a colour out of range)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import IMAGE_WAIT_BUDGET_S, write_config

from mcp_server.server import build_server

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
PHOTO = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
SMALL = base64.b64encode((FIXTURES / "sr_input_48.png").read_bytes()).decode()


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.image import pull as weights_pull

    assert weights_pull.pull(["realesrgan-anime-6b", "u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))


async def test_artifact_template_is_not_advertised_as_text(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}
    assert templates["swarm://artifacts/{+key}"].mime_type == "application/octet-stream"


async def test_a_folder_key_is_no_object_for_the_resource_and_for_its_image_alone(
    models: None, tmp_path: Path, swarm_home: Path
) -> None:
    """A key naming a folder of the store (``image_tools``, where every result lives) was an
    internal error: the resource read failed with a traceback, a batch failed every image."""
    (swarm_home / "artifacts" / "image_tools" / "earlier").mkdir(parents=True)
    (swarm_home / "artifacts" / "image_tools" / "earlier" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=IMAGE_WAIT_BUDGET_S)))) as client:
        with pytest.raises(Exception, match="no object 'image_tools' in storage"):
            await client.read_resource("swarm://artifacts/image_tools")

        single = await client.call_tool("upscale_image", {"key": "image_tools"})
        assert single.is_error and "InputError: key: no object 'image_tools' in storage" in single.content[0].text

        batch = await client.call_tool("remove_background", {
            "images": [{"key": "image_tools"}, {"image": PHOTO}, {"image": ""}], "model": "u2netp"})
        assert not batch.is_error, batch.content[0].text
        folder, good, empty = batch.structured_content["results"]
        assert folder["error"]["message"].startswith("images[0].key: no object 'image_tools' in storage")
        assert good["key"].startswith("image_tools/")
        assert empty["error"]["message"] == "images[2].image: is empty"


async def test_an_empty_image_is_named_as_empty(tmp_path: Path) -> None:
    """``""``, what a zero-byte file base64-encodes to, was reported as no source at all."""
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        result = await client.call_tool("upscale_image", {"image": ""})
    assert result.is_error and "InputError: image: is empty" in result.content[0].text


async def test_a_colour_channel_out_of_range_names_background_color(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        result = await client.call_tool("remove_background", {"image": PHOTO, "background_color": [0, 0, 0, 300]})
    assert result.is_error
    assert "background_color: give 3 or 4 values 0-255 (R, G, B[, A]); got A=300" in result.content[0].text


async def test_job_result_keeps_to_the_inline_limit_like_the_tool(models: None, tmp_path: Path) -> None:
    """job_result handed back the whole base64 of a result over mcp.max_inline_image_bytes (megabytes
    in a chat), where the image tool itself drops it and says why."""
    limit = 2_000
    config = str(write_config(tmp_path, wait_budget_s=IMAGE_WAIT_BUDGET_S, max_inline_image_bytes=limit))
    async with Client(build_server(config)) as client:
        single = await client.call_tool("upscale_image", {"image": SMALL, "scale": 2, "return_base64": True})
        batch = await client.call_tool("remove_background", {
            "images": [{"image": PHOTO}], "model": "u2netp", "return_base64": True})
        assert not single.is_error and not batch.is_error
        note = f"result is over mcp.max_inline_image_bytes={limit}; download it from url"
        assert single.structured_content["details"]["inline_omitted"] == note  # the tool's own answer

        collected = await client.call_tool("job_result", {"job_id": single.structured_content["job_id"]})
        output = collected.structured_content["output"]  # as the tool returned it
        assert output["details"]["bytes"] > limit and output["image_base64"] is None
        assert output["details"]["inline_omitted"] == note

        collected = await client.call_tool("job_result", {"job_id": batch.structured_content["job_id"]})
        (entry,) = collected.structured_content["output"]["results"]
        assert entry["bytes"] > limit and "image_base64" not in entry and entry["inline_omitted"] == note
