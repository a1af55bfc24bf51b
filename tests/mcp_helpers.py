"""Helpers for the MCP tests: a config with a short wait budget and a runtime whose LLM is a fake."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


#: the wait budget of a test whose image job must finish within the call: on a fresh SWARM_HOME the
#: first image job measures ``precision: auto`` (up to MEASURE_BUDGET_S = 120 s of wall time, and
#: longer on a loaded machine), then runs; a budget at that measurement's size raced it
IMAGE_WAIT_BUDGET_S = 600.0


async def collect(client: Any, job_id: str, deadline_s: float = IMAGE_WAIT_BUDGET_S) -> Any:
    """``job_result`` of ``job_id``, asked again (each call waits up to 50 s, the tool's most) until
    the job is no longer IN_PROGRESS or ``deadline_s`` has passed; the last call's result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        result = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 50})
        if result.is_error or result.structured_content["status"] != "IN_PROGRESS" or loop.time() > deadline:
            return result


def write_config(tmp_path: Path, *, wait_budget_s: float = 1.0, enabled_tools: list[str] | None = None,
                 report_page_chars: int | None = None, max_inline_image_bytes: int | None = None) -> Path:
    """The project's config with a short wait budget, the local runner and optional mcp settings."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["runner"]["wait_budget_s"] = wait_budget_s
    data["runner"]["kind"] = "local"
    if enabled_tools is not None:
        data["mcp"]["enabled_tools"] = enabled_tools
    if report_page_chars is not None:
        data["mcp"]["report_page_chars"] = report_page_chars
    if max_inline_image_bytes is not None:
        data["mcp"]["max_inline_image_bytes"] = max_inline_image_bytes
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class SlowLLM:
    """An LLMProvider (a FunctionLLM) answering after ``delay_s``; ``gate`` may hold it instead."""

    def __new__(cls, delay_s: float = 0.0, text: str = "the answer", gate: asyncio.Event | None = None) -> Any:
        from providers.testing import FunctionLLM

        async def answer(messages: Any, config: Any) -> str:
            if gate is not None:
                await gate.wait()
            if delay_s:
                await asyncio.sleep(delay_s)
            return text

        return FunctionLLM(answer, model="slow-fake")


def use_fake_llm(monkeypatch: pytest.MonkeyPatch, llm: Any, **others: Any) -> None:
    """Until the test ends, every Runtime hands out ``llm`` (and ``others``) instead of real
    backends: what ``Runtime.override`` does in a ``with`` block, undone by ``monkeypatch``."""
    from types import MappingProxyType

    from swarm.runtime import Runtime

    chosen = MappingProxyType({**Runtime.provider_overrides, "llm": llm, **others})
    monkeypatch.setattr(Runtime, "provider_overrides", chosen)


def research_brain(messages: Any, config: Any) -> Any:
    """A fake model for research through MCP: two planned queries, a cited two-sentence report, approved."""
    if config.step == "plan":
        return {"queries": ["langgraph checkpoint durability", "runpod job states"]}
    if config.step in ("write", "revise"):
        return "Checkpoints save state after every step [1]. RunPod jobs can fail [2]."
    return {"approved": True, "issues": []}


class EchoImages:
    """An image provider that returns its input unchanged and keeps what it was given: each image
    (``seen``) and each config (``configs``)."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.configs: list[Any] = []

    async def process(self, image: bytes, action: Any, config: Any) -> bytes:
        self.seen.append(image)
        self.configs.append(config)
        return image


def use_echo_images(monkeypatch: pytest.MonkeyPatch) -> EchoImages:
    """Until the test ends, every Runtime upscales and removes backgrounds with one ``EchoImages``
    (and answers with a ``SlowLLM``)."""
    fake = EchoImages()
    use_fake_llm(monkeypatch, SlowLLM(), upscale=fake, remove_background=fake)
    return fake
