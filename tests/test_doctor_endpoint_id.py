"""``swarm doctor`` on an endpoint id with a stray character (``RUNPOD_ENDPOINT_ID=$'abc123\\r'``,
from a .env file saved with CRLF line ends): it names ``runner.runpod.endpoint_id`` and shows the
character; it blamed ``runner.runpod.base_url`` ('its scheme (https://) is missing or wrong') and
offered ``export RUNPOD_API_BASE=https://api.runpod.ai/v2``, which changed nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_doctor import RUNPOD_KEY, findings, write_config

from core.config import load_config
from swarm.doctor_runpod import _runpod_unreachable
from swarm.doctor_sources import ConfigSources


@pytest.fixture(autouse=True)
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy",
                 "RUNPOD_POD_ID", "RUNPOD_WEBHOOK_GET_JOB", "SWARM_RUNNER", "RUNPOD_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def test_an_endpoint_id_with_a_crlf_line_end_fails_naming_it_not_the_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123\r")
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    runpod = found["runpod"]
    assert code == 1 and runpod["status"] == "fail", runpod
    assert ("runner.runpod.endpoint_id (RUNPOD_ENDPOINT_ID): the endpoint id 'abc123\\r' holds '\\r' (the line end a"
            " .env file saved with Windows line ends, CRLF, leaves)") in runpod["detail"], runpod
    assert runpod["fix"] == "export RUNPOD_ENDPOINT_ID=abc123 (and save the .env file it comes from with LF line ends)"
    assert "base_url" not in runpod["detail"] + runpod["fix"] and "RUNPOD_API_BASE" not in runpod["fix"], runpod
    assert RUNPOD_KEY not in str(found)


def test_an_endpoint_id_with_a_stray_character_unused_here_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the key jobs run in-process; set the key and every job would be refused."""
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc 123")
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)

    _, found = findings(capsys, write_config(tmp_path), "--quick")

    runpod = found["runpod"]
    assert runpod["status"] == "warn", runpod
    assert runpod["detail"].startswith("not used now (RUNPOD_API_KEY is not set), but every job sent there would be"
                                       " refused: runner.runpod.endpoint_id (RUNPOD_ENDPOINT_ID): the endpoint id 'abc 123'"
                                       " holds ' '"), runpod
    assert runpod["fix"] == "export RUNPOD_ENDPOINT_ID=abc123"


async def test_a_url_httpx_refuses_with_a_whole_base_url_blames_the_endpoint_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where InvalidURL is caught, the part at fault is named (the endpoint id, its base URL whole)."""
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123\r")
    path = write_config(tmp_path)
    url = "https://api.runpod.ai/v2/abc123\r/health"

    finding = await _runpod_unreachable(load_config(path), ConfigSources.read(path), url, httpx.InvalidURL("non-printable"))

    assert finding.status == "fail"
    assert "runner.runpod.endpoint_id (RUNPOD_ENDPOINT_ID): the endpoint id 'abc123\\r' holds '\\r'" in finding.detail, finding
    assert "'https://api.runpod.ai/v2/abc123\\r/health'" in finding.detail  # shown as repr: a raw '\r' overwrites the line
    assert "base_url" not in finding.detail and (finding.fix or "").startswith("export RUNPOD_ENDPOINT_ID=abc123 "), finding

