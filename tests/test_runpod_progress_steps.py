"""The steps a job on a RunPod endpoint has finished, in the answer of a poll while it runs.

The worker (``handler.py``) sends them with each progress update, read from the job's checkpoint,
bounded and redacted (``runpod_progress.steps_update``); the runner's wait and the MCP server's
follower keep the latest (``ProgressRelay``) and show them in ``trace`` as a local job's handle
shows its own. The real path, end to end, is ``tests/test_e2e_runpod.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_helpers import write_config

from providers.base import TraceStep
from swarm.executors.runpod_progress import (
    PROGRESS_STEP_TEXT_CHARS,
    PROGRESS_STEPS_MAX,
    PROGRESS_STEPS_MAX_BYTES,
    ProgressRelay,
    steps_of,
    steps_update,
)

SECRET = "sk-live-0123456789abcdefghijklmnop"


def _step(number: int, detail: str = "") -> dict[str, Any]:
    return TraceStep(step=f"s{number}", provider="fake", model=f"m{number}", detail=detail or None).model_dump()


# --- what a worker sends ------------------------------------------------------------------------


def test_an_update_carries_the_newest_steps_and_says_how_many_older_ones_it_left_out() -> None:
    sent = steps_update([_step(n) for n in range(PROGRESS_STEPS_MAX + 7)])
    assert sent["trace_total"] == PROGRESS_STEPS_MAX + 7
    note, *steps = sent["trace"]
    assert [s["step"] for s in steps] == [f"s{n}" for n in range(7, PROGRESS_STEPS_MAX + 7)]  # the newest, in order
    assert (note["step"], note["outcome"]) == ("progress", "skipped")
    assert f"the first 7 of {PROGRESS_STEPS_MAX + 7} finished steps are left out" in note["detail"]
    assert "result carries them all" in note["detail"]

    few = [_step(1), _step(2)]
    assert steps_update(few) == {"trace": few, "trace_total": 2}  # nothing left out: no note
    assert steps_update([]) == {"trace": [], "trace_total": 0}


def test_an_update_stays_within_its_byte_bound_and_cuts_long_texts() -> None:
    long = "x" * 5000
    sent = steps_update([_step(n, long) | {"error_class": long} for n in range(PROGRESS_STEPS_MAX)])
    note, *steps = sent["trace"]
    assert steps and all(len(s["detail"]) == len(s["error_class"]) == PROGRESS_STEP_TEXT_CHARS for s in steps)
    assert all(s["detail"].endswith("…") for s in steps)
    assert len(json.dumps(steps, ensure_ascii=False).encode()) <= PROGRESS_STEPS_MAX_BYTES
    assert len(steps) < PROGRESS_STEPS_MAX and steps[-1]["step"] == f"s{PROGRESS_STEPS_MAX - 1}"
    assert f"the first {PROGRESS_STEPS_MAX - len(steps)} of {PROGRESS_STEPS_MAX}" in note["detail"]


def test_the_steps_of_an_update_carry_no_secret_on_either_side(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_TEST_API_KEY", SECRET)
    leaky = _step(1, f"upstream said: invalid key {SECRET}") | {"error_class": "AuthError"}
    sent = steps_update([leaky])
    assert SECRET not in json.dumps(sent) and "invalid key" in sent["trace"][0]["detail"]
    # a worker that sent it unredacted (another version, another environment): this side masks it too
    total, steps = steps_of({"stage": "draft", "message": "m", "trace": [leaky], "trace_total": 1}) or (0, [])
    assert total == 1 and SECRET not in json.dumps(steps) and steps[0]["error_class"] == "AuthError"


def test_a_secret_that_straddles_the_cut_of_a_long_text_is_masked_not_half_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long detail is cut to ``PROGRESS_STEP_TEXT_CHARS``: cut first, a key across the cut lost its
    tail, no longer matched, and its first characters went out (found by review)."""
    monkeypatch.setenv("SWARM_TEST_API_KEY", SECRET)
    detail = "x" * (PROGRESS_STEP_TEXT_CHARS - 15) + f" key {SECRET} " + "y" * 40
    sent = steps_update([_step(1, detail)])
    assert SECRET[:10] not in json.dumps(sent), sent["trace"][0]["detail"][-40:]


def test_what_is_no_trace_step_is_left_out_and_an_older_workers_update_carries_none() -> None:
    assert steps_of({"stage": "draft", "message": "drafting", "fraction": None}) is None  # an older worker
    assert steps_of("drafting") is None and steps_of(None) is None
    total, steps = steps_of({"trace": ["text", {"step": 3}, _step(1) | {"new_field": 1}], "trace_total": 5}) or (0, [])
    assert total == 5 and [s["step"] for s in steps] == ["s1"]  # a field this side does not know is dropped


# --- what a follower keeps ----------------------------------------------------------------------


class _Endpoint:
    endpoint_id = "ep-test"
    follow_stream = False

    async def stream(self, job_id: str, http: Any = None, *, retry: bool = True) -> dict[str, Any]:
        return {"stream": []}

    def failure(self, job: dict[str, Any], job_id: str | None, error: dict[str, str], started: float,
                steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        from swarm.executors.runpod_envelope import failure_envelope

        return failure_envelope(self.endpoint_id, job, job_id, error["type"], error["message"], started, steps)


def _running(stage: str, message: str, steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {"stage": stage, "message": message, "fraction": None}
    if steps is not None:
        update |= steps_update(steps)
    return {"id": "rp-1", "status": "IN_PROGRESS", "output": update}


async def test_a_follower_keeps_the_steps_of_the_update_that_reported_the_most() -> None:
    said: list[tuple[str, str]] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        said.append((stage, message))

    relay = ProgressRelay(_Endpoint(), progress, time.time())
    assert relay.steps == []
    await relay.saw("rp-1", _running("draft", "drafting with m1", []))
    await relay.saw("rp-1", _running("review", "reviewing with m2", [_step(1), _step(2)]))
    # the SDK sends each update on a thread of its own: an older one may land last
    await relay.saw("rp-1", _running("draft", "drafted by m1", [_step(1)]))
    assert [s["step"] for s in relay.steps] == ["s1", "s2"]
    await relay.saw("rp-1", _running("draft", "drafted by m1", [_step(1), _step(2)]))  # the steps alone changed
    assert said == [("draft", "drafting with m1"), ("review", "reviewing with m2"), ("draft", "drafted by m1")]

    quiet = ProgressRelay(_Endpoint(), None, time.time())  # nobody listens: the steps are kept all the same
    await quiet.saw("rp-1", _running("review", "reviewing", [_step(1)]))
    assert [s["step"] for s in quiet.steps] == ["s1"]
    await quiet.saw("rp-1", _running("review", "reviewing"))  # then an update without steps: kept as they were
    assert [s["step"] for s in quiet.steps] == ["s1"]


def _scripted(status: dict[str, Any]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/run"):
            return httpx.Response(200, json={"id": "rp-1", "status": "IN_QUEUE"})
        return httpx.Response(200, json=status if "/status/" in request.url.path else {"stream": []})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("worker", ["this version", "an older one"])
async def test_the_runners_wait_past_its_budget_answers_with_the_steps_the_worker_finished(worker: str) -> None:
    from swarm.executors.runpod import RunPodExecutor

    status = _running("review", "reviewing with m2", [_step(1)] if worker == "this version" else None)
    runner = RunPodExecutor("https://api.example/v2", "ep1", "rpa_KEY0123456789", _scripted(status), poll_interval_s=0.01)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "t"}}
    envelope = await runner.run(job, wait_budget_s=0.05)
    assert envelope["status"] == "IN_PROGRESS" and envelope["error"]["type"] == "StillRunning"
    steps = [(s["step"], s["provider"]) for s in envelope["trace"]]
    assert steps == ([("s1", "fake"), ("runpod", "runpod")] if worker == "this version" else [("runpod", "runpod")])


class _FakeEndpoint(_Endpoint):
    """A RunPod-like runner for the MCP server: the job runs "remotely" until ``finished``."""

    poll_interval_s = 0.05

    def __init__(self, update: dict[str, Any]) -> None:
        self.update, self.finished = update, False

    def relay(self, progress: Any, since: float | None = None) -> ProgressRelay:
        return ProgressRelay(self, progress, time.time() if since is None else since)

    async def run(self, job: dict[str, Any], progress: Any = None, wait_budget_s: float | None = None) -> dict[str, Any]:
        raise AssertionError("the MCP server submits and follows a remote job itself")

    async def submit(self, job: dict[str, Any]) -> str:
        return "rp-1"

    async def status(self, job_id: str, http: Any = None) -> dict[str, Any]:
        if not self.finished:
            return {"id": job_id, "status": "IN_PROGRESS", "output": self.update}
        final = {"status": "COMPLETED", "output": {"text": "done"}, "trace": [_step(1), _step(2)], "totals": {}}
        return {"id": job_id, "status": "COMPLETED", "output": final}

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return {"id": job_id, "status": "CANCELLED"}

    def envelope(self, job: dict[str, Any], job_id: str, state: dict[str, Any], started: float) -> dict[str, Any]:
        return {**state["output"], "job_id": job_id, "project": job["project"], "action": job["action"]}


@pytest.mark.parametrize("worker", ["this version", "an older one"])
async def test_job_result_of_a_remote_job_still_running_shows_the_steps_its_worker_reported(
        worker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_server.server import build_server

    update = _running("review", "reviewing with m2", [_step(1)] if worker == "this version" else None)["output"]
    endpoint = _FakeEndpoint(update)
    monkeypatch.setattr("swarm.executors.make_executor", lambda config, runtime: endpoint)
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.1)))) as client:
        handle = (await client.call_tool("delegate", {"task": "remote work", "kind": "critical"})).structured_content
        for _ in range(200):  # until the follower has seen the worker's update (its progress shows it)
            polled = (await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 0.1})).structured_content
            if (polled.get("progress") or {}).get("stage") == "review":
                break
        endpoint.finished = True
        done = (await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 20})).structured_content
    assert polled["status"] == "IN_PROGRESS" and polled["progress"]["stage"] == "review", polled
    expected = [("s1", "m1")] if worker == "this version" else []  # an older worker: no steps, as before
    assert [(s["step"], s["model"]) for s in polled["trace"]] == expected
    assert done["status"] == "COMPLETED" and [s["step"] for s in done["trace"]][:2] == ["s1", "s2"]  # the result's own


async def test_a_remote_job_the_endpoint_ends_keeps_the_steps_its_worker_finished_and_the_runpod_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose status poll got an answer about the job itself (a 404: RunPod lost it) came back
    over MCP with an empty trace, while the CLI's answer had the runpod step."""
    from mcp_server.server import build_server
    from swarm.executors.runpod_envelope import RunPodError

    class Lost(_FakeEndpoint):
        polls = 0

        async def status(self, job_id: str, http: Any = None) -> dict[str, Any]:
            self.polls += 1
            if self.polls > 1:  # one update with a finished step, then it is gone
                raise RunPodError("ProviderError", "RunPod answered HTTP 404: job not found")
            return await super().status(job_id, http)

    endpoint = Lost(_running("review", "reviewing with m2", [_step(1)])["output"])
    monkeypatch.setattr("swarm.executors.make_executor", lambda config, runtime: endpoint)
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=20)))) as client:
        failed = await client.call_tool("delegate", {"task": "remote work", "kind": "critical"})
    assert failed.is_error and "HTTP 404" in failed.structured_content["error"]["message"]
    steps = [(s["step"], s["provider"], s["outcome"]) for s in failed.structured_content["trace"]]
    assert steps == [("s1", "fake", "ok"), ("runpod", "runpod", "error")], steps


# --- the worker -----------------------------------------------------------------------------------


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``handler.handler`` in this process with a fake model (real dispatcher, graph and SQLite
    checkpoints under the test's SWARM_HOME) and the updates it sends to RunPod recorded."""

    import handler
    from providers.testing import FakeLLM
    from swarm.runtime import Runtime

    verdict = {"approved": True, "score": 9, "issues": [], "suggestion": ""}

    class Announcing(FakeLLM):
        """Says it is reviewing, as a real model's call does (``graphs.progress.model_progress``)."""

        async def complete(self, messages: Any, config: Any) -> Any:
            if config.step == "review":
                from graphs.progress import emit

                emit("review", "reviewing with fake-model")
            return await super().complete(messages, config)

    with Runtime.override(llm=Announcing(["the draft", verdict], model="fake-model")):
        monkeypatch.setattr(handler, "_runtime", None)
        sent: list[dict[str, Any]] = []

        class Recorded:
            """The worker's sender (``OrderedProgress``), recording each update as it is made."""

            def send(self, job: Any, data: dict[str, Any]) -> None:
                sent.append(data)

            def flush(self, job_id: str, timeout_s: float = 0.0) -> bool:
                return True

        monkeypatch.setattr(handler, "_ordered", Recorded())
        monkeypatch.setenv("RUNPOD_WEBHOOK_POST_OUTPUT", "http://127.0.0.1:9/job-done/w1/$ID")

        async def run(job_id: str) -> dict[str, Any]:
            job = {"id": job_id, "input": {"project": "swarm", "action": "delegate",
                                           "input": {"task": "Say hello.", "kind": "bulk_content"}}}
            try:
                return await handler.handler(job)
            finally:
                if handler._runtime is not None:
                    await handler._runtime.aclose()
                    handler._runtime = None

        yield run, sent


async def test_the_workers_updates_carry_the_steps_its_job_has_finished(worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps come from the graph's own state after each step (``graphs.progress.listen_to_steps``):
    no checkpoint is read for them (a read here fails the test). Updates before the first step
    carry none, the review's carry the draft's, and "done" carries none (the result has them all)."""
    from swarm.runtime import Runtime

    async def no_read(self: Any, job_id: str, project: str, action: str) -> Any:
        raise AssertionError("a progress update read the checkpoint")

    monkeypatch.setattr(Runtime, "stopped_job", no_read)
    run, sent = worker
    result = await run("rp-steps-1")
    assert result["status"] == "COMPLETED", result.get("error")
    assert sent and all({"stage", "message", "fraction"} <= set(u) for u in sent), sent
    first_review = next(n for n, u in enumerate(sent) if u["stage"] == "review")
    assert all("trace" not in u for u in sent[:first_review]), sent  # nothing finished before the draft
    review = [u for u in sent if u["stage"] == "review"]
    assert review and all("trace" in u for u in review), sent
    shown = [(s["step"], s["kind"], s["model"]) for s in review[0]["trace"]]
    assert shown == [("draft", "llm", "fake-model"), ("draft", "node", None)] and review[0]["trace_total"] == 2, shown
    assert all("trace" not in u for u in sent if u["stage"] == "done"), sent
    final = [(s["step"], s["kind"], s["at"]) for s in result["trace"]]
    assert final[:2] == [(s["step"], s["kind"], s["at"]) for s in review[0]["trace"]]  # the result has them, and more
    assert ("review", "llm", "fake-model") in [(s["step"], s["kind"], s["model"]) for s in result["trace"]]


async def test_a_job_whose_updates_reach_nobody_never_builds_its_steps(worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import handler

    run, sent = worker
    built: list[int] = []
    original = handler.steps_update

    def counted(trace: Any) -> Any:
        built.append(len(trace))
        return original(trace)

    monkeypatch.setattr(handler, "steps_update", counted)
    monkeypatch.delenv("RUNPOD_WEBHOOK_POST_OUTPUT")  # ``--rp_serve_api``, ``--test_input``: no job-done URL
    result = await run("rp-steps-2")
    assert result["status"] == "COMPLETED" and sent == [] and built == []
