"""Threads through the MCP door: a conversation continues after the server is killed and restarted, is
listed and readable, and keeps its turns when the RunPod worker runs the job. (One client cannot see
another's threads: tests/test_mcp_http.py, with two bearer tokens.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp_helpers import write_config
from test_mcp_stdio import server_params

from mcp_server.server import build_server
from providers.base import LLMConfig, Message
from providers.testing import FunctionLLM

LOCAL_ALIAS = "smollm2-135m-instruct"  # the only model of the shipped config without a key


def _kill_servers() -> int:
    """SIGKILL this process's ``mcp_server.server`` children (no shutdown: what a crash looks like)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"mcp_server.server" in cmdline:
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
    return killed


async def test_a_thread_continues_after_the_server_is_killed_and_restarted(tmp_path: Path) -> None:
    from fake_openai import Behaviour, FakeOpenAI

    config = write_config(tmp_path, wait_budget_s=30)
    with FakeOpenAI() as models:
        models.script(LOCAL_ALIAS, Behaviour.answer("Rivers run to the sea."), Behaviour.answer("Mountains hold the sky."))
        params = server_params(config, SWARM_LOCAL_LLM_PORT=str(models.port), SWARM_HOME=str(tmp_path / "home"))
        with contextlib.suppress(Exception):  # the client's pipe breaks when its server is killed
            async with Client(params) as client:
                first = (await client.call_tool("delegate", {"task": "Write about rivers.", "kind": "critical"}))
                assert not first.is_error, first.content
                thread_id = first.structured_content["thread_id"]
                assert first.structured_content["text"] == "Rivers run to the sea."
                assert _kill_servers() == 1
        assert thread_id.startswith("thr-")

        async with Client(server_params(config, SWARM_LOCAL_LLM_PORT=str(models.port),
                                        SWARM_HOME=str(tmp_path / "home"))) as client:
            listed = (await client.call_tool("list_threads", {})).structured_content["threads"]
            assert [(t["thread_id"], t["turns"], t["models"]) for t in listed] == [(thread_id, 2, ["local"])]
            second = await client.call_tool("delegate", {"task": "Now the same about mountains.", "kind": "critical",
                                                         "thread_id": thread_id})
            assert not second.is_error, second.content
            assert second.structured_content["thread_id"] == thread_id
            assert second.structured_content["text"] == "Mountains hold the sky."
            thread = json.loads((await client.read_resource(f"swarm://threads/{thread_id}")).contents[0].text)
            assert [(t["role"], t["model"], t["content"]) for t in thread["turns"]] == [
                ("user", None, "Write about rivers."), ("assistant", "local", "Rivers run to the sea."),
                ("user", None, "Now the same about mountains."),
                ("assistant", "local", "Mountains hold the sky.")]
            unknown = await client.call_tool("delegate", {"task": "hi", "thread_id": "thr-" + "0" * 32})
            assert unknown.is_error and "thread_id: " in unknown.content[0].text and "is not a thread of yours" in unknown.content[0].text
    # the continued call's prompt carried the earlier turns, naming the model that answered
    sent = [(m["role"], m["content"]) for m in models.requests_for(LOCAL_ALIAS)[-1].body["messages"]]
    assert ("user", "Write about rivers.") in sent
    assert ("assistant", "Rivers run to the sea.") in sent
    assert "turn 2 by local" in sent[0][1]
    assert sent[-1] == ("user", "Now the same about mountains.")


def _recording_llm(prompts: list[list[Message]]) -> Any:
    def answer(messages: list[Message], config: LLMConfig) -> str:
        prompts.append(messages)
        return f"answer {len(prompts)}"

    return FunctionLLM(answer, model="model-x")


class WorkerEndpoint:
    """A remote runner whose jobs run through the RunPod door (``handler.handler``), as on the worker."""

    follow_stream = False
    endpoint_id = "ep-fake"

    def relay(self, progress: Any, since: float | None = None) -> Any:
        from swarm.executors.runpod_progress import ProgressRelay

        return ProgressRelay(self, progress, time.time() if since is None else since)  # type: ignore[arg-type]
    poll_interval_s = 0.02

    def __init__(self) -> None:
        self.jobs: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self.inputs: list[dict[str, Any]] = []

    async def run(self, job: dict[str, Any], progress: Any = None, wait_budget_s: float | None = None) -> dict[str, Any]:
        raise AssertionError("a remote executor's jobs are submitted and followed, never run here")

    async def submit(self, job: dict[str, Any]) -> str:
        import handler

        job_id = f"rp-{len(self.jobs) + 1}"
        self.inputs.append(job["input"])
        self.jobs[job_id] = asyncio.create_task(handler.handler({"id": "local_test", "input": {**job, "job_id": job_id}}))
        return job_id

    async def status(self, job_id: str) -> dict[str, Any]:
        task = self.jobs[job_id]
        return {"id": job_id, "status": "COMPLETED", "output": task.result()} if task.done() else {"id": job_id, "status": "IN_PROGRESS"}

    async def stream(self, job_id: str) -> dict[str, Any]:
        return {"stream": []}

    async def cancel(self, job_id: str) -> dict[str, Any]:
        self.jobs[job_id].cancel()
        return {"id": job_id, "status": "CANCELLED"}

    def envelope(self, job: dict[str, Any], job_id: str, state: dict[str, Any], started: float) -> dict[str, Any]:
        return {**state["output"], "job_id": job_id}

    def failure(self, job: dict[str, Any], job_id: str | None, error: dict[str, str], started: float,
                steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        from swarm.executors.runpod_envelope import failure_envelope

        return failure_envelope(self.endpoint_id, job, job_id, error["type"], error["message"], started, steps)


async def test_threads_keep_their_turns_when_the_worker_runs_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_helpers import use_fake_llm

    prompts: list[list[Message]] = []
    use_fake_llm(monkeypatch, _recording_llm(prompts))
    endpoint = WorkerEndpoint()
    monkeypatch.setattr("swarm.executors.make_executor", lambda config, runtime: endpoint)
    monkeypatch.setattr("handler._runtime", None)
    config = write_config(tmp_path, wait_budget_s=30)
    monkeypatch.setenv("SWARM_CONFIG", str(config))
    async with Client(build_server(str(config))) as client:
        first = (await client.call_tool("delegate", {"task": "first question", "kind": "critical"})).structured_content
        second = (await client.call_tool("delegate", {"task": "follow-up", "kind": "critical",
                                                      "thread_id": first["thread_id"]})).structured_content
        assert second["job_id"] == "rp-2" and second["thread_id"] == first["thread_id"]
        assert any(s["step"] == "thread" and "saved turns 3-4" in (s["detail"] or "") for s in second["trace"])
        thread = json.loads((await client.read_resource(f"swarm://threads/{first['thread_id']}")).contents[0].text)
    # the worker got the earlier turns in the job input and put them in the prompt
    assert endpoint.inputs[1]["history"][1] == {"n": 2, "role": "assistant", "model": "model-x", "content": "answer 1"}
    assert ("assistant", "answer 1") in [(m.role, m.content) for m in prompts[-1]]
    assert [t["content"] for t in thread["turns"]] == ["first question", "answer 1", "follow-up", "answer 2"]


def test_a_job_store_from_before_threads_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    from mcp_server.jobstore import JobStore

    path = tmp_path / "jobs.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, owner TEXT NOT NULL, project TEXT NOT NULL,"
                    " action TEXT NOT NULL, input TEXT NOT NULL, status TEXT NOT NULL, result TEXT, progress TEXT,"
                    " idempotency_key TEXT, remote INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,"
                    " updated_at REAL NOT NULL)")
        old.commit()
    store = JobStore(path)
    try:
        store.create("j1", "local", {"project": "swarm", "action": "delegate", "input": {"task": "t"}}, thread_id="thr-1")
        assert (store.get("j1") or {})["thread_id"] == "thr-1"
    finally:
        store.close()


async def test_a_research_follow_up_plans_with_the_threads_earlier_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """research with a thread_id: the planner sees the earlier turns (who said what), so a
    follow-up's "it" can be searched for; the report joins the thread; the trace names the turns."""
    from mcp_helpers import use_fake_llm

    plans: list[str] = []

    def answer(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "plan":
            plans.append(messages[-1].content)
            return '{"queries": ["search fallback chain"]}'
        return "The local index answers when SearXNG is not configured."

    use_fake_llm(monkeypatch, FunctionLLM(answer, model="model-x"))
    config = write_config(tmp_path, wait_budget_s=60)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    async with Client(build_server(str(config))) as client:
        first = (await client.call_tool("delegate", {"task": "Which search backends does the swarm have?",
                                                     "kind": "critical"})).structured_content
        follow = await client.call_tool("research", {"question": "How does it fall back when one fails?",
                                                     "depth": "quick", "mode": "extractive", "max_sources": 3,
                                                     "thread_id": first["thread_id"]})
        assert not follow.is_error, follow.content[0].text
        out = follow.structured_content
        thread = json.loads((await client.read_resource(f"swarm://threads/{first['thread_id']}")).contents[0].text)
    assert out["thread_id"] == first["thread_id"] and out["status"] == "COMPLETED"
    assert "<conversation>" in plans[-1] and "Which search backends does the swarm have?" in plans[-1]
    assert "model-x: The local index answers" in plans[-1]  # the earlier answer, with the model that wrote it
    assert plans[-1].endswith("Research question:\nHow does it fall back when one fails?")
    assert any(s["step"] == "thread" and "turns 1-2 in the prompt" in (s["detail"] or "") for s in out["trace"])
    assert [t["content"] for t in thread["turns"]][2] == "How does it fall back when one fails?"
    assert thread["turns"][3]["content"] == out["report"]


async def test_a_research_follow_up_keeps_the_earlier_question_when_the_report_is_over_the_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The newcomer's thread: a report longer than the thread budget was dropped whole with its
    question, and a follow-up ("How long does it stay open?") was planned alone; now the question stays, the
    report comes shortened to its "In short" and the trace says so. (threads.max_chars at its
    least, 1000, so the report is well over it.)"""
    from mcp_helpers import use_fake_llm

    plans: list[str] = []

    def answer(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "plan":
            plans.append(messages[-1].content)
            return '{"queries": ["langgraph checkpointer thread_id", "durability sync resume"]}'
        return {"approved": True, "issues": []}

    use_fake_llm(monkeypatch, FunctionLLM(answer, model="model-x"))
    config = write_config(tmp_path, wait_budget_s=60)
    data = yaml.safe_load(config.read_text())
    data["threads"]["max_chars"] = 1000
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    # a question the corpus answers at length (a report of padding, once, made the circuit
    # breaker's one sentence long enough; the report now quotes only what is asked)
    asked = "How does LangGraph checkpointing work?"
    async with Client(build_server(str(config))) as client:
        first = await client.call_tool("research", {"question": asked, "mode": "extractive", "depth": "deep"})
        assert not first.is_error, first.content[0].text
        report = first.structured_content["report"]
        follow = await client.call_tool("research", {"question": "Which savers can it use?", "mode": "extractive",
                                                     "depth": "quick", "thread_id": first.structured_content["thread_id"]})
        assert not follow.is_error, follow.content[0].text
    assert len(report) > 1000  # the earlier report does not fit whole
    assert f"user: {asked}\nresearch: " in plans[-1] and "[shortened]" in plans[-1]
    assert "## What the sources say" not in plans[-1].split("</conversation>")[0]
    step = next(s for s in follow.structured_content["trace"] if s["step"] == "thread")
    assert step["detail"].startswith(f"thread {first.structured_content['thread_id']}: turns 1-2 in the prompt;"
                                     " turn 2 shortened to ")
    assert step["detail"].endswith(f" of {len(report)} characters (threads.max_chars=1000)")
    assert "left out" not in step["detail"]
