"""``swarm doctor`` against names that do not resolve: a resolver that never answers is said so
(it was reported as 'no such host'), and the lookups doctor gave up on do not hold its exit
(they ran on the loop's executor, which ``asyncio.run`` waits for: a dead DNS server held the
process ~30 s after the findings); a connection error that says already that the name did not
resolve is believed, not looked up again; a base URL without its scheme says so."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from test_doctor import FAKE_KEY, RUNPOD_KEY, findings, write_config

HANGS, NOWHERE = "dns-hangs.invalid", "nowhere.invalid"
Q8 = "model deepseek-v3.1-q8"


def _name(host: Any) -> Any:
    """The host a lookup asks for (httpx's come as bytes)."""
    return host.decode() if isinstance(host, bytes) else host


@pytest.fixture(autouse=True)
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy",
                 "RUNPOD_POD_ID", "RUNPOD_WEBHOOK_GET_JOB"):
        monkeypatch.delenv(name, raising=False)


def test_a_resolver_that_never_answers_is_said_so_and_does_not_hold_doctors_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    released = threading.Event()
    asked: list[str] = []  # lookups of HANGS sent to the resolver
    answered: list[str] = []  # and those it answered (once the test is over, or after 20 s)
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if _name(host) != HANGS:
            return real(host, *args, **kwargs)
        asked.append(HANGS)
        try:
            released.wait(20)  # a dead DNS server: no answer until the test ends
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        finally:
            answered.append(HANGS)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr("providers.llm.model_access.HEALTH_TIMEOUT_S", 0.5)
    monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
    monkeypatch.setenv("DEEPSEEK_API_BASE", f"http://{HANGS}")
    monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", f"http://{HANGS}")
    try:
        _, found = findings(capsys, write_config(tmp_path), "--quick")
        answered_by_then = list(answered)  # doctor has returned: what it gave up on is still in the resolver
    finally:
        released.set()

    q8 = found[Q8]["detail"]
    assert f"DNS did not answer for {HANGS} within 3 s: a slow or unreachable DNS server, or no network" in q8, q8
    assert "no such host" not in q8
    assert asked and answered_by_then == [], "doctor's exit waited for the lookups it had given up on"


def test_a_name_the_connection_error_says_did_not_resolve_is_not_looked_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if _name(host) != NOWHERE:
            return real(host, *args, **kwargs)
        looked_up.append(NOWHERE)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    monkeypatch.setenv("RUNPOD_API_BASE", f"http://{NOWHERE}/v2")

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    assert code == 1 and f"{NOWHERE} does not resolve here: no such host" in found["runpod"]["detail"], found["runpod"]
    assert looked_up == [NOWHERE]  # the request's own lookup; its error said it already


@pytest.mark.parametrize(("base", "said"), [
    ("api.runpod.ai/v2", "is 'api.runpod.ai/v2': its scheme (https://) is missing or wrong"),
    ("https://api.runpod.ai/v2\r", "is 'https://api.runpod.ai/v2\\r': it holds '\\r'"),  # a CRLF .env file's line end
])
def test_a_runpod_api_base_httpx_refuses_says_why_and_names_the_variable(
    base: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said '(UnsupportedProtocol): UnsupportedProtocol; fix: check this machine's network and proxy'."""
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    monkeypatch.setenv("RUNPOD_API_BASE", base)

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    runpod = found["runpod"]
    assert code == 1 and runpod["status"] == "fail", runpod
    assert f"runner.runpod.base_url (RUNPOD_API_BASE) {said}" in runpod["detail"], runpod
    assert runpod["fix"].startswith("export RUNPOD_API_BASE=https://api.runpod.ai/v2; or run jobs on this machine"), runpod
    assert "network" not in runpod["fix"]
