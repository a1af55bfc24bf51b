"""A checkpointer dsn that cannot be right is refused before any connection is tried.

A password holding a raw '@' (``postgresql://swarm:p%40ss:w@rd-Sekret@host/db``) made the pool try for
10 s, and psycopg_pool logged each try in the driver's words, which quote the part it misread as the
host: ``failed to resolve host 'rd-Sekret@127.0.0.1'``, a piece of the password that redaction does not
know, in the log of ``swarm doctor`` and of every worker.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import ConfigError
from core.redact import redact

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, dsn: str) -> Any:
    from core.config import load_config

    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": "postgres", "dsn": dsn}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


@pytest.mark.parametrize(("password", "said"), [
    ("p%40ss:w@rd-Sekret-77", "its password holds an '@'; write it as %40"),
    ("pass%zzSekret-77", "the dsn is malformed"),
])
async def test_a_malformed_dsn_is_refused_at_once_and_no_log_quotes_the_password(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, password: str, said: str) -> None:
    from graphs.checkpoint import open_checkpointer

    config = _config(tmp_path, f"postgresql://swarm:{password}@127.0.0.1:9/swarm_test")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as refused:
        async with open_checkpointer(config, prune=False):
            pass
    assert said in str(refused.value) and "Sekret" not in str(refused.value)
    logged = redact(caplog.text)  # as the log handlers write it (core.redact.install_log_redaction)
    assert "Sekret" not in logged, logged
    assert not [r for r in caplog.records if r.name.startswith("psycopg")]  # no connection was tried
