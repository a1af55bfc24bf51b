"""A PostgreSQL that refuses the login (a wrong password) is said at once, as a login refused.

It took the pool's whole 10 s and read "cannot connect to PostgreSQL ... check that the server runs
and the dsn's host, port, user and database": the server ran, its host and port were right. Against
the password role ``scripts/services`` starts (scram-sha-256; the trust role never reaches a login
check), through the checkpointer and ``swarm doctor``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRAM_DSN = os.environ.get("SWARM_TEST_PG_SCRAM_DSN")
needs_scram = pytest.mark.skipif(
    not SCRAM_DSN, reason="SWARM_TEST_PG_SCRAM_DSN is unset: run through scripts/test, which starts PostgreSQL (scripts/services)"
)


def _wrong(dsn: str) -> tuple[str, str]:
    """``dsn`` with another password, and that password."""
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    wrong = "wrong-pw-planted-review33"
    return dsn.replace(f":{parts.password}@", f":{wrong}@"), wrong


def _config(tmp_path: Path, dsn: str) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": "postgres", "dsn": dsn}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@needs_scram
async def test_the_right_password_opens_the_store(tmp_path: Path) -> None:
    from core.config import load_config
    from graphs.checkpoint import open_checkpointer

    assert SCRAM_DSN
    async with open_checkpointer(load_config(_config(tmp_path, SCRAM_DSN)), prune=False) as saver:
        assert saver is not None


@needs_scram
async def test_a_wrong_password_is_a_refused_login_said_at_once(tmp_path: Path) -> None:
    from core.config import load_config
    from graphs.checkpoint import open_checkpointer

    assert SCRAM_DSN
    dsn, wrong = _wrong(SCRAM_DSN)
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        async with open_checkpointer(load_config(_config(tmp_path, dsn)), prune=False):
            pass
    took = time.monotonic() - started
    said = str(refused.value)
    assert "PostgreSQL refused the login" in said and "password authentication failed" in said, said
    assert "check the user and password" in said and "host, port" not in said, said
    assert wrong not in said
    assert took < 5, took  # the pool's whole 10 s before


@needs_scram
def test_doctor_says_the_login_was_refused_without_the_password(tmp_path: Path) -> None:
    assert SCRAM_DSN
    dsn, wrong = _wrong(SCRAM_DSN)
    env = {**os.environ, "SWARM_CONFIG": str(_config(tmp_path, dsn)), "SWARM_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "swarm.cli", "doctor", "--quick", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert wrong not in done.stdout + done.stderr
    findings = {f["check"]: f for f in json.loads(done.stdout)["findings"]}
    found = findings["checkpointer"]
    assert found["status"] == "fail" and "refused the login" in found["detail"], found
