"""Progress notifications as MCP requires them: each value above the last, within the total,
whether the job gives a fraction of itself (an image's tiles), a fraction of one stage
(research's "search 2/2") or none (a model call)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import use_fake_llm, write_config

from mcp_server.server import build_server

FIXTURES = Path(__file__).parent / "fixtures"
TOTAL = 100.0  # every value is a percentage of the job
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"

Seen = list[tuple[float, "float | None", "str | None"]]


def _recorder(seen: Seen) -> Any:
    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message))

    return on_progress


def _assert_increasing(seen: Seen) -> None:
    values = [value for value, _, _ in seen]
    assert values, "no progress notification arrived"
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), seen
    assert all(total == TOTAL and 0 <= value <= total for value, total, _ in seen), seen


def test_the_scale_never_goes_back_and_only_the_end_fills_it() -> None:
    from mcp_server.calls import PROGRESS_TOTAL, ProgressScale

    research = [("plan", None), ("plan", None), ("search", 0.5), ("search", 1.0), ("read", None), ("write", None),
                ("done", 1.0)]
    image = [("input", 0.0), ("upscale", 0.0), ("upscale", 0.0), ("upscale", 1 / 6), ("upscale", 0.1),
             ("upscale", 1.0), ("done", 1.0)]
    for events in (research, image):
        scale = ProgressScale()
        values = [scale.next(stage, fraction) for stage, fraction in events]
        assert all(b > a for a, b in zip(values, values[1:], strict=False)), values
        assert max(values[:-1]) < PROGRESS_TOTAL and values[-1] == PROGRESS_TOTAL, values
    scale = ProgressScale()
    assert [scale.next("search", 0.5), scale.next("search", 1.0)] == [50.0, 50.5]  # a stage's 1.0 is not the end
    image_values = [ProgressScale().next("upscale", f) for f in (0.0, 0.25)]
    assert image_values == [0.0, 25.0]  # a real fraction is the value itself


def brain(messages: Any, config: Any) -> Any:
    if config.step == "plan":
        return {"queries": ["langgraph checkpoint durability"]}
    if config.step in ("write", "revise"):
        return "Checkpoints save state after every step [1]."
    return {"approved": True, "issues": []}


async def test_research_progress_increases_through_its_stages(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Research sent 1, 2, 3, then 100 of 100 at "search 1/1", then 5, 6, 7."""
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch
    from providers.testing import FunctionLLM

    search = SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite"))])
    use_fake_llm(monkeypatch, FunctionLLM(brain), search=search)
    seen: Seen = []
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool("research", {"question": "How are checkpoints saved?", "depth": "quick"},
                                        progress_callback=_recorder(seen))
    assert result.structured_content["status"] == "COMPLETED", result.content
    assert any(message and message.startswith("search: search ") for _, _, message in seen), seen
    _assert_increasing(seen)


async def test_image_progress_increases_in_the_tool_and_in_job_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image job sent 0.0 of 100 twice ("input", then the step at 0); job_result's replay of
    the last progress and the events after it are one increasing series too."""
    from providers.image import pull as weights_pull

    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    direct: Seen = []
    polled: Seen = []
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool("remove_background", {"image": photo, "model": "u2netp"},
                                        progress_callback=_recorder(direct))
        assert result.structured_content["status"] == "COMPLETED", result.content
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.01)))) as client:
        started = (await client.call_tool("remove_background", {"image": photo, "model": "u2netp"})).structured_content
        done = await client.call_tool("job_result", {"job_id": started["job_id"], "wait_s": 50},
                                      progress_callback=_recorder(polled))
        assert done.structured_content["status"] == "COMPLETED", done.content
    _assert_increasing(direct)
    assert [m for _, _, m in direct][:2] == ["input: reading the image", "remove_background: remove_background (1/1)"]
    if polled:  # a fast machine may finish before job_result starts listening
        _assert_increasing(polled)


@pytest.mark.parametrize("tool", ["delegate", "consensus"])
async def test_delegate_and_consensus_progress_ends_full(tool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's bar stopped at 3.94 of 100 ("done: finished" carried no fraction), and consensus
    sent no "done" at all (its last was 5.85 at "synthesize")."""
    from providers.testing import FunctionLLM

    async def answer(messages: Any, config: Any) -> Any:
        return {"approved": True, "score": 9, "issues": [], "suggestion": ""} if config.step == "review" else "An answer."

    use_fake_llm(monkeypatch, FunctionLLM(answer))
    arguments = {"task": "Name two colors."} if tool == "delegate" else {"question": "Tabs or spaces?"}
    seen: Seen = []
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool(tool, arguments, progress_callback=_recorder(seen))
    assert result.structured_content["status"] == "COMPLETED", result.content
    _assert_increasing(seen)
    assert seen[-1][0] == TOTAL and seen[-1][2] and seen[-1][2].startswith("done"), seen
    assert all(value < TOTAL for value, _, _ in seen[:-1])
