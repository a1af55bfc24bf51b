"""A job stopped by ``limits.job_deadline_s`` keeps what it had made, as a job stopped by a failed
provider does: the error comes with the finished steps' trace and their partial result (a
pipeline's stored background removal, a delegation's draft).

It was the error alone: the trace held only the dispatch step and the output was empty, though the
finished steps had run (and been paid for)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from test_image_pipeline_failure import Remover

from core.config import load_config
from providers.base import ImageAction, ImageConfig, LLMConfig, Message
from providers.testing import FunctionLLM, MemoryStorage
from swarm.dispatcher import dispatch

SMALL = (Path(__file__).parent / "fixtures" / "sr_input_48.png").read_bytes()
APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}


def with_deadline(seconds: float) -> Any:
    config = load_config()
    return config.model_copy(update={"limits": config.limits.model_copy(update={"job_deadline_s": seconds})})


class Hanging:
    """An upscaler that does not finish in time."""

    async def process(self, image: bytes, action: ImageAction, config: ImageConfig) -> bytes:
        await asyncio.sleep(30)
        return image


async def test_a_pipeline_past_its_deadline_keeps_its_background_removal(make_context: Any) -> None:
    storage = MemoryStorage()
    make = make_context(FunctionLLM(lambda m, c: "unused"), config=with_deadline(3), storage=storage,
                        remove_background=Remover(), upscale=Hanging())
    job = {"project": "image_tools", "action": "pipeline", "input": {"image": base64.b64encode(SMALL).decode()},
           "job_id": "pipe-deadline"}
    result = await dispatch(job, make)
    assert result["status"] == "FAILED" and result["error"]["type"] == "JobDeadlineExceeded", result["error"]
    rows = [(s["step"], s["provider"], s["model"], s["outcome"]) for s in result["trace"] if s["kind"] == "image"]
    assert rows == [("remove_background", "rembg-onnx", "u2netp", "ok")], result["trace"]
    key = "image_tools/pipe-deadline/remove_background.png"
    assert result["output"] == {"partial": True, "steps_done": ["remove_background"], "stopped_at": "upscale",
                                "image_key": key}, result["output"]
    assert await storage.get(key) == SMALL
    assert result["trace"][-1]["step"] == "dispatch" and result["trace"][-1]["error_class"] == "JobDeadlineExceeded"


async def test_a_delegation_past_its_deadline_keeps_its_draft(make_context: Any) -> None:
    async def answer(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "review":
            await asyncio.sleep(30)  # a hanging reviewer
            return APPROVE
        return "the draft"

    job = {"project": "swarm", "action": "delegate", "input": {"task": "Write two lines about rivers."}}
    result = await dispatch(job, make_context(FunctionLLM(answer), config=with_deadline(3)))
    assert result["status"] == "FAILED" and result["error"]["type"] == "JobDeadlineExceeded", result["error"]
    output = result["output"] or {}
    assert output.get("partial") is True and output.get("text") == "the draft", result["output"]
    assert [s["step"] for s in result["trace"] if s["kind"] == "llm"] == ["draft"], result["trace"]
    assert result["totals"]["provider_calls"] >= 1  # the draft was paid for: the totals count it


async def test_a_job_past_its_deadline_before_any_step_finished_has_no_partial(make_context: Any) -> None:
    async def answer(messages: list[Message], config: LLMConfig) -> Any:
        await asyncio.sleep(30)  # the draft itself hangs
        return "never"

    job = {"project": "swarm", "action": "delegate", "input": {"task": "Write two lines about rivers."}}
    result = await dispatch(job, make_context(FunctionLLM(answer), config=with_deadline(0.3)))
    assert result["error"]["type"] == "JobDeadlineExceeded"
    assert result["output"] is None
    assert [s["step"] for s in result["trace"]] == ["dispatch"]
