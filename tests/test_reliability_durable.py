"""Durable jobs: a SIGKILLed worker resumes by job id, idempotency keys, Postgres, pruning.

The crash tests run real processes: a worker runs a delegation job on the shipped config with
the ``local`` model pointed at a loopback fake OpenAI server; the reviewer's call hangs, the
test SIGKILLs the worker, a second worker resumes the same job id. The fake server counts
requests, so "the draft is paid once" is observed at the wire.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_openai import Behaviour, FakeOpenAI, RecordedRequest

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "reliability_worker.py"
LOCAL_ALIAS = "smollm2-135m-instruct"
DRAFT = "The durable draft."
APPROVE = '{"approved": true, "score": 9, "issues": [], "suggestion": ""}'
PG_DSN = os.environ.get("SWARM_TEST_PG_DSN")
needs_pg = pytest.mark.skipif(
    not PG_DSN, reason="SWARM_TEST_PG_DSN is unset: run through scripts/test, which starts PostgreSQL (scripts/services)"
)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(server.port))
        yield server


def _config_with(tmp_path: Path, checkpointer: dict[str, Any]) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = checkpointer
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _is_review(request: RecordedRequest) -> bool:
    # The review call asks for a JSON verdict; draft and revise calls do not.
    return "response_format" in request.body


def _wait_for(predicate: Any, timeout_s: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"worker exited ({proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _worker(job: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(job)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _result_of(proc: subprocess.Popen[str], timeout_s: float = 90) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err[-3000:]
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _crash_then_resume(fake: FakeOpenAI, env: dict[str, str], job_id: str) -> dict[str, Any]:
    job = {"project": "swarm", "action": "delegate", "job_id": job_id,
           "input": {"task": "Write one sentence about durability.", "kind": "bulk_content"}}
    fake.script(LOCAL_ALIAS, Behaviour.answer(DRAFT), Behaviour.hang(120))
    first = _worker(job, env)
    try:
        _wait_for(lambda: any(_is_review(r) for r in fake.requests_for(LOCAL_ALIAS)), 90, "the review call", first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    fake.script(LOCAL_ALIAS, Behaviour.answer(APPROVE))
    return _result_of(_worker(job, env))


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}


@pytest.mark.slow  # two worker processes, each importing litellm
def test_sigkilled_worker_resumes_by_job_id_and_pays_the_draft_once(fake_models: FakeOpenAI) -> None:
    result = _crash_then_resume(fake_models, _env(), "crash-sqlite-1")
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == DRAFT
    assert result["output"]["review"]["approved"] is True
    sent = fake_models.requests_for(LOCAL_ALIAS)
    drafts = [r for r in sent if not _is_review(r)]
    reviews = [r for r in sent if _is_review(r)]
    assert len(drafts) == 1, "the completed draft node ran again after the crash"
    assert len(reviews) == 2  # the one cut off by SIGKILL, and the one that answered
    steps = [s["step"] for s in result["trace"] if s["kind"] == "node"]
    assert "draft" in steps and "review" in steps  # the resumed job's trace is whole


@needs_pg
@pytest.mark.slow
def test_sigkilled_worker_resumes_from_postgres(fake_models: FakeOpenAI, tmp_path: Path) -> None:
    config = _config_with(tmp_path, {"kind": "postgres", "dsn": "${SWARM_TEST_PG_DSN}"})
    job_id = f"crash-pg-{time.time_ns()}"
    result = _crash_then_resume(fake_models, _env(SWARM_CONFIG=str(config)), job_id)
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == DRAFT
    assert len([r for r in fake_models.requests_for(LOCAL_ALIAS) if not _is_review(r)]) == 1


# --- idempotency keys ------------------------------------------------------------------------


async def test_same_idempotency_key_yields_one_job(make_context: Any) -> None:
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    calls: list[str] = []

    def answer(messages: Any, config: Any) -> str:
        calls.append(config.step)
        return "one answer"

    make = make_context(FunctionLLM(answer))
    job = {"project": "swarm", "action": "delegate", "idempotency_key": "order-42",
           "input": {"task": "Say hi.", "kind": "critical"}}
    first = await dispatch(job, make)
    second = await dispatch({**job, "job_id": "a-new-runpod-delivery-id"}, make)
    assert first["status"] == second["status"] == "COMPLETED"
    assert first["job_id"] == second["job_id"] and first["job_id"].startswith("idem-")
    assert second["output"]["text"] == "one answer"
    assert calls == ["draft"]  # the second submission called no provider
    assert first["trace"][-1]["detail"] is None
    assert second["trace"][-1]["detail"].startswith("replayed: the stored result of this job id; no provider was called")
    other = await dispatch({**job, "idempotency_key": "order-43"}, make)
    assert other["job_id"] != first["job_id"] and calls == ["draft", "draft"]


async def test_a_job_id_given_again_for_another_action_is_refused_not_resumed(make_context: Any) -> None:
    """A job id names one job: given again for another action it used to come back COMPLETED with
    the other graph's state (consensus: an empty synthesis over the delegation's trace) or crash
    (upscale: KeyError). Same action, same id: the stored result, no provider call."""
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    calls: list[str] = []

    def answer(messages: Any, config: Any) -> str:
        calls.append(config.step)
        return "one answer"

    make = make_context(FunctionLLM(answer))
    first = await dispatch({"project": "swarm", "action": "delegate", "job_id": "rev-j1",
                            "input": {"task": "Say hello.", "kind": "critical"}}, make)
    assert first["status"] == "COMPLETED" and calls == ["draft"]
    for project, action, inp in [("swarm", "consensus", {"question": "Is tea good?"})]:  # any graph: run_graph
        other = await dispatch({"project": project, "action": action, "job_id": "rev-j1", "input": inp}, make)
        assert other["status"] == "FAILED", other
        assert other["error"] == {"type": "InputError", "message": (
            f"job_id: 'rev-j1' is a job of swarm/delegate, not {project}/{action}; give this job another job_id (or none)"),
            "field": "job_id"}
    again = await dispatch({"project": "swarm", "action": "delegate", "job_id": "rev-j1",
                            "input": {"task": "Say hello.", "kind": "critical"}}, make)
    assert again["output"]["text"] == "one answer" and calls == ["draft"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "tab\there"])
async def test_bad_idempotency_key_is_an_input_error(make_context: Any, key: str) -> None:
    from providers.testing import FakeLLM
    from swarm.dispatcher import dispatch

    result = await dispatch({"project": "swarm", "action": "delegate", "idempotency_key": key,
                             "input": {"task": "x"}}, make_context(FakeLLM()))
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "InputError" and "idempotency_key" in result["error"]["message"]


def test_job_ids_for_keys_are_scoped_and_valid() -> None:
    from swarm.dispatcher import JobRequest
    from swarm.idempotency import job_id_for_key

    a = job_id_for_key("swarm", "delegate", "k")
    assert a == job_id_for_key("swarm", "delegate", "k")
    assert a != job_id_for_key("swarm", "research", "k") != job_id_for_key("swarm", "delegate", "k", owner="bob")
    JobRequest(project="swarm", action="delegate", job_id=a)  # a derived id passes the job_id pattern


# --- Postgres selectable in config, pruning ---------------------------------------------------


@needs_pg
async def test_postgres_checkpointer_from_config_runs_and_resumes(fake_models: FakeOpenAI, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from swarm.runtime import Runtime

    monkeypatch.setenv("SWARM_CONFIG", str(_config_with(tmp_path, {"kind": "postgres", "dsn": "${SWARM_TEST_PG_DSN}"})))
    fake_models.script(LOCAL_ALIAS, Behaviour.answer("from postgres"))
    job_id = f"pg-config-{time.time_ns()}"
    job = {"project": "swarm", "action": "delegate", "job_id": job_id, "input": {"task": "hi", "kind": "critical"}}
    runtime = Runtime()
    try:
        first = await runtime.run(job)
        second = await runtime.run(job)
    finally:
        await runtime.aclose()
    assert first["status"] == "COMPLETED", first["error"]
    assert second["output"]["text"] == "from postgres"
    assert len(fake_models.requests_for(LOCAL_ALIAS)) == 1  # the second run read the stored state
    with psycopg.connect(PG_DSN) as conn:
        rows = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (job_id,)).fetchone()
    assert rows and rows[0] > 0


async def _opening_fails(tmp_path: Path, dsn: str, *, timeout_s: float) -> tuple[Any, Any]:
    """(the ConfigError opening a postgres checkpointer at ``dsn`` raised, the config), with the
    connect timeout cut to ``timeout_s``."""
    from core.config import load_config
    from core.errors import ConfigError
    from graphs.checkpoint import open_checkpointer

    config = load_config(_config_with(tmp_path, {"kind": "postgres", "dsn": dsn}))
    import graphs.checkpoint as checkpoint

    checkpoint.POSTGRES_CONNECT_TIMEOUT_S, saved = timeout_s, checkpoint.POSTGRES_CONNECT_TIMEOUT_S
    try:
        with pytest.raises(ConfigError) as info:
            async with open_checkpointer(config):
                pass
    finally:
        checkpoint.POSTGRES_CONNECT_TIMEOUT_S = saved
    return info, config


async def test_postgres_unreachable_is_a_config_error_without_the_password(tmp_path: Path) -> None:
    from fake_openai import RefusedPort


    with RefusedPort() as port:
        dsn = f"postgresql://swarm:pg-pass-planted-777@127.0.0.1:{port.port}/db?connect_timeout=1"
        info, _ = await _opening_fails(tmp_path, dsn, timeout_s=2.0)
    assert "checkpointer.dsn" in str(info.value)
    assert "pg-pass-planted-777" not in str(info.value)
    assert "refused" in str(info.value).lower()  # psycopg's reason, not only the pool's "timed out"


@pytest.mark.parametrize("dsn", [
    "postgresql://swarm:my%zzsecretpw@127.0.0.1:{port}/swarm",  # psycopg quoted the bad token: the password
    "postgresql://swarm:Secr@tpw99zz@127.0.0.1:{port}/swarm",  # an '@' in it: the rest read as the host
])
async def test_a_malformed_dsn_is_said_without_any_piece_of_its_password(tmp_path: Path, dsn: str) -> None:
    from fake_openai import RefusedPort

    from core.errors import ConfigError
    from core.redact import redact
    from swarm.threads import open_thread_store

    with RefusedPort() as port:
        dsn = dsn.format(port=port.port)
        info, config = await _opening_fails(tmp_path, dsn, timeout_s=1.0)
        with pytest.raises(ConfigError) as threads:
            open_thread_store(config.checkpointer)
    for message in (str(info.value), str(threads.value)):
        assert "malformed" in message and "checkpointer.dsn" in message
        assert "secretpw" not in message and "tpw99zz" not in message, message
    password = dsn.split("://", 1)[1].rpartition("@")[0].split(":", 1)[1]  # registered by the load, as it is
    assert redact(f"psycopg said: bad token: \"{password}\"") == "psycopg said: bad token: \"[REDACTED]\""


async def test_postgres_lost_during_a_job_is_unavailable_and_names_the_job_to_resume(make_context: Any) -> None:
    """PostgreSQL stopped mid-job: the saver's OperationalError came back as "internal error"."""
    import psycopg

    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    def lost(messages: Any, config: Any) -> str:  # where the saver raised it: inside the running job
        raise psycopg.OperationalError("the connection is lost")

    result = await dispatch({"project": "swarm", "action": "delegate", "job_id": "pg-lost-1", "input": {"task": "hi"}},
                            make_context(FunctionLLM(lost)))
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "ProviderUnavailable"
    assert "PostgreSQL (checkpointer.dsn) is unreachable: the connection is lost" in result["error"]["message"]
    assert "job_id 'pg-lost-1' to resume" in result["error"]["message"]


async def test_a_sqlite_checkpoint_store_that_cannot_be_written_is_unavailable_keeps_the_steps_and_resumes(
        tmp_path: Path) -> None:
    """Another process held the checkpoint file's write lock (a backup, a sqlite3 shell) past the
    saver's wait: the job came back "InternalError", its trace only ``dispatch`` and 0 tokens,
    though the draft had been made and paid for, and the CLI said nothing of resuming."""
    import sqlite3

    from core.config import load_config
    from graphs.context import JobContext, Providers
    from graphs.sqlite_saver import LoopSqliteSaver
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    path = tmp_path / "checkpoints.sqlite"
    blocker = sqlite3.connect(path, isolation_level=None)
    locked = False

    def answer(messages: Any, config: Any) -> Any:
        nonlocal locked
        if config.step == "review" and not locked:  # another process takes the write lock
            blocker.execute("BEGIN IMMEDIATE")
            locked = True
        return {"approved": True, "score": 9, "issues": [], "suggestion": ""} if config.step == "review" else "a draft"

    cfg = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    job = {"project": "swarm", "action": "delegate", "job_id": "locked-1", "input": {"task": "hi"}}
    with LoopSqliteSaver.open(str(path), busy_timeout_s=0.3) as saver:
        async def make(job_id: str) -> JobContext:
            return JobContext(job_id=job_id, config=cfg, providers=Providers(cfg, {"llm": lambda: FunctionLLM(answer)}),
                              checkpointer=saver)

        result = await dispatch(job, make)
        assert result["status"] == "FAILED" and result["error"]["type"] == "ProviderUnavailable", result["error"]
        said = result["error"]["message"]
        assert "SQLite checkpoint store (checkpointer.path) cannot be written now: database is locked" in said, said
        assert "job_id 'locked-1' to resume it" in said
        assert any(s["step"] == "draft" and s["kind"] == "llm" for s in result["trace"]), result["trace"]
        blocker.execute("ROLLBACK")
        again = await dispatch(job, make)
    assert again["status"] == "COMPLETED" and again["output"]["text"] == "a draft", again["error"]
    blocker.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory", pytest.param("postgres", marks=needs_pg)])
async def test_prune_deletes_threads_past_retention_only(kind: str, tmp_path: Path) -> None:
    from core.config import load_config
    from graphs.checkpoint import open_checkpointer, prune_checkpoints
    from graphs.delegation.graph import build_graph
    from providers.testing import FakeLLM

    section = {"sqlite": {"kind": "sqlite", "path": str(tmp_path / "cp.sqlite")}, "memory": {"kind": "memory"},
               "postgres": {"kind": "postgres", "dsn": PG_DSN or ""}}[kind]
    config = load_config(_config_with(tmp_path, {**section, "retention_days": 2}))
    thread = f"prune-{kind}-{time.time_ns()}"
    async with open_checkpointer(config, prune=False) as saver:
        graph = build_graph(FakeLLM(["a draft"]), saver)
        state = {"task": "t", "kind": "critical", "tier": None, "primary": "x", "reviewer": None,
                 "max_revisions": 0, "trace": []}
        await graph.ainvoke(state, {"configurable": {"thread_id": thread}}, durability="sync")
        kept = await prune_checkpoints(config, saver, now=time.time() + 1.9 * 86400)
        assert thread not in kept
        assert (await graph.aget_state({"configurable": {"thread_id": thread}})).values
        pruned = await prune_checkpoints(config, saver, now=time.time() + 2.1 * 86400)
        assert thread in pruned
        assert not (await graph.aget_state({"configurable": {"thread_id": thread}})).values


async def test_opener_prunes_at_most_once_per_process_and_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import graphs.checkpoint as checkpoint
    from core.config import load_config

    config = load_config(_config_with(tmp_path, {"kind": "sqlite", "path": str(tmp_path / "once.sqlite")}))
    runs: list[float] = []

    async def counting(config: Any, saver: Any = None, *, now: float | None = None) -> list[str]:
        runs.append(clock[0])
        return []

    monkeypatch.setattr(checkpoint, "prune_checkpoints", counting)
    clock = [1000.0]
    monkeypatch.setattr(checkpoint, "_clock", lambda: clock[0])
    for _ in range(2):
        async with checkpoint.open_checkpointer(config):
            pass
    assert len(runs) == 1
    clock[0] += checkpoint.PRUNE_INTERVAL_S + 1
    async with checkpoint.open_checkpointer(config):
        pass
    assert len(runs) == 2


def test_checkpoint_id_floor_orders_like_langgraph_ids() -> None:
    from langgraph.checkpoint.base.id import uuid6

    from graphs.checkpoint import checkpoint_id_floor

    now = time.time()
    minted = str(uuid6())
    assert checkpoint_id_floor(now - 1) < minted < checkpoint_id_floor(now + 1)
