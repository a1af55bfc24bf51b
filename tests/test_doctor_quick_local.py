"""``swarm doctor --quick`` starts no local model, but counts it as a fallback that answers only
when it could start: llama-cpp-python installed, its GGUF file present. It took it to answer
unchecked, so an unreachable DeepSeek was a WARN 'falls back to local' (exit 0) on a machine
where no model of the chain worked."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import RefusedPort
from test_doctor import FAKE_KEY, findings, write_config

Q8 = "model deepseek-v3.1-q8"


@pytest.fixture
def deepseek_refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[RefusedPort]:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with RefusedPort() as refused:
        monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
        monkeypatch.setenv("DEEPSEEK_API_BASE", refused.url)
        monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", refused.url)
        yield refused


def test_quick_with_the_local_models_file_missing_fails_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], deepseek_refused: RefusedPort
) -> None:
    missing = tmp_path / "missing.gguf"

    def edit(raw: dict[str, Any]) -> None:
        raw["models"]["local"]["local_server"]["gguf"] = str(missing)

    code, found = findings(capsys, write_config(tmp_path, edit), "--quick")

    canary = found["canary local"]
    assert code == 1 and canary["status"] == "fail", canary
    assert f"the local model cannot start here: local: model file {missing} not found" in canary["detail"], canary
    assert "models.local.local_server.gguf" in canary["fix"], canary
    q8 = found[Q8]
    assert q8["status"] == "fail" and "fall back" not in q8["detail"], q8


def test_quick_without_llama_cpp_installed_fails_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], deepseek_refused: RefusedPort
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "llama_cpp" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    canary = found["canary local"]
    assert code == 1 and canary["status"] == "fail", canary
    assert "llama-cpp-python is not installed" in canary["detail"] and "pip install 'llama-cpp-python" in canary["fix"]
    assert found[Q8]["status"] == "fail", found[Q8]
    opus = found["model claude-opus-5-5"]  # its key unset: a chain now left with nothing that answers
    assert opus["status"] == "warn", opus

