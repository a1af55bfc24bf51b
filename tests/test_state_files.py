"""Damaged state files (jobs, threads, checkpoints) are said in one line naming the file and the fix:
a reviewer's garbage ``jobs.sqlite`` stopped the MCP server with a traceback, a garbage
``threads.sqlite`` failed every call as an internal error, and ``swarm doctor`` said OK to both."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError
from core.state_files import integrity_problem
from mcp_server.jobstore import JobStore
from swarm.doctor_services import check_checkpointer
from swarm.threads import open_thread_store

ROOT = Path(__file__).resolve().parents[1]
GARBAGE = bytes(range(256)) * 32


def test_a_damaged_job_or_thread_store_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.sqlite"
    jobs.write_bytes(GARBAGE)
    with pytest.raises(ConfigError) as refused:
        JobStore(jobs)
    assert str(refused.value) == (f"the job store {jobs} is damaged (file is not a database): move it aside and start"
                                  " again; a new one is made (the jobs it held are lost)")
    config = load_config(ROOT / "config.yaml")
    threads = Path(config.checkpointer.path).expanduser().with_name("threads.sqlite")
    threads.parent.mkdir(parents=True, exist_ok=True)
    threads.write_bytes(GARBAGE)
    with pytest.raises(ConfigError, match="the thread store .*threads.sqlite is damaged"):
        open_thread_store(config.checkpointer)


def test_the_mcp_server_says_a_damaged_job_store_in_one_line_and_exits_2(swarm_home: Path) -> None:
    swarm_home.mkdir(parents=True, exist_ok=True)
    (swarm_home / "jobs.sqlite").write_bytes(GARBAGE)
    done = subprocess.run([sys.executable, "-c", "from mcp_server.server import main; main()"], input="", capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "SWARM_HOME": str(swarm_home)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"swarm-mcp: the job store {swarm_home / 'jobs.sqlite'} is damaged (file is not a database): move it aside"
        " and start again; a new one is made (the jobs it held are lost)"], done.stderr


async def test_doctor_finds_a_checkpoint_store_with_a_damaged_page(swarm_home: Path) -> None:
    config = load_config(ROOT / "config.yaml")
    path = Path(config.checkpointer.path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [(f"row {i} " * 20,) for i in range(2000)])
    db.close()
    assert integrity_problem(path) is None and (await check_checkpointer(config)).status == "ok"
    with open(path, "r+b") as f:  # one page of the table's b-tree overwritten
        f.seek(4096 * 3)
        f.write(GARBAGE[:4096])
    finding = await check_checkpointer(config)
    assert finding.status == "fail" and f"the checkpoint store {path} is damaged" in finding.detail, finding
    assert finding.fix == f"move {path} aside: a new one is made (what it held is lost)"


def test_threads_follow_an_edited_checkpointer_path(tmp_path: Path) -> None:
    """``checkpointer.path`` edited while the MCP server ran: the checkpoints moved, the threads
    stayed behind (opened once), and after a restart every conversation was gone."""
    import time

    import yaml

    from mcp_server.state import ServerState

    path = tmp_path / "config.yaml"
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["checkpointer"]["path"] = str(tmp_path / "a" / "checkpoints.sqlite")
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    state = ServerState(str(path))
    first = state.threads
    assert state.threads is first
    raw["checkpointer"]["path"] = str(tmp_path / "b" / "checkpoints.sqlite")
    time.sleep(0.01)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    second = state.threads
    assert second is not first and (tmp_path / "b" / "threads.sqlite").exists()
    state.threads.close()
