"""An input error names its field as data, not only at the start of its message: ``{type, message,
field}`` from the dispatcher, through the RunPod handler and its client (``worker_error``), and from
the MCP door, whether the door or a job refused the input; a config error names its key the same
way. Neither carries a secret, even where a caller's key name is one.

``InputError.to_dict()`` left ``field`` out, so every door dropped it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import SlowLLM, use_fake_llm, write_config

from core.errors import ConfigError, InputError
from providers.testing import FakeLLM
from swarm.dispatcher import dispatch

SECRET = "sk-ant-api03-NOTREALbutLONGenough0123456789"
TOO_LONG = {"project": "swarm", "action": "delegate", "input": {"task": "x" * 20_001}}


def test_the_error_names_its_field_and_key_as_data() -> None:
    assert InputError("is empty", field="task").to_dict() == {"type": "InputError", "message": "task: is empty",
                                                              "field": "task"}
    assert "field" not in InputError("bad job").to_dict()
    assert ConfigError("must be a folder", key="providers.storage.backends.local.root").to_dict()["key"] == \
        "providers.storage.backends.local.root"
    leaked = InputError("unknown argument", field=SECRET).to_dict()
    assert SECRET not in json.dumps(leaked), leaked


async def test_the_dispatcher_names_the_field(make_context: Any) -> None:
    result = await dispatch(TOO_LONG, make_context(FakeLLM(["unused"])))
    assert result["error"]["field"] == "task", result["error"]
    # a key the caller named (here a secret by mistake) is refused by name, masked
    unknown = await dispatch({"project": "swarm", "action": "delegate", "input": {"task": "hi", SECRET: 1}},
                             make_context(FakeLLM(["unused"])))
    assert unknown["error"]["type"] == "InputError" and unknown["error"].get("field"), unknown["error"]
    assert SECRET not in json.dumps(unknown), unknown["error"]


async def _handled(config_file: Path, monkeypatch: pytest.MonkeyPatch, *jobs: Any) -> list[dict[str, Any]]:
    """What the RunPod handler answers each of ``jobs`` (the ``input`` of a RunPod job), over the
    shipped config with a fake model."""
    import handler
    from swarm.runtime import Runtime

    use_fake_llm(monkeypatch, SlowLLM())
    runtime = Runtime(config_file)
    monkeypatch.setattr(handler, "_runtime", runtime)
    try:
        return [await handler.handler({"id": f"rp-{n}", "input": job}) for n, job in enumerate(jobs)]
    finally:
        await runtime.aclose()


async def test_the_runpod_handler_and_its_client_keep_the_field(
        config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.executors.runpod_envelope import worker_error

    (result,) = await _handled(config_file, monkeypatch, TOO_LONG)
    assert json.loads(result["error"])["field"] == "task"
    assert worker_error(result["error"])["field"] == "task"


async def test_the_mcp_door_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_server.server import build_server

    use_fake_llm(monkeypatch, SlowLLM())
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        refused = await client.call_tool("delegate", {"task": "x" * 20_001})  # by the door, before a job
        in_job = await client.call_tool("upscale_image", {"image": "not*base64"})  # by the job
        typo = await client.call_tool("remove_background", {"image": "aGk=", "only_masks": True})
        await client.call_tool("delegate", {"task": "hi", "idempotency_key": "k-1"})
        reused = await client.call_tool("delegate", {"task": "another task", "idempotency_key": "k-1"})
    for result, field in ((refused, "task"), (in_job, "image"), (typo, "only_masks"), (reused, "idempotency_key")):
        assert result.is_error
        assert (result.structured_content or {})["error"].get("field") == field, result.structured_content


async def test_the_runpod_handler_names_a_body_that_is_not_an_object(
        config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.executors.runpod_envelope import worker_error

    listed, unknown = await _handled(config_file, monkeypatch, ["delegate", "hi"],
                                     {"project": "swarm", "action": "summon", "input": {}})
    error = worker_error(listed["error"])
    assert error["field"] == "job", error
    assert error["message"] == "job: must be an object with project, action and input, not list"
    # an unknown action was named already: the valid ones are listed
    assert worker_error(unknown["error"])["field"] == "action"
    assert "valid: " in worker_error(unknown["error"])["message"]
