"""Bad input through the MCP door: each a clear error, and the server keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_helpers import write_config

from mcp_server.server import build_server


async def test_unknown_tool_wrong_types_and_missing_arguments_are_clear_errors(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        with pytest.raises(MCPError) as unknown:  # a protocol error in MCP, not a failed call
            await client.call_tool("summon_dragon", {})
        assert unknown.value.error.code == -32602 and "summon_dragon" in unknown.value.error.message
        assert unknown.value.error.data["error"]["field"] == "name"

        missing = await client.call_tool("research", {})
        assert missing.is_error and "question" in missing.content[0].text

        wrong_type = await client.call_tool("research", {"question": "q", "max_sources": "many"})
        assert wrong_type.is_error and "max_sources" in wrong_type.content[0].text

        out_of_range = await client.call_tool("job_result", {"job_id": "x", "wait_s": 3600})
        assert out_of_range.is_error and "wait_s" in out_of_range.content[0].text

        bad_status = await client.call_tool("list_jobs", {"status": "DONE"})
        assert bad_status.is_error and "status" in bad_status.content[0].text

        assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}


async def test_an_unknown_or_misspelt_argument_is_refused_naming_what_the_tool_takes(tmp_path: Path) -> None:
    secret = "sk-ant-api03-NOTREALbutLONGenough0123456789"
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        typo = await client.call_tool("remove_background", {"image": "aGk=", "only_masks": True})
        text = typo.content[0].text
        assert typo.is_error and text.startswith("InputError: invalid arguments for remove_background: only_masks: unknown argument")
        assert "only_mask," in text  # the argument meant is among those listed

        extra = await client.call_tool("delegate", {"task": "hi", "bogus": 1})
        assert extra.is_error and "bogus: unknown argument; delegate takes task" in extra.content[0].text

        # pydantic's own text echoed the value given (a pasted key, say) and a link; ours names the field only
        wrong = await client.call_tool("research", {"question": "q", "max_sources": secret})
        text = wrong.content[0].text
        assert wrong.is_error and text.startswith("InputError: invalid arguments for research: max_sources: ")
        assert secret not in text and "NOTREAL" not in text and "pydantic.dev" not in text

        assert not (await client.call_tool("list_jobs", {"limit": 1})).is_error


async def test_null_is_an_argument_not_given_and_a_number_may_come_as_a_string(tmp_path: Path) -> None:
    """A model's call: "depth": null was refused ("Input should be 'quick', 'standard' or 'deep'")
    where "tier": null passed; "scale": "4" was refused with "Input should be 2, 3 or 4" where
    "max_sources": "5" passed; an image item that is a string named our class ImageItem."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, "PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.01)))) as client:
        nulls = await client.call_tool("list_jobs", {"status": None, "limit": None})
        assert not nulls.is_error, nulls.content[0].text
        scaled = await client.call_tool("upscale_image", {"image": image, "scale": "2"})
        assert not scaled.is_error, scaled.content[0].text
        still = await client.call_tool("upscale_image", {"image": image, "scale": "5"})
        assert still.is_error and "scale: Input should be 2, 3 or 4" in still.content[0].text
        for odd in ("--4", "\u00b2"):  # no number a caller meant: pydantic's own refusal, not a crash
            refused = await client.call_tool("list_jobs", {"limit": odd})
            assert refused.is_error and "limit: Input should be a valid integer" in refused.content[0].text, odd
        items = await client.call_tool("remove_background", {"images": ["/tmp/a.png"]})
        text = items.content[0].text
        assert items.is_error and "images[0]: Input should be a valid dictionary" in text and "ImageItem" not in text, text
        assert items.structured_content["error"]["field"] == "images[0]"
