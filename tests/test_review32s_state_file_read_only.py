"""Review 32s: a state file SQLite may not read as it is (a WAL file in a read-only folder: "attempt
to write a readonly database") was reported as damage by ``integrity_problem``: the MCP server
refused to start with "damaged: move it aside, what it held is lost" (losing the jobs, and still
failing), and ``swarm doctor`` said it too wherever ``os.access`` called the folder writable (root,
or an ACL). It is "cannot be written" now, with the permissions as the fix."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from mcp_helpers import write_config

from core.config import load_config
from core.errors import ConfigError
from core.state_files import Unwritable, integrity_problem

GARBAGE = bytes(range(256)) * 32


def _wal_store(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
    conn.close()


def _read_only_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``folder`` read-only. Root ignores the permissions, so there the read-only open
    ``integrity_problem`` makes meets SQLite's own error for a write it may not do, as a non-root
    reader of a WAL file there meets it (reading makes a ``-shm`` file)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)  # made writable again by ``state_home``
        return
    real = sqlite3.connect

    def connect(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real(database, *args, **kwargs)  # type: ignore[arg-type]
        if str(database).startswith(f"file:{folder}/") and "mode=ro" in str(database):
            try:
                conn.execute("PRAGMA user_version = 1")  # SQLite's real "attempt to write a readonly database"
            finally:
                conn.close()
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SWARM_HOME", str(home))
    yield home
    for folder in [home, *home.rglob("*")]:  # pytest removes tmp_path later
        if folder.is_dir():
            folder.chmod(0o755)


def test_a_read_only_wal_store_is_unwritable_not_damaged(state_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = state_home / "jobs.sqlite"
    _wal_store(store)
    _read_only_folder(state_home, monkeypatch)

    problem = integrity_problem(store)

    assert isinstance(problem, Unwritable) and "readonly" in problem, problem


def test_a_damaged_store_is_still_damage(tmp_path: Path) -> None:
    store = tmp_path / "jobs.sqlite"
    store.write_bytes(GARBAGE)
    problem = integrity_problem(store)
    assert problem == "file is not a database" and not isinstance(problem, Unwritable)


def test_the_mcp_server_says_a_read_only_job_store_cannot_be_written(
    tmp_path: Path, state_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp_server.server import _check_state_files

    config = load_config(write_config(tmp_path))
    store = state_home / "jobs.sqlite"
    _wal_store(store)
    _read_only_folder(state_home, monkeypatch)

    with pytest.raises(ConfigError) as refused:
        _check_state_files(config)

    said = str(refused.value)
    assert f"the job store {store} cannot be written (attempt to write a readonly database)" in said, said
    assert f"make {store} and its folder writable" in said and "damaged" not in said and "lost" not in said, said


async def test_doctor_says_a_read_only_store_cannot_be_written_where_the_folder_looks_writable(
    tmp_path: Path, state_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.doctor_services import check_checkpointer

    config = load_config(write_config(tmp_path))
    store = Path(config.checkpointer.path).expanduser()
    _wal_store(store)
    _read_only_folder(store.parent, monkeypatch)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)  # root, an ACL: the folder looks writable

    found = await check_checkpointer(config)

    assert found.status == "fail" and f"{store} cannot be written" in found.detail, found
    assert "damaged" not in found.detail and "aside" not in found.fix and "writable" in found.fix, found
