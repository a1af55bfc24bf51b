"""Image jobs' stored files go when their job does: ``checkpointer.retention_days`` after its last write.

Every image job writes under ``image_tools/<job_id>/`` (its input, each step's output). A job's
checkpoints and its row in the MCP job store are dropped ``retention_days`` after it finished;
its images stayed for good (a worker's disk or an S3 bucket grew without end). ``prune_artifacts``
deletes each job folder whose newest object is older than the retention, the whole folder (a
resumed job's new output keeps its older input). Objects outside ``image_tools/`` (a caller's
own uploads, given as ``key``) are never touched.

The runtime runs it in the background when it opens a checkpoint store, at most once a day per state
folder (``due``: a stamp file, so a CLI run does not list the bucket every time). A folder a store
could not delete (one store of a chain down) is left for the next day; the others still go.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import SwarmError
from core.redact import redact

#: where every image job writes (``graphs.image.nodes.output_key``)
PREFIX = "image_tools/"
#: the stamp file (in the state folder) whose age says when artifacts were last pruned
STAMP = "artifacts-pruned"
INTERVAL_S = 24 * 3600.0
log = logging.getLogger("graphs.image.retention")


def due(state_dir: Path, now: float | None = None) -> bool:
    """Whether a day has passed since the last prune from ``state_dir`` (and mark it done now)."""
    stamp = state_dir / STAMP
    now = time.time() if now is None else now
    try:
        if now - stamp.stat().st_mtime < INTERVAL_S:
            return False
    except FileNotFoundError:
        pass
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        os.utime(stamp, (now, now))
    except OSError:  # a read-only state folder: prune all the same, every time
        pass
    return True


async def prune_artifacts(storage: Any, retention_days: float, now: float | None = None) -> list[str]:
    """Delete every image job folder whose newest object is older than ``retention_days``.

    Returns the job ids whose files were deleted. An object a store lists without its time is
    kept (its age is unknown).
    """
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    newest: dict[str, float | None] = {}
    keys: dict[str, list[str]] = {}
    for obj in await storage.list(PREFIX):
        job = obj.key[len(PREFIX):].split("/", 1)[0]
        if not job or "/" not in obj.key[len(PREFIX):]:
            continue  # not a job's folder
        keys.setdefault(job, []).append(obj.key)
        seen = newest.get(job, 0.0)
        newest[job] = None if obj.modified is None or seen is None else max(seen, obj.modified)
    old = [job for job, at in newest.items() if at is not None and at < cutoff]
    deleted: list[str] = []
    failed: list[str] = []
    for job in old:
        try:
            for key in keys[job]:
                await storage.delete(key)
        except SwarmError as exc:  # a store that did not answer: the next folders still go
            failed.append(f"{job} ({type(exc).__name__})")
            continue
        deleted.append(job)
    if deleted:
        log.info("deleted the stored images of %d image job(s) older than %g days (checkpointer.retention_days)",
                 len(deleted), retention_days)
    if failed:
        log.warning("could not delete every old image file of %d job(s): %s; tried again next time",
                    len(failed), redact(", ".join(failed[:5])))
    return deleted


async def prune_if_due(storage: Callable[[], Any], retention_days: float, state_dir: Path) -> None:
    """``prune_artifacts`` on ``storage()`` once a day; a failure (a store that cannot be built or
    reached) is said and tried again the next day, never raised: a delegation job needs no store."""
    if not due(state_dir):
        return
    try:
        await prune_artifacts(storage(), retention_days)
    except Exception as exc:  # housekeeping: a job must not fail for it
        log.warning("pruning old image files failed (%s); will retry in a day", redact(repr(exc)))
