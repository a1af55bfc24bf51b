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


async def test_a_background_removal_batch_near_its_deadline_completes_with_the_images_done(make_context: Any) -> None:
    """Eight images at 1.5 s each against a 6 s deadline: the batch ran past it and the job failed
    with nothing kept. It now stops starting images in time and completes with those it finished."""
    import time

    from test_image_rembg import PHOTO, SHARED

    from providers.image import pull as weights_pull
    from providers.image.rembg_backend import RembgRemover, RembgSettings

    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    remover = RembgRemover(RembgSettings(model="u2netp", models_dir=str(SHARED), precision="fp32", batch_workers=1))
    original = remover._batch_one

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        return original(*args, **kwargs)

    remover._batch_one = slow  # type: ignore[method-assign]
    storage = MemoryStorage()
    images = [{"image": base64.b64encode(PHOTO).decode()}] * 8
    job = {"project": "image_tools", "action": "remove_background", "input": {"images": images}, "job_id": "batch-late"}
    result = await dispatch(job, make_context(FunctionLLM(lambda m, c: "unused"), config=with_deadline(6),
                                              storage=storage, remove_background=remover))
    assert result["status"] == "COMPLETED", result.get("error")
    entries = result["output"]["results"]
    done = [e for e in entries if "image_key" in e]
    skipped = [e for e in entries if "error" in e]
    assert 1 <= len(done) <= 3 and len(done) + len(skipped) == 8, entries
    assert [e["index"] for e in done] == list(range(len(done)))  # in order: the first ones ran
    assert all("limits.job_deadline_s: 6 s" in e["error"]["message"] for e in skipped), skipped
    for entry in done:
        assert (await storage.get(entry["image_key"]))[:4] == b"\x89PNG"
