"""Refusals a reviewer found unbounded or misfiled, over real stdio: an error never grows with the
input it refuses (a 200,000-character tool name, argument key, prompt argument or URI came back
whole), the prompts hold their text to the limits the tools do, a resource a finished job does not
have is bad input (INVALID_PARAMS naming ``job_id``, not an internal error), and an empty
``backends`` list is refused by the schema, before a job."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
LONG = "x" * 200_000


def _stdio(config: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(config)],
                                 env=dict(os.environ), cwd=str(ROOT))


async def _refused_prompt(client: Any, name: str, args: dict[str, str]) -> Any:
    try:
        await client.get_prompt(name, args)
    except Exception as exc:  # the client raises the JSON-RPC error as MCPError
        error = exc.error  # type: ignore[attr-defined]
        assert error.code == -32602, error
        return error
    raise AssertionError(f"prompt {name} was served")


async def test_refusals_stay_short_whatever_the_input(tmp_path: Path) -> None:
    async with Client(_stdio(write_config(tmp_path))) as client:
        with pytest.raises(MCPError) as unknown:  # a tool the server lacks: a protocol error, still short
            await client.call_tool(LONG, {})
        error = unknown.value.error
        assert error.code == -32602 and error.data["error"]["field"] == "name"
        assert len(error.message) < 1_000 and len(str(error.model_dump())) < 3_000, len(str(error.model_dump()))
        assert f"unknown tool {'x' * 60!r}... (200,000 characters)" in error.message

        extra = await client.call_tool("delegate", {"task": "hi", LONG: 1})
        assert extra.is_error and len(extra.content[0].text) < 1_000, len(extra.content[0].text)
        assert "unknown argument; delegate takes task," in extra.content[0].text
        assert len(extra.structured_content["error"]["field"]) <= 100

        error = await _refused_prompt(client, "delegate_and_review", {"task": "t", "kind": LONG})
        assert len(error.message) < 1_000 and "kind: unknown kind 'xxx" in error.message

        try:
            await client.read_resource("swarm://jobs/" + LONG)
        except Exception as exc:
            assert len(str(exc.error.model_dump())) < 2_000  # type: ignore[attr-defined]
        else:
            raise AssertionError("a job that does not exist was read")


async def test_prompts_hold_their_text_to_the_tools_limits(tmp_path: Path) -> None:
    async with Client(_stdio(write_config(tmp_path))) as client:
        error = await _refused_prompt(client, "delegate_and_review", {"task": "t" * 20_001})
        assert "task: is 20,001 characters; the limit is 20,000 (limits.max_task_chars in config)" in error.message
        error = await _refused_prompt(client, "research_brief", {"topic": "t" * 2_001})
        assert "topic: is 2,001 characters; the limit is 2,000 (limits.max_question_chars in config)" in error.message
        served = await client.get_prompt("research_brief", {"topic": "t" * 2_000})
        assert "t" * 2_000 in served.messages[0].content.text


async def test_a_resource_a_finished_job_lacks_is_bad_input_and_empty_backends_are_refused(tmp_path: Path) -> None:
    async with Client(_stdio(write_config(tmp_path, wait_budget_s=120))) as client:
        empty = await client.call_tool("research", {"question": "q", "backends": []})
        assert empty.is_error and empty.structured_content["job_id"] is None
        assert empty.structured_content["error"]["field"] == "backends"

        image = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
        done = await client.call_tool("upscale_image", {"image": image})
        assert not done.is_error and done.structured_content["status"] == "COMPLETED", done.content[0].text
        job_id = done.structured_content["job_id"]
        for uri in (f"swarm://jobs/{job_id}/sources/1", f"swarm://jobs/{job_id}/report"):
            try:
                await client.read_resource(uri)
            except Exception as exc:
                error = exc.error  # type: ignore[attr-defined]
                assert error.code == -32602 and error.data["error"]["field"] == "job_id", error
                assert error.message.startswith(f"job_id: job {job_id} (upscale) has no "), error.message
            else:
                raise AssertionError(f"{uri} was read")


async def test_two_sources_or_an_empty_batch_item_name_their_field_before_a_job(tmp_path: Path) -> None:
    """The dispatcher named these ``input`` and left ``path`` out of the choices; a batch item with
    no source was ``input.images.0`` from a job. The door refuses each naming the field, no job made."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
    async with Client(_stdio(write_config(tmp_path))) as client:
        for tool, args, field, said in [
            ("upscale_image", {"image": png, "url": "http://example.com/a.png"}, "image",
             "give one of image, path, url, key (got image and url)"),
            ("remove_background", {"images": [{"image": png}], "image": png}, "image",
             "give images or one of image, path, url, key, not both (got images and image)"),
            ("remove_background", {"images": [{"image": png}, {}]}, "images[1].image",
             "give one of image, path, url, key (got none)"),
        ]:
            refused = await client.call_tool(tool, args)
            assert refused.is_error and refused.structured_content["job_id"] is None
            assert refused.structured_content["error"]["field"] == field
            assert refused.content[0].text == f"InputError: {field}: {said}"
        assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}
