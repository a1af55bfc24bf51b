"""The local executor over worker processes (``runner.local.processes``).

Real worker processes (spawned, each with its own ``Runtime``) run delegation jobs on the shipped
config with the ``local`` model pointed at the loopback fake OpenAI server; the fake counts
requests, so "the draft is paid once" after a cancel or a killed worker is observed at the wire.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_openai import Behaviour, FakeOpenAI, RecordedRequest

from core.errors import ConfigError

LOCAL_ALIAS = "smollm2-135m-instruct"
DRAFT = "The draft from a worker."
APPROVE = '{"approved": true, "score": 9, "issues": [], "suggestion": ""}'


def _config(tmp_path: Path, processes: Any) -> Path:
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    raw["runner"]["local"] = {"processes": processes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _is_review(request: RecordedRequest) -> bool:
    return "response_format" in request.body  # the review asks for a JSON verdict


def _job(task: str, job_id: str | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {"project": "swarm", "action": "delegate", "input": {"task": task}}
    if job_id:
        job["job_id"] = job_id
    return job


async def _caught_at_review(pool: Any, fake: FakeOpenAI, job_id: str) -> asyncio.Task[dict[str, Any]]:
    """A delegation job started on ``pool``, once its draft is done and its review call is open."""
    running = asyncio.create_task(pool.run(_job("Say one thing.", job_id)))
    await _until(lambda: any(_is_review(r) for r in fake.requests_for(LOCAL_ALIAS)), 60, "the review call")
    return running


async def _until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeOpenAI() as server:
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(server.port))  # workers inherit it at spawn
        yield server


@pytest.mark.parametrize("value", [0, 65, "two"])
def test_processes_key_is_validated_with_its_name_and_limit(tmp_path: Path, value: Any) -> None:
    from core.config import load_config

    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, value))
    message = str(caught.value)
    assert "runner.local.processes" in message
    if value != "two":
        assert ("greater than or equal to 1" if value == 0 else "less than or equal to 64") in message


def test_make_executor_keeps_one_pool_per_runtime(tmp_path: Path) -> None:
    from swarm.executors import make_executor
    from swarm.executors.local import LocalExecutor
    from swarm.executors.processes import ProcessExecutor
    from swarm.runtime import Runtime

    runtime = Runtime(_config(tmp_path, 2))
    pool = make_executor(runtime.config, runtime)
    assert isinstance(pool, ProcessExecutor) and pool.processes == 2
    assert make_executor(runtime.config, runtime) is pool  # the MCP server asks once per job
    assert pool.workers == []  # nothing started before the first job
    assert isinstance(make_executor(Runtime(_config(tmp_path, 1)).config, runtime), LocalExecutor)


@pytest.mark.slow  # two spawned workers, each importing litellm and langgraph
async def test_jobs_spread_over_workers_with_trace_and_progress(tmp_path: Path, fake_models: FakeOpenAI) -> None:
    from swarm.executors.processes import ProcessExecutor

    fake_models.script(LOCAL_ALIAS, Behaviour.echo())
    pool = ProcessExecutor(2, str(_config(tmp_path, 2)))
    events: dict[int, list[str]] = {i: [] for i in range(4)}

    def collector(i: int) -> Any:
        async def progress(stage: str, message: str, fraction: float | None = None) -> None:
            events[i].append(stage)

        return progress

    try:
        pool.start()
        results = await asyncio.gather(*(pool.run(_job(f"Write about river {i}."), collector(i)) for i in range(4)))
        pids = {w.pid for w in pool.workers}
        ran = [w.jobs_run for w in pool.workers]
    finally:
        await pool.aclose()
    for i, result in enumerate(results):
        assert result["status"] == "COMPLETED", result["error"]
        assert f"river {i}" in result["output"]["text"]  # the echo of this job's own prompt
        # the echo is a draft, and no JSON verdict: its review is an UnusableAnswer attempt, billed
        answered = [s for s in result["trace"] if s["kind"] == "llm" and s["outcome"] != "skipped"]
        assert [(s["step"], s["outcome"], s["error_class"]) for s in answered] == [
            ("draft", "ok", None), ("review", "error", "UnusableAnswer")]
        assert all(s["provider"] and s["model"] and s["latency_ms"] > 0 and s["input_tokens"] for s in answered)
        assert result["trace"][-1]["step"] == "dispatch"
        assert "route" in events[i] and "draft" in events[i]
    assert len(pids) == 2 and os.getpid() not in pids
    assert ran == [2, 2]  # least-loaded first: two jobs each


@pytest.mark.slow
async def test_cancel_reaches_the_worker_and_the_job_resumes_by_id(tmp_path: Path, fake_models: FakeOpenAI) -> None:
    from swarm.executors.processes import ProcessExecutor

    fake_models.script(LOCAL_ALIAS, Behaviour.answer(DRAFT), Behaviour.hang(60))
    pool = ProcessExecutor(2, str(_config(tmp_path, 2)))
    try:
        running = await _caught_at_review(pool, fake_models, "cancel-me-1")
        started = time.monotonic()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert time.monotonic() - started < 4.5, "the worker never confirmed the cancel"
        assert all(not w.calls for w in pool.workers)
        fake_models.script(LOCAL_ALIAS, Behaviour.answer(APPROVE))
        result = await pool.run(_job("Say one thing.", "cancel-me-1"))
    finally:
        await pool.aclose()
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == DRAFT
    drafts = [r for r in fake_models.requests_for(LOCAL_ALIAS) if not _is_review(r)]
    assert len(drafts) == 1, "the checkpointed draft ran again after the cancel"


@pytest.mark.slow
async def test_a_killed_worker_fails_its_job_and_a_new_process_resumes_it(tmp_path: Path, fake_models: FakeOpenAI) -> None:
    from swarm.executors.processes import ProcessExecutor

    fake_models.script(LOCAL_ALIAS, Behaviour.answer(DRAFT), Behaviour.hang(60))
    pool = ProcessExecutor(2, str(_config(tmp_path, 2)))
    try:
        running = await _caught_at_review(pool, fake_models, "kill-me-1")
        victim = next(w for w in pool.workers if w.calls)
        os.kill(victim.pid, signal.SIGKILL)
        failed = await asyncio.wait_for(running, 30)
        fake_models.script(LOCAL_ALIAS, Behaviour.answer(APPROVE))
        resumed = await pool.run(_job("Say one thing.", "kill-me-1"))
        resumed_by = {w.pid for w in pool.workers if w.jobs_run}
    finally:
        await pool.aclose()
    assert failed["status"] == "FAILED" and failed["error"]["type"] == "InternalError"
    assert "kill-me-1" in failed["error"]["message"] and failed["job_id"] == "kill-me-1"
    assert resumed["status"] == "COMPLETED", resumed["error"]
    assert resumed["output"]["text"] == DRAFT
    assert victim.pid not in resumed_by  # another process read the dead one's checkpoints
    drafts = [r for r in fake_models.requests_for(LOCAL_ALIAS) if not _is_review(r)]
    assert len(drafts) == 1, "the checkpointed draft ran again in the new process"


async def test_workers_started_while_an_edit_is_refused_serve_the_last_good_config(
        tmp_path: Path, fake_models: FakeOpenAI) -> None:
    """A tier typo saved before the first job: the parent refused it and served on, its worker
    processes loaded the file on disk, raised, and every job failed as a worker that exited."""
    from swarm.executors import make_executor
    from swarm.runtime import Runtime

    fake_models.script(LOCAL_ALIAS, Behaviour.echo())
    path = _config(tmp_path, 2)
    runtime = Runtime(str(path))
    raw = yaml.safe_load(path.read_text())
    raw["providers"]["llm"]["tiers"]["fast"][0] = "deepseek-v3.1-q44"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert runtime.config is not None and runtime.store.last_error  # refused here; the good one serves
    pool = make_executor(runtime.config, runtime)
    try:
        result = await pool.run(_job("Write about a river."))
    finally:
        await pool.aclose()
    assert result["status"] == "COMPLETED", result["error"]
