"""``swarm doctor`` says where jobs run as ``make_executor`` decides it: ``runner.kind: runpod``
without an endpoint or a key refuses every job (doctor said "jobs run in-process" or "jobs run on
RunPod endpoint (none set), whose worker calls the models"); on a RunPod worker jobs run there,
so the models' lines judge what this machine reaches; each fix names the change that works for
the config file at hand (``export SWARM_RUNNER=local`` only when the file reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import WORKER_QUEUE
from fake_openai import RefusedPort
from test_doctor import FAKE_KEY, RUNPOD_KEY, FakeRunPod, findings, write_config

from core.config import load_config
from core.errors import ConfigError
from swarm.executors import make_executor, runner_in_effect
from swarm.executors.runpod import RunPodExecutor

Q8 = "model deepseek-v3.1-q8"


@pytest.fixture(autouse=True)
def not_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNPOD_POD_ID", "RUNPOD_WEBHOOK_GET_JOB", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY",
                 "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def refused() -> Iterator[RefusedPort]:
    with RefusedPort() as port:
        yield port


def _deepseek_at(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
    monkeypatch.setenv("DEEPSEEK_API_BASE", base)
    monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", base)


# --- runner.kind: runpod without an endpoint or a key ---------------------------------------------


def test_runner_runpod_without_its_key_says_jobs_cannot_run_and_judges_the_models_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    """It said 'endpoint abc123 is set but RUNPOD_API_KEY is not -> jobs run in-process' while every
    job was refused, and DeepSeek's line 'jobs run on RunPod endpoint abc123, whose worker calls the models'."""
    monkeypatch.setenv("SWARM_RUNNER", "runpod")
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    _deepseek_at(monkeypatch, refused.url)

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    runpod = found["runpod"]
    assert code == 1 and runpod["status"] == "fail", runpod
    assert runpod["detail"].startswith("jobs cannot run: SWARM_RUNNER=runpod but RUNPOD_API_KEY is not set"), runpod
    assert "in-process" not in runpod["detail"]
    assert runpod["fix"] == "export RUNPOD_API_KEY=..., or export SWARM_RUNNER=local to run them on this machine"
    q8 = found[Q8]
    assert q8["status"] == "warn" and "the chain goes on to local" in q8["detail"], q8
    assert "RunPod" not in q8["detail"]


def test_runner_runpod_without_an_endpoint_names_nothing_it_would_run_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    monkeypatch.setenv("SWARM_RUNNER", "runpod")
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    _deepseek_at(monkeypatch, refused.url)

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    assert code == 1 and found["runpod"]["detail"].startswith("jobs cannot run: SWARM_RUNNER=runpod but no endpoint is set")
    assert found["runpod"]["fix"].startswith("export RUNPOD_ENDPOINT_ID=..., or export SWARM_RUNNER=local")
    assert found[Q8]["status"] == "warn" and "(none set)" not in found[Q8]["detail"], found[Q8]


def test_make_executor_refuses_as_before_when_the_runner_says_refused(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_RUNNER", "runpod")
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep")
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    config = load_config(config_file)
    assert runner_in_effect(config).kind == "refused"
    with pytest.raises(ConfigError) as caught:
        make_executor(config, runtime=object())
    assert str(caught.value) == ("key runner.runpod.api_key_env: runner.kind is runpod but $RUNPOD_API_KEY is empty;"
                                 " export your RunPod API key")
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "")
    with pytest.raises(ConfigError) as caught:
        make_executor(load_config(config_file), runtime=object())
    assert str(caught.value) == "key runner.runpod.endpoint_id: runner.kind is runpod but no endpoint is set; set RUNPOD_ENDPOINT_ID"


# --- on a RunPod worker ---------------------------------------------------------------------------


def test_on_a_worker_with_a_key_the_models_are_judged_here_where_the_worker_calls_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    """A worker whose environment holds RUNPOD_API_KEY too: DeepSeek's line said 'jobs run on RunPod
    endpoint abc123, whose worker calls the models' (INFO) on that very worker, and doctor ended OK
    with no model that answers."""
    server = FakeRunPod(200)
    try:
        monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", WORKER_QUEUE)
        monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
        monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
        monkeypatch.setenv("RUNPOD_API_BASE", server.url)
        _deepseek_at(monkeypatch, refused.url)

        def edit(raw: dict[str, Any]) -> None:
            raw["providers"]["llm"]["fallback_chain"] = ["deepseek"]  # nothing here answers

        code, found = findings(capsys, write_config(tmp_path, edit), "--quick")
    finally:
        server.close()

    assert code == 1 and found[Q8]["status"] == "fail", found[Q8]
    assert "RunPod" not in found[Q8]["detail"]
    runpod = found["runpod"]
    assert runpod["status"] == "info", runpod
    assert runpod["detail"].startswith("this is a RunPod worker of endpoint abc123: jobs come from its queue and run here")
    assert server.seen == []  # a worker sends no job to its endpoint: nothing asked of it


def test_make_executor_on_a_worker_follows_the_config_as_before(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """handler.py never asks make_executor; a swarm run or swarm-mcp started on a worker sends
    jobs where the config says. A GPU pod (RUNPOD_POD_ID, set on every RunPod pod, and no job
    queue) is no worker: doctor says where its jobs go, as on any machine."""
    monkeypatch.setenv("RUNPOD_POD_ID", "gpu-pod-1")
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep")
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    config = load_config(config_file)
    assert runner_in_effect(config).kind == "runpod"
    monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", WORKER_QUEUE)
    assert runner_in_effect(config).kind == "local"
    assert isinstance(make_executor(config, runtime=object()), RunPodExecutor)


# --- fixes that name what sets the value -----------------------------------------------------------


def test_a_runner_kind_written_in_the_file_is_fixed_in_the_file_not_with_swarm_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """'runner: {kind: runpod}' written out: the fix said 'SWARM_RUNNER=local', which that file never reads."""
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)

    def edit(raw: dict[str, Any]) -> None:
        raw["runner"]["kind"] = "runpod"

    config = write_config(tmp_path, edit)
    code, found = findings(capsys, config, "--quick")

    runpod = found["runpod"]
    assert code == 1 and runpod["detail"].startswith("jobs cannot run: runner.kind=runpod but RUNPOD_API_KEY"), runpod
    assert runpod["fix"] == f"export RUNPOD_API_KEY=..., or set runner.kind: local in {config} to run them on this machine"
    assert "SWARM_RUNNER" not in runpod["fix"]


def test_an_endpoint_written_in_the_file_is_fixed_in_the_file_not_by_unsetting_a_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    monkeypatch.setenv("RUNPOD_API_BASE", f"{refused.url}/v2")

    def edit(raw: dict[str, Any]) -> None:
        raw["runner"]["runpod"]["endpoint_id"] = "abc123"

    config = write_config(tmp_path, edit)
    code, found = findings(capsys, config, "--quick")

    fix = found["runpod"]["fix"]
    assert code == 1 and "connection refused" in found["runpod"]["detail"], found["runpod"]
    assert fix.endswith(f"or run jobs on this machine: set runner.runpod.endpoint_id: '' in {config}"
                        " (or export SWARM_RUNNER=local)"), fix
    assert "RUNPOD_ENDPOINT_ID" not in fix
