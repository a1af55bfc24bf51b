"""One run at a time of a given job id on this machine.

Two ``swarm delegate --job-id X`` started together both ran the job from its start (a new job's
first checkpoint is stored only when its first node finished: ``graphs.lean_saver``), paid for it
twice, and with two inputs the last to write won. ``running(job_id)`` takes a lock on one byte of
``<state dir>/running.lock`` (the job id's hash is its offset) for the run; a second run of the
same id, in this process or another, gets ``StillRunning`` at once, naming what to do.

POSIX record locks: the kernel drops them with the process (a killed run leaves none behind),
and they are the process's, so the runs of this process are tracked in a set beside them. Job
ids minted for a job (``JobContext.new_job``) need none. Across machines (PostgreSQL
checkpoints) this lock does not reach: a job id is one machine's to run at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from core.errors import StillRunning
from core.paths import state_dir

log = logging.getLogger("graphs.job_lock")

_guard = threading.Lock()
#: lock file path -> its descriptor, open for the process's life (closing any descriptor of the
#: file would drop every lock the process holds on it)
_files: dict[str, int] = {}
#: the job ids running in this process
_here: set[str] = set()


def _fcntl() -> Any:
    """``fcntl``, or ``None`` where there is none (Windows): then runs are kept apart in this process only."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def _descriptor() -> int | None:
    if _fcntl() is None:
        return None
    path = str(state_dir() / "running.lock")
    with _guard:
        if path not in _files:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                _files[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:  # an unwritable state folder is said at the door; runs go unguarded
                log.debug("no job lock file %s: %s", path, exc)
                return None
        return _files[path]


def _refused(job_id: str) -> StillRunning:
    return StillRunning(f"job {job_id!r} is running now in another run on this machine; wait for it to end, then"
                        " give the same job id again to get its result (or give another job id for a new job)")


@contextlib.contextmanager
def running(job_id: str) -> Iterator[None]:
    """Hold ``job_id``'s lock for the block; ``StillRunning`` when another run holds it."""
    with _guard:
        if job_id in _here:
            raise _refused(job_id)
        _here.add(job_id)
    fd = _descriptor()
    fcntl = _fcntl()
    offset = int.from_bytes(hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).digest()[:4], "big")
    try:
        if fd is not None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
            except OSError:
                raise _refused(job_id) from None
        try:
            yield
        finally:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset, os.SEEK_SET)
    finally:
        with _guard:
            _here.discard(job_id)
