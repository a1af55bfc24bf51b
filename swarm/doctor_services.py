"""``swarm doctor`` checks of where jobs live: storage (a probe written and deleted) and the
checkpointer (opened; warned when a RunPod worker keeps it on local disk). The RunPod endpoint's
check lives in ``doctor_runpod``."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import state_dir
from core.errors import SwarmError
from core.state_files import Unwritable, access_fix, integrity_problem
from swarm.doctor_finding import Finding, error_message
from swarm.executors import runpod_worker

if TYPE_CHECKING:
    from core.config import SwarmConfig

_STORAGE_FIX = {
    "local": "make that folder writable, or set providers.storage.backends.local.root (or SWARM_HOME)",
    "s3": "check SWARM_S3_BUCKET, SWARM_S3_ENDPOINT_URL and the AWS credentials",
}
_CHECKPOINT_FIX = {
    "sqlite": "make the folder of checkpointer.path writable (or set SWARM_HOME)",
    "postgres": "check that PostgreSQL runs and checkpointer.dsn",
    "memory": "",
}


async def check_storage(config: SwarmConfig) -> Finding:
    """Each store of the chain (``default``, then ``fallback_chain``) writes and deletes a probe.
    The default failing is a fail when no fallback works, a warning when one takes over."""
    section = config.providers.storage
    found = [await _probe_store(name, dict(section.backends.get(name, {}))) for name in section.order]
    first, rest = found[0], found[1:]
    if first[1] is None:
        fine = "; ".join(f"{where}: wrote and deleted a probe object" for where, _, _ in found)
        broken = [f"fallback {where} cannot write ({said})" for where, said, _ in rest if said is not None]
        if broken:
            return Finding("storage", "warn", f"{fine.split('; ')[0]}; {'; '.join(broken)}",
                           "; ".join(fix for _, said, fix in rest if said is not None and fix))
        return Finding("storage", "ok", fine)
    where, said, fix = first
    taking_over = next((w for w, s, _ in rest if s is None), None)
    if taking_over is not None:
        return Finding("storage", "warn", f"{where}: cannot write ({said}); artifacts go to the fallback"
                       f" {taking_over} meanwhile", fix)
    return Finding("storage", "fail", f"{where}: cannot write ({said})"
                   + "".join(f"; fallback {w}: cannot write ({s})" for w, s, _ in rest), fix)


async def _probe_store(name: str, settings: dict[str, Any]) -> tuple[str, str | None, str]:
    """``(where, what failed or None, the fix)`` of one store writing and deleting a probe."""
    from providers.registry import backend_class

    where = f"{name} {settings.get('root') or settings.get('bucket') or ''}".strip()
    key = f"doctor-probe-{secrets.token_hex(4)}.txt"
    try:
        storage = backend_class("storage", name).from_config(name, settings, state_dir=state_dir())
        await storage.put(key, b"swarm doctor probe\n")
        await storage.delete(key)
    except (SwarmError, OSError) as exc:
        said = error_message(exc)
        return where, said, "" if "; set " in said else _STORAGE_FIX.get(name, "")  # the error's own fix, said once
    return where, None, ""


async def check_checkpointer(config: SwarmConfig) -> Finding:
    from graphs.checkpoint import open_checkpointer

    section = config.checkpointer
    # a damaged file opens all the same (a page of garbage, found when a job reads it): checked
    # first, with the fix that helps (the folder's permissions did not)
    for path, what in _state_files(config):
        if (problem := await asyncio.to_thread(integrity_problem, path)) is not None:
            if isinstance(problem, Unwritable) or not _writable(path):  # SQLite cannot even read a WAL file it may not write
                return Finding("checkpointer", "fail", f"{what} {path} cannot be written ({problem})", access_fix(path))
            return Finding("checkpointer", "fail", f"{what} {path} is damaged: {problem}",
                           f"move {path} aside: a new one is made (what it held is lost)")
    try:
        async with open_checkpointer(config, prune=False):
            pass
    except (SwarmError, OSError, sqlite3.Error) as exc:
        return Finding("checkpointer", "fail", f"{section.kind}: {error_message(exc)}", _CHECKPOINT_FIX[section.kind])
    if section.kind == "memory":
        return Finding("checkpointer", "info", "memory: nothing survives a restart (jobs cannot resume)")
    where = Path(section.path).expanduser() if section.kind == "sqlite" else "(checkpointer.dsn)"
    if section.kind == "sqlite" and runpod_worker() and not str(where).startswith(NETWORK_VOLUME):
        return Finding(
            "checkpointer", "warn",
            f"sqlite {where}: opened, but inside this worker: a job resumes only on the worker that ran it",
            f"set SWARM_CHECKPOINTER_DSN (PostgreSQL) or SWARM_HOME={NETWORK_VOLUME}/swarm (a network volume)",
        )
    return Finding("checkpointer", "ok", f"{section.kind} {where}: opened")


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` and its folder (a read-only SWARM_HOME was told
    "damaged: move it aside, what it held is lost", which loses the jobs and still fails)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _state_files(config: SwarmConfig) -> list[tuple[Path, str]]:
    """The SQLite files this machine keeps jobs, threads and checkpoints in."""
    from swarm.threads import sqlite_threads_path

    files = [(state_dir() / "jobs.sqlite", "the job store")]
    if config.checkpointer.kind == "sqlite":
        files += [(Path(config.checkpointer.path).expanduser(), "the checkpoint store"),
                  (sqlite_threads_path(config.checkpointer), "the thread store")]
    return files


#: Where RunPod mounts an endpoint's network volume.
NETWORK_VOLUME = "/runpod-volume"
