"""With jobs on a RunPod endpoint, a model whose key is unset on this machine is told as what it
is: information about this machine (no job sends the key), the worker's own key deciding; it read
"is not set: skipped, the chain goes on to X (unreachable from here)", as if this machine's keys
and reach chose the chain, while DeepSeek's own line said that what this machine reaches decides
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai import RefusedPort
from test_doctor import FAKE_KEY, RUNPOD_KEY, FakeRunPod, findings, write_config


@pytest.fixture(autouse=True)
def not_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNPOD_POD_ID", "RUNPOD_WEBHOOK_GET_JOB", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY",
                 "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    server = FakeRunPod(200)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    monkeypatch.setenv("RUNPOD_API_BASE", server.url)
    yield server
    server.close()


def test_a_key_unset_here_is_information_about_this_machine_when_jobs_run_on_runpod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], endpoint: FakeRunPod
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with RefusedPort() as refused:  # DeepSeek unreachable from here
        for name in ("DEEPSEEK_API_BASE", "DEEPSEEK_Q4_API_BASE"):
            monkeypatch.setenv(name, refused.url)
        monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
        code, found = findings(capsys, write_config(tmp_path), "--quick")

    deepseek = found["model deepseek-v3.1-q8"]
    assert "what this machine reaches decides nothing" in deepseek["detail"], deepseek
    for name, env in (("gemini-2.5-flash-lite", "GEMINI_API_KEY"), ("claude-opus-5-5", "ANTHROPIC_API_KEY")):
        line = found[f"model {name}"]
        assert line["status"] == "info", line
        assert line["detail"] == (f"{env} is not set on this machine, so no job sends it; jobs run on RunPod endpoint"
                                  f" abc123, whose worker calls the models: its own {env} decides whether this model"
                                  " is called"), line
        assert "chain goes on" not in line["detail"] and "unreachable from here" not in line["detail"], line
        assert line["fix"] == (f"set {env} on the endpoint's workers, or export {env}=... here to send it with each job")
    assert code == 0, found


def test_a_key_unset_here_still_names_the_chain_when_jobs_run_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWARM_RUNNER", "local")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    _, found = findings(capsys, write_config(tmp_path), "--quick")

    line = found["model gemini-2.5-flash-lite"]
    assert line["status"] == "info" and "GEMINI_API_KEY is not set: skipped, the chain goes on to" in line["detail"], line
    assert line["fix"] == "export GEMINI_API_KEY=..."
