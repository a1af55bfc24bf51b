"""Long jobs through the MCP door (in-process client): a job that outlasts the wait budget comes
back as a handle and is finished through job_result; progress reaches the caller and the store;
jobs survive a server restart; cancel, idempotency keys and unknown ids behave."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_helpers import SlowLLM, use_fake_llm, write_config

from mcp_server.server import build_server


async def test_a_job_past_the_wait_budget_returns_a_handle_and_job_result_finishes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_llm(monkeypatch, SlowLLM(delay_s=2.5, text="slow but sure"))
    config = write_config(tmp_path, wait_budget_s=1.0)
    async with Client(build_server(str(config))) as client:
        first = await client.call_tool("delegate", {"task": "write a haiku", "kind": "critical"})
        assert not first.is_error, first.content
        handle = first.structured_content
        assert handle["status"] == "IN_PROGRESS" and handle["text"] == ""
        assert "job_result" in handle["message"]
        job_id = handle["job_id"]

        status = await client.call_tool("job_status", {"job_id": job_id})
        assert status.structured_content["status"] == "IN_PROGRESS"
        for _ in range(40):  # a loaded machine may not have reached the first stage within the wait
            if status.structured_content["progress"] or status.structured_content["status"] != "IN_PROGRESS":
                break
            await anyio.sleep(0.05)
            status = await client.call_tool("job_status", {"job_id": job_id})
        assert status.structured_content["progress"]["stage"]  # the last progress is kept for pollers

        done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 20})
        result = done.structured_content
        assert result["status"] == "COMPLETED"
        assert result["output"]["text"] == "slow but sure"
        assert any(step["model"] == "slow-fake" for step in result["trace"])

        resource = await client.read_resource(f"swarm://jobs/{job_id}")
        assert '"status": "COMPLETED"' in resource.contents[0].text

        listed = await client.call_tool("list_jobs", {"status": "COMPLETED"})
        assert [j["job_id"] for j in listed.structured_content["jobs"]] == [job_id]


async def test_progress_notifications_arrive_during_a_tool_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_llm(monkeypatch, SlowLLM(delay_s=0.2))
    config = write_config(tmp_path, wait_budget_s=30)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(build_server(str(config))) as client:
        result = await client.call_tool("delegate", {"task": "hello", "kind": "critical"}, progress_callback=on_progress)
    assert result.structured_content["status"] == "COMPLETED"
    assert seen, "no progress notification arrived"
    assert any(message and message.startswith("route:") for _, _, message in seen)


async def test_a_job_left_running_by_a_stopped_server_is_resumed_by_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, wait_budget_s=0.5)
    gate = asyncio.Event()  # never set: the first server's model never answers
    use_fake_llm(monkeypatch, SlowLLM(gate=gate))
    async with Client(build_server(str(config))) as client:
        handle = (await client.call_tool("delegate", {"task": "survive a restart", "kind": "critical"})).structured_content
        assert handle["status"] == "IN_PROGRESS"
    # the server stopped with the job unfinished; a new one (with a model that answers) resumes it
    use_fake_llm(monkeypatch, SlowLLM(text="resumed"))
    async with Client(build_server(str(config))) as client:
        done = await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 20})
        assert done.structured_content["status"] == "COMPLETED"
        assert done.structured_content["output"]["text"] == "resumed"


async def test_a_second_server_on_the_same_store_leaves_a_live_servers_job_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two MCP clients on one machine start two servers over one state folder: the second must
    not run the first one's live job again (twice the model calls, and a result overwritten)."""
    from providers.testing import FunctionLLM

    config = write_config(tmp_path, wait_budget_s=0.5)
    use_fake_llm(monkeypatch, SlowLLM(gate=asyncio.Event()))  # the first server's model never answers
    async with Client(build_server(str(config))) as first:
        handle = (await first.call_tool("delegate", {"task": "run me once", "kind": "critical"})).structured_content
        assert handle["status"] == "IN_PROGRESS"
        calls: list[str] = []

        async def record(messages: Any, llm_config: Any) -> str:
            calls.append(llm_config.step)
            return "ran twice"

        use_fake_llm(monkeypatch, FunctionLLM(record))
        async with Client(build_server(str(config))) as second:
            status = (await second.call_tool("job_status", {"job_id": handle["job_id"]})).structured_content
            assert status["status"] == "IN_PROGRESS" and status["running_here"] is False
            cancel = await second.call_tool("job_cancel", {"job_id": handle["job_id"]})
            assert cancel.is_error and "another swarm-mcp process" in cancel.content[0].text
            await anyio.sleep(0.5)
            assert calls == []
            assert (await first.call_tool("job_status", {"job_id": handle["job_id"]})).structured_content["running_here"]
    # the first server is gone: the next one resumes its job
    use_fake_llm(monkeypatch, SlowLLM(text="resumed"))
    async with Client(build_server(str(config))) as third:
        done = await third.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 20})
        assert done.structured_content["status"] == "COMPLETED" and done.structured_content["output"]["text"] == "resumed"


async def test_cancel_stops_a_running_job_and_unknown_ids_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_llm(monkeypatch, SlowLLM(gate=asyncio.Event()))
    config = write_config(tmp_path, wait_budget_s=0.3)
    async with Client(build_server(str(config))) as client:
        handle = (await client.call_tool("delegate", {"task": "never ends", "kind": "critical"})).structured_content
        cancelled = await client.call_tool("job_cancel", {"job_id": handle["job_id"]})
        assert cancelled.structured_content["status"] == "CANCELLED"
        result = await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 0})
        assert result.structured_content["status"] == "CANCELLED"
        assert result.structured_content["error"]["type"] == "JobCancelled"

        unknown = await client.call_tool("job_result", {"job_id": "no-such-job"})
        assert unknown.is_error and "job_id: 'no-such-job' is not a job of yours" in unknown.content[0].text
        bad = await client.call_tool("job_status", {"job_id": "../../etc/passwd"})
        assert bad.is_error
        assert "job_id" in bad.content[0].text
        # still serving
        assert (await client.call_tool("list_jobs", {})).structured_content["jobs"]


async def test_a_cancelled_job_keeps_what_it_had_made_its_trace_and_its_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled during the review, after the draft was paid: the answer had output null, trace [],
    totals {} and elapsed_ms 0; the draft and its call vanished."""
    from providers.testing import FunctionLLM

    async def answer(messages: Any, llm_config: Any) -> str:
        if llm_config.step == "review":
            await asyncio.Event().wait()  # the reviewer never answers
        return "the paid draft"

    use_fake_llm(monkeypatch, FunctionLLM(answer, model="drafter"))
    config = write_config(tmp_path, wait_budget_s=0.3)
    async with Client(build_server(str(config))) as client:
        handle = (await client.call_tool("delegate", {"task": "draft then hang", "kind": "bulk_content"})).structured_content
        for _ in range(100):  # until the draft is made (and checkpointed: the review is under way)
            status = (await client.call_tool("job_status", {"job_id": handle["job_id"]})).structured_content
            if (status.get("progress") or {}).get("stage") == "draft":
                break
            await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        assert (await client.call_tool("job_cancel", {"job_id": handle["job_id"]})).structured_content["status"] == "CANCELLED"
        result = (await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 0})).structured_content
    assert result["status"] == "CANCELLED" and result["error"]["type"] == "JobCancelled"
    assert result["output"]["partial"] is True and result["output"]["text"] == "the paid draft", result["output"]
    drafts = [s for s in result["trace"] if s["step"] == "draft" and s["kind"] == "llm"]
    assert drafts and drafts[0]["model"] == "drafter"
    cancel = result["trace"][-1]
    assert cancel["step"] == "cancel" and cancel["error_class"] == "JobCancelled" and "last progress: draft: drafted by drafter" in cancel["detail"]
    assert result["totals"]["provider_calls"] >= 1 and result["elapsed_ms"] > 0


async def test_the_same_idempotency_key_returns_the_first_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = SlowLLM(text="once")
    use_fake_llm(monkeypatch, llm)
    config = write_config(tmp_path, wait_budget_s=10)
    async with Client(build_server(str(config))) as client:
        args: dict[str, Any] = {"task": "do it once", "kind": "critical", "idempotency_key": "retry-1"}
        first = (await client.call_tool("delegate", args)).structured_content
        second = (await client.call_tool("delegate", args)).structured_content
    assert first["job_id"] == second["job_id"] and second["text"] == "once"
    assert len(llm.calls) == 1


async def test_a_retry_while_the_job_runs_gets_the_jobs_own_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry with the same idempotency_key while the first job ran got the same job id and a new,
    empty thread_id; a follow-up on it lost the conversation, and each retry left one more thread."""
    use_fake_llm(monkeypatch, SlowLLM(delay_s=1.5, text="once"))
    config = write_config(tmp_path, wait_budget_s=0.1)
    async with Client(build_server(str(config))) as client:
        args: dict[str, Any] = {"task": "do it once", "kind": "critical", "idempotency_key": "retry-2"}
        first = (await client.call_tool("delegate", args)).structured_content
        second = (await client.call_tool("delegate", args)).structured_content
        assert first["status"] == second["status"] == "IN_PROGRESS", (first, second)
        assert second["job_id"] == first["job_id"] and second["thread_id"] == first["thread_id"], (first, second)
        done = (await client.call_tool("job_result", {"job_id": first["job_id"], "wait_s": 10})).structured_content
        assert done["status"] == "COMPLETED"
        threads = (await client.call_tool("list_threads", {})).structured_content["threads"]
    assert [t["thread_id"] for t in threads] == [first["thread_id"]]


async def test_an_idempotency_key_reused_for_another_request_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = SlowLLM(text="once")
    use_fake_llm(monkeypatch, llm)
    config = write_config(tmp_path, wait_budget_s=10)
    async with Client(build_server(str(config))) as client:
        first = (await client.call_tool("delegate", {"task": "do it once", "kind": "critical", "idempotency_key": "k-1"}))
        assert first.structured_content["text"] == "once"
        other_tool = await client.call_tool("research", {"question": "rivers?", "idempotency_key": "k-1"})
        assert other_tool.is_error and "'k-1' already names a swarm/delegate job" in other_tool.content[0].text
        other_input = await client.call_tool("delegate", {"task": "something else", "kind": "critical", "idempotency_key": "k-1"})
        assert other_input.is_error and "with other input" in other_input.content[0].text
        assert len(llm.calls) == 1
        # an empty thread (each call opens one) is no conversation to list
        threads = (await client.call_tool("list_threads", {})).structured_content["threads"]
        assert [t["turns"] for t in threads] == [2]


async def test_a_failed_job_is_a_tool_error_naming_the_problem_and_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import ProviderUnavailable
    from providers.testing import FunctionLLM

    def down(messages: Any, config: Any) -> str:
        raise ProviderUnavailable("fake", "the model is down")

    use_fake_llm(monkeypatch, FunctionLLM(down, model="down-fake"))
    config = write_config(tmp_path)
    async with Client(build_server(str(config))) as client:
        # (input refused before anything ran keeps no job: test_mcp_error_shape)
        result = await client.call_tool("delegate", {"task": "write a haiku"})
        assert result.is_error
        text = result.content[0].text
        assert "the model is down" in text and "job_id: " in text
        job_id = text.rsplit("job_id: ", 1)[1].strip()
        status = await client.call_tool("job_status", {"job_id": job_id})
        assert status.structured_content["status"] == "FAILED"
        assert status.structured_content["error"]["type"] == "ProviderUnavailable"


async def test_a_running_jobs_handle_carries_the_steps_it_has_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job past the wait budget answers IN_PROGRESS with the trace of the steps done so far (the
    draft it already paid for), read from its checkpoint; before any step it is empty."""
    use_fake_llm(monkeypatch, SlowLLM(delay_s=2.0, text="slow"))
    config = write_config(tmp_path, wait_budget_s=0.3)
    async with Client(build_server(str(config))) as client:
        first = (await client.call_tool("delegate", {"task": "write a haiku", "kind": "bulk_content"})).structured_content
        assert first["status"] == "IN_PROGRESS" and first["trace"] == []  # drafting: no step done yet
        seen: list[list[tuple[str, str]]] = []
        for _ in range(60):
            polled = (await client.call_tool("job_result", {"job_id": first["job_id"], "wait_s": 0.5})).structured_content
            if polled["status"] != "IN_PROGRESS":
                break
            seen.append([(step["step"], step["outcome"]) for step in polled["trace"]])
        assert polled["status"] == "COMPLETED"
        assert any(("draft", "ok") in steps for steps in seen), seen  # the review was still running then
        assert all(("review", "ok") not in steps for steps in seen), seen


class FakeEndpoint:
    """A RunPod-like runner: jobs live "remotely" under the endpoint's ids (submit/status/cancel)."""

    follow_stream = False
    endpoint_id = "ep-fake"

    def relay(self, progress: Any, since: float | None = None) -> Any:
        from swarm.executors.runpod_progress import ProgressRelay

        return ProgressRelay(self, progress, time.time() if since is None else since)  # type: ignore[arg-type]
    poll_interval_s = 0.05

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.finished = False

    async def run(self, job: dict[str, Any], progress: Any = None, wait_budget_s: float | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        job_id = await self.submit(job)
        while (state := await self.status(job_id))["status"] == "IN_PROGRESS":
            await asyncio.sleep(self.poll_interval_s)
        return self.envelope(job, job_id, state, started)

    async def submit(self, job: dict[str, Any]) -> str:
        self.submitted.append(job)
        return f"rp-{len(self.submitted)}"

    async def status(self, job_id: str) -> dict[str, Any]:
        if job_id in self.cancelled:
            return {"id": job_id, "status": "CANCELLED"}
        if not self.finished:
            return {"id": job_id, "status": "IN_PROGRESS"}
        return {"id": job_id, "status": "COMPLETED", "output": {"status": "COMPLETED", "output": {"text": "from the endpoint"},
                                                                "trace": [], "totals": {}}}

    async def stream(self, job_id: str) -> dict[str, Any]:
        return {"stream": []}

    async def cancel(self, job_id: str) -> dict[str, Any]:
        self.cancelled.append(job_id)
        return {"id": job_id, "status": "CANCELLED"}

    def envelope(self, job: dict[str, Any], job_id: str, state: dict[str, Any], started: float) -> dict[str, Any]:
        return {**state.get("output", {"status": "FAILED", "error": {"type": "JobCancelled", "message": "cancelled"}}),
                "job_id": job_id, "project": job["project"], "action": job["action"]}

    def failure(self, job: dict[str, Any], job_id: str | None, error: dict[str, str], started: float,
                steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        from swarm.executors.runpod_envelope import failure_envelope

        return failure_envelope(self.endpoint_id, job, job_id, error["type"], error["message"], started, steps)


async def test_with_a_remote_runner_the_job_id_is_the_remote_id_and_a_restart_reattaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = FakeEndpoint()
    monkeypatch.setattr("swarm.executors.make_executor", lambda config, runtime: endpoint)
    config = write_config(tmp_path, wait_budget_s=0.3)
    async with Client(build_server(str(config))) as client:
        handle = (await client.call_tool("delegate", {"task": "remote work", "kind": "critical"})).structured_content
    assert handle["status"] == "IN_PROGRESS" and handle["job_id"] == "rp-1"
    assert endpoint.cancelled == []  # a stopping server leaves the remote job running
    endpoint.finished = True
    async with Client(build_server(str(config))) as client:
        done = (await client.call_tool("job_result", {"job_id": "rp-1", "wait_s": 10})).structured_content
        assert done["status"] == "COMPLETED" and done["output"]["text"] == "from the endpoint"
        endpoint.finished = False
        second = (await client.call_tool("delegate", {"task": "cancel me", "kind": "critical"})).structured_content
        cancelled = (await client.call_tool("job_cancel", {"job_id": second["job_id"]})).structured_content
        assert cancelled["status"] == "CANCELLED"
    assert len(endpoint.submitted) == 2  # re-attached, never submitted twice
    assert endpoint.cancelled == ["rp-2"]


async def test_a_status_poll_that_times_out_leaves_the_remote_job_followed_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One read timeout on /status marked the job FAILED for good while it ran on at RunPod (its
    result orphaned and billed, and a retry paid twice)."""
    from swarm.executors.runpod_envelope import RunPodError

    class Flaky(FakeEndpoint):
        polls = 0

        async def status(self, job_id: str) -> dict[str, Any]:
            self.polls += 1
            if self.polls in (2, 3):
                raise RunPodError("ProviderTimeout", "RunPod endpoint ep did not answer status in time: ReadTimeout")
            if self.polls == 4:
                raise RunPodError("ProviderUnavailable", "RunPod answered HTTP 502: bad gateway")
            self.finished = self.polls >= 6
            return await super().status(job_id)

    endpoint = Flaky()
    monkeypatch.setattr("swarm.executors.make_executor", lambda config, runtime: endpoint)
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.1)))) as client:
        handle = (await client.call_tool("delegate", {"task": "remote work", "kind": "critical"})).structured_content
        done = (await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 20})).structured_content
    assert done["status"] == "COMPLETED" and done["output"]["text"] == "from the endpoint", done
    assert endpoint.polls >= 6 and endpoint.cancelled == []
    # an answer about the job itself ends it at once; an endpoint that never answers again is
    # followed for runner.timeout_s, then given up, saying so
    for job_id, error, timeout_s, said in (
        ("rp-gone", RunPodError("ProviderError", "RunPod answered HTTP 404: job not found"), 600.0, "404"),
        ("rp-down", RunPodError("ProviderTimeout", "RunPod endpoint ep did not answer status in time"), 0.5,
         "did not answer for"),
    ):
        monkeypatch.setattr("swarm.executors.make_executor",
                            lambda config, runtime, i=job_id, e=error, t=timeout_s: _Failing(i, e, t))
        async with Client(build_server(str(write_config(tmp_path, wait_budget_s=10)))) as client:
            failed = await client.call_tool("delegate", {"task": "lost", "kind": "critical"})
            assert failed.is_error and said in failed.content[0].text, failed.content[0].text
            steps = [(s["provider"], s["detail"]) for s in failed.structured_content["trace"]]
            assert steps == [("runpod", f"job {job_id} FAILED")], steps  # the trace the CLI's answer has
            status = (await client.call_tool("job_status", {"job_id": job_id})).structured_content
        assert status["status"] == "FAILED"


class _Failing(FakeEndpoint):
    """An endpoint whose every status poll raises ``error``."""

    def __init__(self, job_id: str, error: Exception, timeout_s: float) -> None:
        super().__init__()
        self.job_id, self.error, self.timeout_s = job_id, error, timeout_s

    async def submit(self, job: dict[str, Any]) -> str:
        return self.job_id

    async def status(self, job_id: str) -> dict[str, Any]:
        raise self.error


class Signal:
    """An event set from any thread (a job runs on its server's own jobs loop) and awaited on the test's loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        await self._event.wait()


class Latch:
    """Closed until the test opens it; awaited on any loop (a job's model or checkpoint read runs on
    its jobs loop). A waiter that is cancelled leaves it closed for the others."""

    def __init__(self) -> None:
        self._opened: concurrent.futures.Future[None] = concurrent.futures.Future()

    def open(self) -> None:
        if not self._opened.done():
            self._opened.set_result(None)

    async def wait(self) -> None:
        await asyncio.shield(asyncio.wrap_future(self._opened))


def reads_of_a_running_job_by_another_server(monkeypatch: pytest.MonkeyPatch, job_ids: set[str]) -> Signal:
    """Set once a server that does not run one of ``job_ids`` reads its row while it is IN_PROGRESS
    (how a server follows a job of another: only the store says when it ends)."""
    from mcp_server.jobstore import IN_PROGRESS, JobStore

    seen, real_get = Signal(), JobStore.get

    def get(store: JobStore, job_id: str, owner: str | None = None) -> dict[str, Any] | None:
        row = real_get(store, job_id, owner)
        if job_id in job_ids and row and row["status"] == IN_PROGRESS and row.get("runner") != store.lease.token:
            seen.set()
        return row

    monkeypatch.setattr(JobStore, "get", get)
    return seen


async def test_a_job_whose_server_died_is_run_by_a_live_one_when_asked_and_waits_are_waited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server A was killed while B lived on: B never resumed A's job (only a starting server
    does), kept calling it "still running", and job_result(wait_s=5) came back at once (a client
    that followed the advice made 4,670 calls in 20 s).

    A runs two jobs: ``waited`` answers once the test opens ``answer_waited``, ``orphaned`` never
    while A lives. B's job_result on ``waited`` must still be waiting when A finishes it: the latch
    is opened only once B has read the job's row as running, and B's answer must be A's result."""
    config = write_config(tmp_path, wait_budget_s=0.1)
    answer_waited, a_is_gone = Latch(), False

    async def answer(messages: Any, llm_config: Any) -> str:
        said = " ".join(str(message.content) for message in messages)
        if "TASK-waited" in said:
            await answer_waited.wait()
            return "finished by A"
        if not a_is_gone:
            await asyncio.Event().wait()  # A's model never answers the orphaned job
        return "adopted"

    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(answer, model="slow-fake"))
    submitted: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    stop_first = asyncio.Event()

    async def server_a() -> None:
        async with Client(build_server(str(config))) as first:
            handles = [(await first.call_tool("delegate", {"task": f"TASK-{name}", "kind": "critical"})).structured_content
                       for name in ("waited", "orphaned")]
            assert all(h["status"] == "IN_PROGRESS" for h in handles), handles
            submitted.set_result((handles[0]["job_id"], handles[1]["job_id"]))
            await stop_first.wait()

    first_task = asyncio.create_task(server_a())
    try:
        await asyncio.wait({first_task, submitted}, return_when=asyncio.FIRST_COMPLETED)
        if not submitted.done():
            await first_task  # A failed before its jobs were submitted: its error
        waited_id, orphaned_id = submitted.result()
        async with Client(build_server(str(config))) as second:
            asked = (await second.call_tool("job_result", {"job_id": waited_id, "wait_s": 0})).structured_content
            assert asked["status"] == "IN_PROGRESS" and "in another swarm-mcp process (pid" in asked["message"]

            read_running = reads_of_a_running_job_by_another_server(monkeypatch, {waited_id})
            waiting = asyncio.create_task(second.call_tool("job_result", {"job_id": waited_id, "wait_s": 50}))
            reading = asyncio.create_task(read_running.wait())
            await asyncio.wait({waiting, reading}, return_when=asyncio.FIRST_COMPLETED)
            assert reading.done(), ("job_result answered without reading the running job's row", waiting.result())
            answer_waited.open()  # A finishes its job now, while B's call is waiting on it
            waited = (await waiting).structured_content
            assert waited["status"] == "COMPLETED" and waited["output"]["text"] == "finished by A", waited

            stop_first.set()
            await first_task  # A goes away; its other job stays IN_PROGRESS in the store
            a_is_gone = True
            # listing takes it over too: it showed IN_PROGRESS, frozen, until asked for by id
            listed = (await second.call_tool("list_jobs", {})).structured_content["jobs"]
            assert next(j for j in listed if j["job_id"] == orphaned_id)["running_here"] is True, listed
            status = (await second.call_tool("job_status", {"job_id": orphaned_id})).structured_content
            assert status["running_here"] is True
            done = (await second.call_tool("job_result", {"job_id": orphaned_id, "wait_s": 20})).structured_content
        assert done["status"] == "COMPLETED" and done["output"]["text"] == "adopted"
    finally:  # a failed assert must not leave A serving
        answer_waited.open()
        stop_first.set()
        await first_task


async def test_a_job_whose_input_held_a_secret_is_not_resumed_on_its_masked_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store keeps input redacted; a job resumed from it ran a different task (the password
    masked) or fetched a signed URL without its signature."""
    config = write_config(tmp_path, wait_budget_s=0.3)
    use_fake_llm(monkeypatch, SlowLLM(gate=asyncio.Event()))
    task = "connect with postgresql://app:hunter2-secret-pw@db/prod and list the tables"
    async with Client(build_server(str(config))) as client:
        handle = (await client.call_tool("delegate", {"task": task, "kind": "critical"})).structured_content
    use_fake_llm(monkeypatch, SlowLLM(text="ran on the masked task"))
    async with Client(build_server(str(config))) as client:
        done = (await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 10})).structured_content
    assert done["status"] == "FAILED" and done["error"]["type"] == "JobLost", done
    assert "held a secret" in done["error"]["message"] and "hunter2" not in str(done)


async def test_jobs_past_max_running_jobs_wait_queued_and_start_as_slots_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 calls started 300 jobs at once on one local model; nothing held them back."""
    import yaml

    from providers.testing import FunctionLLM

    started: list[str] = []

    async def answer(messages: Any, llm_config: Any) -> str:
        task = messages[-1].content
        name = next(n for n in ("one", "two", "three") if f"TASK-{n}" in task)
        started.append(name)
        await asyncio.sleep(0.3 if name == "three" else 30)  # one and two hold their slots
        return f"done {name}"

    use_fake_llm(monkeypatch, FunctionLLM(answer))
    config = write_config(tmp_path, wait_budget_s=0.05)
    data = yaml.safe_load(config.read_text())
    data["mcp"]["max_running_jobs"] = 2
    config.write_text(yaml.safe_dump(data))
    async with Client(build_server(str(config))) as client:
        one = (await client.call_tool("delegate", {"task": "TASK-one", "kind": "critical"})).structured_content
        await client.call_tool("delegate", {"task": "TASK-two", "kind": "critical"})
        third = await client.call_tool("delegate", {"task": "TASK-three", "kind": "critical"})
        assert not third.is_error and third.structured_content["status"] == "IN_PROGRESS"
        job = third.structured_content["job_id"]
        status = (await client.call_tool("job_status", {"job_id": job})).structured_content
        assert status["progress"]["stage"] == "queued" and "mcp.max_running_jobs=2" in status["progress"]["message"]
        await anyio.sleep(0.5)
        assert "three" not in started  # still waiting for a slot
        await client.call_tool("job_cancel", {"job_id": one["job_id"]})  # a slot frees: three starts
        done = (await client.call_tool("job_result", {"job_id": job, "wait_s": 20})).structured_content
    assert done["status"] == "COMPLETED" and done["output"]["text"] == "done three"


class _CountingRunner:
    """Counts the jobs it starts; each takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.runs = seconds, []  # type: ignore[var-annotated]

    async def run(self, job: dict[str, Any], progress: Any) -> dict[str, Any]:
        self.runs.append(job["job_id"])
        await progress("draft", "drafted", None)
        await asyncio.sleep(self.seconds)
        return {"status": "COMPLETED", "output": {"text": "ran"}, "trace": []}


class _RunsUntilCancelled:
    """Counts the jobs it starts; ``started`` is set once one runs, and each runs until it is cancelled."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.started = Signal()

    async def run(self, job: dict[str, Any], progress: Any) -> dict[str, Any]:
        self.runs.append(job["job_id"])
        await progress("draft", "drafted", None)
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable: the job runs until it is cancelled")


async def test_a_job_being_cancelled_is_not_taken_up_again_by_a_status_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a cancel read the job's checkpoint, the job was in no task and its row still
    IN_PROGRESS: job_status took it for a job let go of and ran it again, billed.

    The checkpoint read is held open until the status call has been made inside that window."""
    import mcp_server.jobenvelopes as jobenvelopes
    from mcp_server.jobloop import JobLoop
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import IN_PROGRESS, JobStore

    # the read ends when the test opens it, never cut short by the read's own time limit
    monkeypatch.setattr(jobenvelopes, "STOPPED_READ_S", 86_400.0)
    reading, read_done, cancelling = Signal(), Latch(), False

    async def checkpoint(job_id: str, project: str, action: str) -> tuple[None, list[Any]]:
        if cancelling:  # the cancelled job reads what it had made (a handle reads its steps too)
            reading.set()
            await read_done.wait()
        return None, []

    runner = _RunsUntilCancelled()
    manager = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0,
                         job_loop=JobLoop(), stopped_job=checkpoint)
    handle = await manager.submit({"project": "swarm", "action": "delegate", "input": {"task": "t"}}, "me", wait_s=0)
    job_id = handle["job_id"]
    await runner.started.wait()
    cancelling = True
    cancel = asyncio.create_task(manager.cancel(job_id, "me"))
    await reading.wait()  # the cancelled job is reading its checkpoint: in no task, its row not final
    try:
        status = manager.status(job_id, "me")
        assert status["status"] == IN_PROGRESS and status["running_here"] is False, status
        assert runner.runs == [job_id]
    finally:
        read_done.open()
    assert (await cancel)["status"] == "CANCELLED"
    await manager.aclose()
    assert runner.runs == [job_id] and manager.store.get(job_id)["status"] == "CANCELLED"


async def test_without_file_locks_another_servers_job_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows (no fcntl): every other server's job looked gone, and job_status ran it a second time."""
    import mcp_server.jobstore as jobstore
    from mcp_server.jobs import JobManager

    monkeypatch.setattr(jobstore, "_fcntl", lambda: None)
    runner = _CountingRunner(1.0)
    first = JobManager(jobstore.JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    second = JobManager(jobstore.JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    handle = await first.submit({"project": "swarm", "action": "delegate", "input": {"task": "t"}}, "me", wait_s=0)
    await asyncio.sleep(0.1)
    assert second.status(handle["job_id"], "me")["running_here"] is False
    done = await first.result(handle["job_id"], "me", wait_s=5)
    assert done["status"] == "COMPLETED" and runner.runs == [handle["job_id"]]


async def test_a_job_another_live_server_runs_is_said_to_run_there(tmp_path: Path) -> None:
    """Client B's job_status on client A's running job read "waiting to be resumed: job_result or
    job_status resumes it here", while job_result and job_cancel named the other process."""
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore
    from mcp_server.texts import job_line, jobs_text

    runner = _CountingRunner(1.0)
    first = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    second = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    handle = await first.submit({"project": "swarm", "action": "delegate", "input": {"task": "t"}}, "me", wait_s=0)
    await asyncio.sleep(0.1)
    status = second.status(handle["job_id"], "me")
    pid = first.store.lease.token.split("-", 1)[0]
    assert status["running_here"] is False and status["runs_in"] == pid
    said = f"(running in another swarm-mcp process, pid {pid}: ask the client connected to it)"
    assert said in job_line(status) and "waiting to be resumed" not in job_line(status)
    assert said in jobs_text(second.list("me"))
    # as the tools send it: the tool's model kept no runs_in, and the line read "waiting to be resumed"
    from mcp_server.job_tools import JobList, JobStatus, _status_result

    sent = _status_result(JobStatus(**status))
    assert sent.structured_content["runs_in"] == pid and said in sent.content[0].text
    listed = JobList(jobs=[JobStatus(**r) for r in second.list("me")]).model_dump(mode="json")
    assert said in jobs_text(listed["jobs"])
    assert "runs_in" not in first.status(handle["job_id"], "me")
    assert (await first.result(handle["job_id"], "me", wait_s=5))["status"] == "COMPLETED"


def test_a_final_job_is_not_overwritten_and_old_finished_jobs_are_pruned(tmp_path: Path) -> None:
    from mcp_server.jobstore import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    job = {"project": "swarm", "action": "delegate", "input": {"task": "t"}}
    store.create("j1", "me", job)
    assert store.finish("j1", "CANCELLED", {"status": "CANCELLED"})
    assert not store.finish("j1", "COMPLETED", {"status": "COMPLETED"})  # a late result of another server
    assert store.get("j1")["status"] == "CANCELLED"
    store.create("j2", "me", job)  # unfinished: kept however old
    assert store.prune(3600) == 0
    assert store.prune(-1) == 1 and store.get("j1") is None and store.get("j2") is not None
    store.close()


def test_leases_tell_live_servers_from_gone_ones_and_a_store_works_without_file_locks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from mcp_server.jobstore import JobStore, Lease

    folder = tmp_path / "runners"
    folder.mkdir()
    stale = folder / "4242-0123456789ab.lock"  # a killed server's file: nobody holds its lock
    stale.write_text("")
    first, second = Lease(folder), Lease(folder)
    assert not stale.exists() and not list(folder.glob("*.tmp"))  # swept; the live ones were locked before named
    assert second.alive(first.token) and first.alive(second.token) and first.alive(first.token)
    assert not first.alive("4242-0123456789ab") and not first.alive("../../etc/passwd") and not first.alive(None)
    first.close()
    assert not second.alive(first.token) and not (folder / f"{first.token}.lock").exists()
    second.close()

    def no_locks(*args: Any) -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)  # a mount without flock: the store still works, lease-less
    store = JobStore(tmp_path / "jobs.sqlite")
    store.create("j1", "me", {"project": "swarm", "action": "delegate", "input": {"task": "t"}})
    assert store.get("j1")["runner"] == store.lease.token and not store.lease.alive("4242-0123456789ab")
    assert store.claim("j1", store.lease.token)
    store.close()


async def test_shutdown_cancels_the_jobs_then_closes_while_the_closers_own_tasks_still_run() -> None:
    """With PostgreSQL checkpoints ``swarm-mcp`` exited 1 with a CancelledError traceback on every
    clean shutdown: the jobs' loop cancelled every task, psycopg_pool's workers too, and the pool's
    close re-raised their cancellation and left its connections open. A job and a pool worker stand
    in for theirs here."""
    from mcp_server.jobloop import JOB_TASK_PREFIX, JobLoop

    jobs = JobLoop()
    tasks: dict[str, asyncio.Task[None]] = {}
    seen: list[str] = []

    async def spawn() -> None:
        loop = asyncio.get_running_loop()
        tasks["job"] = loop.create_task(asyncio.sleep(3600), name=f"{JOB_TASK_PREFIX}j1")
        tasks["worker"] = loop.create_task(asyncio.sleep(3600), name="pool-worker")
        tasks["straggler"] = loop.create_task(asyncio.sleep(3600))

    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(spawn(), jobs.loop))

    async def final() -> None:  # the pool's close: it stops its own workers
        seen.append(f"job cancelled: {tasks['job'].cancelled()}, worker running: {not tasks['worker'].done()}")
        tasks["worker"].cancel()
        await asyncio.gather(tasks["worker"], return_exceptions=True)
        seen.append("pool closed")

    await jobs.stop(final)  # raised CancelledError before
    assert seen == ["job cancelled: True, worker running: True", "pool closed"]
    assert tasks["straggler"].cancelled()


def test_what_a_stored_input_lost_is_said_for_each_mark() -> None:
    from mcp_server.jobresume import _input_lost
    from mcp_server.jobstore import storable

    assert _input_lost(storable({"task": "Design a task-management-system"})) is None
    lost = str(_input_lost(storable({"images": [{"image": "A" * 1_000_001}]})))
    assert "too large to keep" in lost and "call the tool again with the same arguments (a path is read again)" in lost
    assert "held a secret" in str(_input_lost(storable({"url": "https://h/x?X-Amz-Signature=abcdef123456"})))


async def test_cancelling_a_job_whose_server_is_gone_keeps_what_it_had_paid_for(tmp_path: Path) -> None:
    """Server A was killed after the draft was paid, during the review, while B lived on; B's
    job_cancel stored an empty CANCELLED row (no output, no trace, cost 0), where a cancel on A
    keeps the draft. B now reads what the job's checkpoint holds, as A would have."""
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    read: list[str] = []

    async def stopped_job(job_id: str, project: str, action: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        read.append(job_id)  # the runtime's reader of the job's last checkpoint
        step = {"step": "draft", "kind": "llm", "provider": "fake", "model": "fake", "outcome": "ok",
                "tokens_in": 10, "tokens_out": 20, "latency_ms": 5.0}
        return {"partial": True, "text": "the paid draft"}, [step]

    runner = _RunsUntilCancelled()
    first = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    second = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0,
                        stopped_job=stopped_job)
    handle = await first.submit({"project": "swarm", "action": "delegate", "input": {"task": "t"}}, "me", wait_s=0)
    await runner.started.wait()
    assert second.status(handle["job_id"], "me")["running_here"] is False  # A lives: A's job
    first.store.lease.close()  # A's process is gone (its lock released, as at a kill)
    try:
        cancelled = await second.cancel(handle["job_id"], "me")
        assert cancelled["status"] == "CANCELLED" and read == [handle["job_id"]]
        result = await second.result(handle["job_id"], "me", wait_s=0)
        assert result["output"] == {"partial": True, "text": "the paid draft"}, result
        assert [s["step"] for s in result["trace"]] == ["draft", "cancel"] and result["totals"]["provider_calls"] == 1
        assert runner.runs == [handle["job_id"]]  # B did not run it again to cancel it
    finally:
        first._closing = True
        for task in list(first._tasks.values()):
            task.cancel()


async def test_a_wait_on_another_servers_job_takes_it_over_when_that_server_dies(tmp_path: Path) -> None:
    """B's job_result waited on A's job; A was killed 4 s in, and B waited out its whole wait_s with
    the job frozen (only the next call took it over). It is taken over during the wait now."""
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    hangs, finishes = _RunsUntilCancelled(), _CountingRunner(0.1)
    first = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: hangs, wait_budget_s=lambda: 0)
    second = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: finishes, wait_budget_s=lambda: 0)
    handle = await first.submit({"project": "swarm", "action": "delegate", "input": {"task": "t"}}, "me", wait_s=0)
    await hangs.started.wait()
    waiting = asyncio.create_task(second.result(handle["job_id"], "me", wait_s=5))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # A lives: B waits on its row
    first.store.lease.close()  # A's process is gone
    try:
        done = await waiting
        assert done["status"] == "COMPLETED" and done["output"] == {"text": "ran"}, done.get("error")
        assert finishes.runs == [handle["job_id"]]
    finally:
        first._closing = True
        for task in list(first._tasks.values()):
            task.cancel()


async def test_a_follow_up_while_the_threads_turn_still_runs_is_refused_naming_that_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow-up ran without the earlier turn (its trace: "no earlier turns") and the thread then
    held turn 1's question and turn 3's answer, out of order."""
    use_fake_llm(monkeypatch, SlowLLM(delay_s=1.5, text="ultramarine"))
    config = write_config(tmp_path, wait_budget_s=0.1)
    async with Client(build_server(str(config))) as client:
        first = (await client.call_tool("delegate", {"task": "What is my favourite colour?", "kind": "critical"})
                 ).structured_content
        assert first["status"] == "IN_PROGRESS"
        early = await client.call_tool("delegate", {"task": "And why?", "kind": "critical", "thread_id": first["thread_id"]})
        assert early.is_error and "InputError: thread_id: thread" in early.content[0].text
        assert f"has a turn still running (job {first['job_id']})" in early.content[0].text
        done = (await client.call_tool("job_result", {"job_id": first["job_id"], "wait_s": 10})).structured_content
        assert done["status"] == "COMPLETED"
        args = {"task": "And why?", "kind": "critical", "thread_id": first["thread_id"], "idempotency_key": "k-why"}
        later = (await client.call_tool("delegate", args)).structured_content
        assert later["thread_id"] == first["thread_id"]
        # the follow-up's own retry while it runs is that job, not "a turn still running" (a diff review)
        retried = await client.call_tool("delegate", args)
        assert not retried.is_error, retried.content[0].text
        assert retried.structured_content["job_id"] == later["job_id"]


async def test_a_job_that_ends_while_its_store_cannot_be_written_is_answered_and_stored_later(tmp_path: Path) -> None:
    """The disk full at a job's end: the waiting job_result got an internal error, the job sat
    IN_PROGRESS for good ("waiting to be resumed"), and only a restart ran it, paying again."""
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    runner = _CountingRunner(0.3)
    manager = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    handle = await manager.submit({"project": "swarm", "action": "delegate", "input": {"task": "t"}}, "me", wait_s=0)
    manager.store._db.execute("PRAGMA query_only = ON")  # every write refused, as on a full disk
    try:
        done = await manager.result(handle["job_id"], "me", wait_s=5)
        assert done["status"] == "COMPLETED" and done["output"] == {"text": "ran"}, done.get("error")
        assert manager.status(handle["job_id"], "me")["status"] == "COMPLETED"
    finally:
        manager.store._db.execute("PRAGMA query_only = OFF")
    assert (await manager.cancel(handle["job_id"], "me"))["status"] == "COMPLETED"  # a cancel leaves it finished
    assert manager.list("me")[0]["status"] == "COMPLETED"  # and it is stored
    assert manager.store.get(handle["job_id"])["status"] == "COMPLETED" and runner.runs == [handle["job_id"]]
    await manager.aclose()


def test_a_job_store_that_cannot_be_written_is_said_with_its_file(tmp_path: Path) -> None:
    """A read-only jobs.sqlite stopped swarm-mcp at start with a 59-line traceback (its prune)."""
    from core.errors import ProviderUnavailable
    from mcp_server.jobstore import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    store._db.execute("PRAGMA query_only = ON")
    with pytest.raises(ProviderUnavailable, match=r"the job store .*jobs\.sqlite cannot be written \(attempt to write"
                                                  r" a readonly database\)"):
        store.prune(86400)
    store.close()


async def test_the_same_idempotency_key_on_two_servers_at_once_gives_the_first_job(tmp_path: Path) -> None:
    """Two servers looked the key up before either stored its job: one caller got InternalError
    (UNIQUE constraint failed: jobs.owner, jobs.idempotency_key)."""
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    runner = _CountingRunner(0.2)
    first = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    second = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "once"}}
    handle = await first.submit(job, "me", wait_s=0, idempotency_key="k-race")
    looked: list[str] = []
    real = second.store.by_idempotency_key

    def before_the_first_stored(owner: str, key: str) -> Any:
        looked.append(key)
        return None if len(looked) == 1 else real(owner, key)  # its first look came before A's insert

    second.store.by_idempotency_key = before_the_first_stored  # type: ignore[method-assign]
    again = await second.submit(job, "me", wait_s=5, idempotency_key="k-race")
    assert again["job_id"] == handle["job_id"] and len(looked) == 2, again
    assert runner.runs == [handle["job_id"]]
    await first.result(handle["job_id"], "me", wait_s=5)
    await first.aclose()
    await second.aclose()
