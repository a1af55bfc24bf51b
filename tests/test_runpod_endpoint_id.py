"""An endpoint id with a stray character (the '\\r' a .env file saved with CRLF line ends leaves:
``RUNPOD_ENDPOINT_ID=$'abc123\\r'``) is refused naming ``runner.runpod.endpoint_id``, with the
character shown: httpx refused the URL and the job's error blamed ``runner.runpod.base_url``
('its scheme is missing or wrong'), whose fix changed nothing. An empty one still means "not set"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import load_config
from core.errors import ConfigError
from swarm.executors import make_executor
from swarm.executors.local import LocalExecutor
from swarm.executors.runpod import RunPodExecutor
from swarm.executors.runpod_unreachable import bad_url

KEY = "rpa_ENDPOINTIDTEST0123456789abcdef"
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi."}}
RUNPOD_API = "https://api.runpod.ai/v2"


@pytest.fixture(autouse=True)
def not_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNPOD_POD_ID", "RUNPOD_WEBHOOK_GET_JOB", "SWARM_RUNNER", "RUNPOD_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def _config(config_file: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_config(config_file)


def test_an_endpoint_id_with_a_crlf_line_end_refuses_jobs_naming_its_key_not_the_base_url(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(config_file, monkeypatch, RUNPOD_ENDPOINT_ID="abc123\r", RUNPOD_API_KEY=KEY)

    with pytest.raises(ConfigError) as raised:
        make_executor(config, runtime=object())  # what `swarm delegate` and swarm-mcp use, per job

    message = str(raised.value)
    assert raised.value.key == "runner.runpod.endpoint_id"
    assert "the endpoint id 'abc123\\r' (RUNPOD_ENDPOINT_ID with the shipped config.yaml) holds '\\r'" in message, message
    assert "CRLF" in message and "base_url" not in message and "scheme" not in message, message
    assert KEY not in message


@pytest.mark.parametrize("endpoint_id", ["abc 123", "abc/123", "abc123\n", "ab\tc"])
def test_any_character_no_endpoint_id_has_is_refused_and_shown(endpoint_id: str) -> None:
    with pytest.raises(ConfigError, match="runner.runpod.endpoint_id") as raised:
        RunPodExecutor(RUNPOD_API, endpoint_id, KEY)
    assert repr(endpoint_id) in str(raised.value) and KEY not in str(raised.value)


def test_an_empty_endpoint_id_still_means_not_set(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(config_file, monkeypatch, RUNPOD_ENDPOINT_ID="", RUNPOD_API_KEY=KEY)
    assert config.runner.runpod.endpoint_id == ""
    assert isinstance(make_executor(config, runtime=object()), LocalExecutor)
    assert isinstance(RunPodExecutor(RUNPOD_API, "my-endpoint_01", KEY), RunPodExecutor)  # the characters it may have


def test_a_stray_endpoint_id_unused_here_keeps_jobs_local(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the key jobs run in-process: the config still loads and they still run."""
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    config = _config(config_file, monkeypatch, RUNPOD_ENDPOINT_ID="abc123\r")
    assert isinstance(make_executor(config, runtime=object()), LocalExecutor)


def test_a_url_httpx_refuses_names_the_part_at_fault() -> None:
    assert bad_url("api.runpod.ai/v2", "ep1", "/run")[1].startswith("runner.runpod.base_url is 'api.runpod.ai/v2': its scheme")
    kind, said = bad_url(RUNPOD_API, "abc123\r", "/run")  # the base URL is whole: the endpoint id is at fault
    assert kind == "ConfigError" and said.startswith("runner.runpod.endpoint_id: the endpoint id 'abc123\\r'"), said
    assert "base_url" not in said
    kind, said = bad_url(RUNPOD_API, "ep1", "/status/rp\x01")  # a job id RunPod gave: no operator's mistake
    assert kind == "ProviderError" and "'/status/rp\\x01'" in said, said


async def test_a_base_url_with_a_crlf_line_end_fails_the_job_saying_so() -> None:
    """RUNPOD_API_BASE from the same .env file: it said 'its scheme (https://) is missing or wrong'."""
    envelope = await RunPodExecutor(f"{RUNPOD_API}\r", "ep1", KEY).run(JOB)

    error = envelope["error"]
    assert envelope["status"] == "FAILED" and error["type"] == "ConfigError", error
    assert error["message"].startswith("runner.runpod.base_url is 'https://api.runpod.ai/v2\\r': it holds '\\r'"), error
    assert "scheme" not in error["message"] and KEY not in str(envelope)


def test_where_writes_an_ipv6_host_as_a_url_does() -> None:
    from swarm.executors.runpod_unreachable import where

    assert where("http://[::1]:8000/v2/ep") == "[::1]:8000"
    assert where("https://[2001:db8::1]/v2") == "[2001:db8::1]"
    assert where("https://user:pw@api.runpod.ai/v2/ep?x=1") == "api.runpod.ai"
