"""``swarm doctor`` on a machine that cannot reach what is configured (a newcomer's walkthrough,
offline): the RunPod endpoint's line says why (the host does not resolve, the connection is
refused) and what to do (this machine's network, RUNPOD_ENDPOINT_ID, or run jobs here); an
endpoint the runner does not use is INFO; a model that does not answer is a WARN naming the
model its chain falls back on, a FAIL only when nothing in the chain answers, and decides
nothing when jobs run on RunPod; the secrets line says so when none is set."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, RefusedPort
from test_doctor import FAKE_KEY, RUNPOD_KEY, FakeRunPod, doctor, findings, line_of, write_config

Q8, Q4 = "model deepseek-v3.1-q8", "model deepseek-v3.1-q4"
OPUS = "model claude-opus-5-5"


@pytest.fixture(autouse=True)
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy: requests go straight to the loopback servers, as the findings here assume."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def refused() -> Iterator[RefusedPort]:
    with RefusedPort() as port:
        yield port


@pytest.fixture
def fake_runpod() -> Iterator[Callable[[int], FakeRunPod]]:
    started: list[FakeRunPod] = []

    def start(status: int) -> FakeRunPod:
        started.append(FakeRunPod(status))
        return started[-1]

    yield start
    for server in started:
        server.close()


def _endpoint(monkeypatch: pytest.MonkeyPatch, api_base: str | None) -> None:
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    if api_base is None:
        monkeypatch.delenv("RUNPOD_API_BASE", raising=False)
    else:
        monkeypatch.setenv("RUNPOD_API_BASE", api_base)


def _deepseek_at(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
    monkeypatch.setenv("DEEPSEEK_API_BASE", base)  # both deepseek models: probed with GET {base}/models
    monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", base)


# --- the RunPod endpoint ------------------------------------------------------------------------


def test_an_endpoint_whose_host_does_not_resolve_says_so_and_how_to_run_jobs_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Offline, with RunPod's own API: 'cannot reach ... (ConnectError); fix: check RUNPOD_API_BASE',
    a variable no document names. The resolver here answers no for api.runpod.ai, as it does offline."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "api.runpod.ai":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    _endpoint(monkeypatch, None)

    code, out = doctor(capsys, write_config(tmp_path), "--quick")

    line = line_of(out, "runpod")
    assert code == 1 and line.startswith("FAIL  "), line
    assert "cannot reach https://api.runpod.ai/v2/abc123/health (ConnectError)" in line
    assert "api.runpod.ai does not resolve here: no such host, or no network" in line, line
    assert "fix: check this machine's network and proxy (HTTPS_PROXY) and RUNPOD_ENDPOINT_ID" in line, line
    assert line.endswith("or run jobs on this machine: unset RUNPOD_ENDPOINT_ID (or export SWARM_RUNNER=local)"), line
    assert "RUNPOD_API_BASE" not in line  # RunPod's own address: nothing to set
    assert RUNPOD_KEY not in out


def test_an_endpoint_at_a_refused_address_names_the_address_and_runpod_api_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    _endpoint(monkeypatch, f"{refused.url}/v2")

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    line = found["runpod"]
    assert code == 1 and line["status"] == "fail", line
    assert f"connection refused by 127.0.0.1:{refused.port}" in line["detail"], line
    assert line["fix"].startswith(f"check that {refused.url}/v2 is up and the address is right"), line
    assert "RUNPOD_API_BASE: set only when the API is at another address" in line["fix"], line
    assert "or run jobs on this machine" in line["fix"]


def test_an_endpoint_the_local_runner_does_not_use_is_info_and_not_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    fake_runpod: Callable[[int], FakeRunPod],
) -> None:
    """SWARM_RUNNER=local ran the jobs here, yet doctor --quick FAILed on the endpoint and exited 1."""
    server = fake_runpod(500)
    _endpoint(monkeypatch, server.url)
    monkeypatch.setenv("SWARM_RUNNER", "local")

    code, out = doctor(capsys, write_config(tmp_path), "--quick")

    line = line_of(out, "runpod")
    assert code == 0 and line.startswith("INFO  "), line
    assert "endpoint abc123 is set but not used: the runner is local (SWARM_RUNNER=local), jobs run in-process" in line
    assert server.seen == []  # nothing is asked of an endpoint no job goes to


def test_runner_runpod_without_an_endpoint_fails_instead_of_promising_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWARM_RUNNER", "runpod")
    code, found = findings(capsys, write_config(tmp_path), "--quick")
    assert code == 1 and found["runpod"]["status"] == "fail", found["runpod"]
    assert "no endpoint is set" in found["runpod"]["detail"] and "RUNPOD_ENDPOINT_ID" in found["runpod"]["fix"]


# --- models that do not answer ------------------------------------------------------------------


def test_an_unreachable_model_whose_chain_reaches_the_local_model_is_a_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    """DeepSeek unreachable: jobs completed on the local model, yet doctor FAILed and exited 1,
    and the lines of claude-opus said its chain 'goes on to deepseek-v3.1-q8' as if it answered."""
    _deepseek_at(monkeypatch, refused.url)

    code, out = doctor(capsys, write_config(tmp_path), "--quick")

    q8 = line_of(out, Q8)
    assert code == 0 and q8.startswith("WARN  "), out
    assert "unreachable: could not connect (connection refused by 127.0.0.1" in q8, q8
    assert "calls fall back: the chain goes on to local (each job first spends time on this one)" in q8, q8
    assert q8.endswith(f"fix: check that {refused.url} is up and the address is right; or unset DEEPSEEK_API_KEY to skip it at once")
    assert line_of(out, Q4).startswith("WARN  ")
    opus = line_of(out, OPUS)
    assert opus.startswith("INFO  ")
    assert "skipped, the chain goes on to deepseek-v3.1-q8 (unreachable from here, see its line), then local" in opus, opus
    assert FAKE_KEY not in out


def test_an_unreachable_model_with_nothing_behind_it_that_answers_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    _deepseek_at(monkeypatch, refused.url)

    def edit(raw: dict[str, Any]) -> None:
        raw["providers"]["llm"]["fallback_chain"] = ["deepseek"]

    code, found = findings(capsys, write_config(tmp_path, edit), "--quick")

    assert code == 1
    for check in (Q8, Q4):
        assert found[check]["status"] == "fail" and "fall back" not in found[check]["detail"], found[check]


def test_the_fallback_named_is_one_whose_canary_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refused: RefusedPort
) -> None:
    """Without --quick the local model's canary decides whether it is a fallback that answers."""
    _deepseek_at(monkeypatch, refused.url)
    config = write_config(tmp_path)
    with FakeOpenAI() as local:
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(local.port))
        _, found = findings(capsys, config)
        assert found["canary local"]["status"] == "ok"
        assert found[Q8]["status"] == "warn" and "the chain goes on to local" in found[Q8]["detail"], found[Q8]

        local.canary_ok = False
        code, found = findings(capsys, config)
    assert code == 1 and found["canary local"]["status"] == "fail"
    assert found[Q8]["status"] == "fail" and "fall back" not in found[Q8]["detail"], found[Q8]
    assert found[OPUS]["status"] == "warn", found[OPUS]  # its key unset leaves a chain with no model that answers


def test_when_jobs_run_on_runpod_what_this_machine_reaches_decides_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    refused: RefusedPort, fake_runpod: Callable[[int], FakeRunPod],
) -> None:
    server = fake_runpod(200)
    _endpoint(monkeypatch, server.url)
    _deepseek_at(monkeypatch, refused.url)

    def edit(raw: dict[str, Any]) -> None:
        raw["providers"]["llm"]["fallback_chain"] = ["deepseek"]  # nothing here would answer

    code, found = findings(capsys, write_config(tmp_path, edit), "--quick")

    assert code == 0 and found["runpod"]["status"] == "ok"
    q8 = found[Q8]
    assert q8["status"] == "info" and "connection refused" in q8["detail"], q8
    assert "jobs run on RunPod endpoint abc123, whose worker calls the models" in q8["detail"], q8


# --- secrets ------------------------------------------------------------------------------------


def test_the_secrets_line_says_when_none_is_set_and_names_those_that_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no secret at all it said 'every secret set is 6+ characters: masked in logs...'."""
    monkeypatch.delenv("SWARM_MCP_TOKENS", raising=False)
    config = write_config(tmp_path)
    _, out = doctor(capsys, config, "--quick")
    line = line_of(out, "secrets")
    assert line.startswith("OK    ") and "no secrets set" in line and "masked" not in line, line

    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    _, out = doctor(capsys, config, "--quick")
    line = line_of(out, "secrets")
    assert line.startswith("OK    ") and "every secret set ($GEMINI_API_KEY) is 6+ characters: masked" in line, line
