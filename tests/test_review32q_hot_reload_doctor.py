"""Review 32q: a config file the server cannot read is said once, not at every look; a model an
edit redefined starts with its circuit closed; ``swarm doctor`` on a read-only SWARM_HOME says
"cannot be written", not "damaged: move it aside"; an unreachable SEARXNG_URL names the server
and the variable."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_openai import FakeOpenAI, RefusedPort
from mcp_helpers import write_config

KEY = "sk-review32q-key-0123456789"


def test_an_unreadable_config_is_logged_once_not_at_every_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from core import config as config_module
    from core.config import ConfigStore

    path = write_config(tmp_path)
    store = ConfigStore(path)
    path.write_text(path.read_text() + "\n# edited\n")
    real = config_module._read_yaml

    def denied(file: Path) -> Any:
        if Path(file) == path:  # what a chmod 000 (or another user's 0600 save) gives this process
            raise config_module.ConfigError("cannot read it (Permission denied); check the path and its permissions",
                                            file=str(file))
        return real(file)

    monkeypatch.setattr(config_module, "_read_yaml", denied)
    monkeypatch.setattr(ConfigStore, "_read_stamp", lambda self: None)  # nor can its digest be read
    with caplog.at_level(logging.ERROR, logger="core.config"):
        for _ in range(4):  # the MCP server looks every 5 s
            store.current()
    refused = [r for r in caplog.records if "Permission denied" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in caplog.records]
    assert store.last_error and "Permission denied" in store.last_error


def _config(tmp_path: Path, api_base: str) -> Path:
    data = yaml.safe_load(write_config(tmp_path).read_text())
    data["models"]["fa"] = {"family": "fa", "litellm_model": "openai/model-a", "api_base": api_base,
                            "api_key_env": "REVIEW32Q_KEY", "timeout_s": 5}
    data["providers"]["llm"].update(default="fa", fallback_chain=[],
                                    tiers={"fast": ["fa"], "balanced": ["fa"], "premium": ["fa"]})
    data["routing"]["delegation"] = {"critical": {"primary": "fa", "reviewer": None}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_model_whose_api_base_an_edit_fixed_is_not_skipped_as_circuit_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.runtime import Runtime

    monkeypatch.setenv("REVIEW32Q_KEY", KEY)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "say hi", "kind": "critical"}}

    def steps(envelope: dict[str, Any]) -> list[tuple[str, str]]:
        return [(s["model"], s["outcome"]) for s in envelope["trace"] if s.get("kind") == "llm"]

    async def scenario(fake: FakeOpenAI, refused: RefusedPort) -> None:
        path = _config(tmp_path, f"{refused.url}/v1")
        runtime = Runtime(str(path))
        try:
            for _ in range(3):  # circuit.failure_threshold of the shipped config
                assert steps(await runtime.run(job)) == [("fa", "error")]
            assert steps(await runtime.run(job)) == [("fa", "skipped")]  # open, as it should be
            _config(tmp_path, f"{fake.url}/v1")  # the user fixes the address
            fixed = await runtime.run(job)
            assert fixed["status"] == "COMPLETED" and steps(fixed) == [("fa", "ok")], fixed["trace"]
        finally:
            await runtime.aclose()

    with FakeOpenAI() as fake, RefusedPort() as refused:
        asyncio.run(scenario(fake, refused))


def _sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
    conn.close()


async def test_doctor_on_a_read_only_state_folder_does_not_call_the_store_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import load_config
    from swarm import doctor_services

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SWARM_HOME", str(home))
    config = load_config(write_config(tmp_path))
    store = Path(config.checkpointer.path).expanduser()
    _sqlite(store)
    # what SQLite says of a WAL file in a folder it may not write (as a non-root user, or a read-only mount)
    monkeypatch.setattr(doctor_services, "integrity_problem",
                        lambda path: "attempt to write a readonly database" if Path(path) == store else None)
    real_access = os.access
    monkeypatch.setattr(doctor_services.os, "access",
                        lambda path, mode, *a, **k: False if Path(path) in (store, home) else real_access(path, mode))

    found = await doctor_services.check_checkpointer(config)

    assert found.status == "fail"
    assert "damaged" not in found.detail and "aside" not in found.fix and "lost" not in found.fix, found
    assert "cannot be written" in found.detail and "writable" in found.fix, found


async def test_doctor_names_the_searxng_server_it_could_not_reach_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import load_config
    from swarm.doctor_search import check_search

    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    with RefusedPort() as refused:
        host_port = refused.url.split("://", 1)[1]
        monkeypatch.setenv("SEARXNG_URL", f"http://admin:hunter2pw@{host_port}/searx")
        found = await check_search("searxng", load_config(write_config(tmp_path)))
    assert found.status == "fail"
    assert f"http://{host_port}" in found.fix and "SEARXNG_URL" in found.fix, found
    assert "hunter2pw" not in f"{found.detail} {found.fix}"
