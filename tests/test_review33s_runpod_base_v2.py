"""A RunPod base URL without its ``/v2`` (``RUNPOD_API_BASE=http://127.0.0.1:PORT``): every path
404s there, and the error blamed the endpoint id ("RunPod endpoint 'ep-review' not found
(runner.runpod.endpoint_id)"). It now says the URL it tried and that the base URL may be missing
its /v2, never the key; ``swarm doctor``'s RunPod check says the same. A base URL that has its
/v2 and an endpoint that is not there still blames the endpoint id."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_doctor import findings, write_config

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.executors.runpod import RunPodExecutor
from swarm.executors.runpod_envelope import RunPodError

KEY = "rpa_REVIEW33SV2KEY0123456789ABCDEF"
JOB = {"project": "delegate", "action": "run", "input": {"task": "hello"}}


@pytest.fixture(scope="module")
def endpoint():
    with EndpointServer(Settings(api_key=KEY, endpoint_id="ep-review"), restart=None) as server:
        yield server


@pytest.fixture(autouse=True)
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy", "NO_PROXY",
                 "no_proxy", "RUNPOD_POD_ID", "RUNPOD_WEBHOOK_GET_JOB", "SWARM_RUNNER"):
        monkeypatch.delenv(name, raising=False)


async def _submit_error(base_url: str, endpoint_id: str) -> RunPodError:
    executor = RunPodExecutor(base_url, endpoint_id, KEY, max_retries=0)
    with pytest.raises(RunPodError) as caught:
        await executor.submit(JOB)
    return caught.value


async def test_a_base_url_without_v2_is_named_with_the_url_tried_not_the_endpoint_id(endpoint: EndpointServer) -> None:
    error = await _submit_error(endpoint.url, "ep-review")

    assert error.type == "ConfigError"
    assert f"{endpoint.url}/ep-review/run answered HTTP 404" in error.message, error.message
    assert (f"the base URL {endpoint.url} (RUNPOD_API_BASE / runner.runpod.base_url) may be missing its /v2"
            in error.message), error.message
    assert "not found (runner.runpod.endpoint_id)" not in error.message
    assert KEY not in error.message and KEY[4:] not in error.message


async def test_a_base_url_with_v2_and_a_missing_endpoint_still_blames_the_endpoint_id(endpoint: EndpointServer) -> None:
    error = await _submit_error(endpoint.api_base + "/", "no-such-endpoint")

    assert error.message.startswith("RunPod endpoint 'no-such-endpoint' not found (runner.runpod.endpoint_id) at "
                                    f"{endpoint.api_base}/no-such-endpoint/run"), error.message
    assert "/v2" not in error.message.split(" at ", 1)[1].replace(endpoint.api_base, "")
    assert KEY not in error.message


def test_doctor_says_the_base_url_may_be_missing_its_v2(
    endpoint: EndpointServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNPOD_API_BASE", endpoint.url)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep-review")
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)

    _, found = findings(capsys, write_config(tmp_path), "--quick")

    runpod = found["runpod"]
    assert runpod["status"] == "fail", runpod
    assert runpod["detail"] == f"GET {endpoint.url}/ep-review/health answered HTTP 404", runpod
    assert runpod["fix"].startswith(f"export RUNPOD_API_BASE={endpoint.url}/v2: the base URL {endpoint.url}"
                                    " (runner.runpod.base_url (RUNPOD_API_BASE)) may be missing its /v2"), runpod
    assert "no such endpoint" not in runpod["fix"]
    assert KEY not in str(found)

    # with its /v2, an endpoint that is not there is the endpoint id's fault, as before
    monkeypatch.setenv("RUNPOD_API_BASE", endpoint.api_base)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "no-such-endpoint")
    _, found = findings(capsys, write_config(tmp_path), "--quick")
    assert found["runpod"]["fix"] == "no such endpoint: check RUNPOD_ENDPOINT_ID", found["runpod"]
