"""Taking up unfinished jobs again: after a restart (``resume_unfinished``), and when the server
process that ran one is gone, or this one stopped following it (``_adopt``).

A job the store still lists as IN_PROGRESS is dispatched again with the same ``job_id``: the
graph resumes from its checkpoint, a job on an endpoint is re-attached. One untouched for
``checkpointer.retention_days`` has no checkpoint left: it fails as ``JobExpired`` instead of
running again from the start, unasked (``expire_unfinished``). A job another live
server process runs is left to it. ``ResumesJobs`` is a base of ``JobManager`` (mcp_server.jobs),
which provides the state it declares and ``_start``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from core.redact import MASK
from mcp_server.jobenvelopes import cancelled_envelope
from mcp_server.jobstore import IN_PROGRESS, JobStore

log = logging.getLogger("swarm.jobs")


class ResumesJobs:
    """Resume and adopt, over the job manager's store, tasks and let-go set."""

    store: JobStore
    _tasks: dict[str, asyncio.Future[dict[str, Any]]]
    _let_go: set[str]
    _closing: bool

    def _start(self, job_id: str, job: dict[str, Any], *, remote: bool = False) -> None:
        """Run ``job`` as a task under ``job_id`` (``JobManager._start``)."""
        raise NotImplementedError

    def resume_unfinished(self) -> list[str]:
        """Dispatch again every job left IN_PROGRESS (by a crash or a restart), same job ids.

        A job another live server process runs (two MCP clients on one store) is left to it,
        and of two servers resuming a dead one's job only the one that claims it first runs it.
        """
        resumed, elsewhere = [], 0
        for row in self.store.unfinished():
            if row["job_id"] in self._tasks:
                continue
            if self.store.lease.alive(row.get("runner")):
                elsewhere += 1
                continue
            if self._resume_row(row):
                resumed.append(row["job_id"])
        if resumed:
            log.info("resumed %d unfinished job(s): %s", len(resumed), ", ".join(resumed))
        if elsewhere:
            log.info("%d unfinished job(s) left to the server process(es) running them", elsewhere)
        return resumed

    def expire_unfinished(self, retention_days: float, *, now: float | None = None) -> list[str]:
        """Fail, without running them again, the unfinished local jobs of gone processes that
        nothing touched for ``retention_days``: their checkpoints go then (``graphs.checkpoint``),
        so a resume would run them from the start unasked, paying for every step again. Their
        rows say so (``JobExpired``) and stay as long as any finished job's. The ids expired."""
        now = time.time() if now is None else now
        cutoff = now - retention_days * 86400
        expired = []
        for row in self.store.unfinished():
            job_id, runner = row["job_id"], row.get("runner")
            if (job_id in self._tasks or row.get("remote") or row["updated_at"] >= cutoff
                    or self.store.lease.alive(runner) or not self.store.claim(job_id, runner)):
                continue
            days = (now - row["updated_at"]) / 86400
            message = (f"job {job_id} stopped unfinished {days:.1f} days ago (its server process ended) and its"
                       f" checkpoints are pruned after checkpointer.retention_days={retention_days:g}: it was not"
                       " run again from the start, which would pay for every step again; call the tool again with"
                       " the same arguments (and a new idempotency_key, if it had one) to run it anew")
            self.store.finish(job_id, "FAILED", {**cancelled_envelope(job_id, row), "status": "FAILED",
                              "error": {"type": "JobExpired", "message": message}})
            expired.append(job_id)
        if expired:
            log.warning("%d unfinished job(s) older than checkpointer.retention_days=%g were not resumed (their"
                        " checkpoints are pruned): %s", len(expired), retention_days, ", ".join(expired))
        return expired

    def _adopt(self, row: dict[str, Any]) -> asyncio.Future[dict[str, Any]] | None:
        """Run here an unfinished job nobody runs: its server process is gone (killed while
        another server lives on), or this one stopped following it (RunPod unreachable). A job
        another live process runs is left to it. The running task, or None."""
        if row["status"] != IN_PROGRESS or self._closing:
            return None
        runner, job_id = row.get("runner"), row["job_id"]
        if runner == self.store.lease.token:
            # this process's own: only one it let go of (a job being cancelled is not in ``_tasks``
            # either while it writes its result, and must not run again)
            if job_id not in self._let_go:
                return None
        elif not self.store.lease.locks or self.store.lease.alive(runner):
            return None  # runs elsewhere, or no file locks here to tell (then only a restart resumes it)
        if self._resume_row(row):
            log.info("job %s: its server process is gone; resumed here", row["job_id"])
        return self._tasks.get(row["job_id"])

    def _resume_row(self, row: dict[str, Any]) -> bool:
        """Claim an unfinished job of a gone process (or one this process let go of) and run it
        again under its id: from its checkpoint, or re-attached to the endpoint's job. A job whose
        stored input lost something (an inline image too large to keep, a secret never written to
        disk) fails as ``JobLost`` instead of running on what is left. False: not claimed."""
        job_id = row["job_id"]
        if job_id in self._tasks or not self.store.claim(job_id, row.get("runner")):
            return False
        self._let_go.discard(job_id)
        lost = _input_lost(row["input"]) if not row.get("remote") else None
        if lost is not None:
            self.store.finish(job_id, "FAILED", {**cancelled_envelope(job_id, row), "status": "FAILED",
                              "error": {"type": "JobLost", "message": lost}})
            return False
        job = {"project": row["project"], "action": row["action"], "input": row["input"]}
        if row.get("remote"):
            self._start(job_id, job, remote=True)  # re-attach to the endpoint's job
        else:
            self._start(job_id, {**job, "job_id": job_id})  # resume from its checkpoint
        return True


def _input_lost(value: Any) -> str | None:
    """Why a job's stored input cannot run again after a restart (None: it can). The store keeps
    input redacted and huge strings as stubs (``jobstore.storable``), so a job resumed from it would
    fetch a signed URL without its signature or run a task with its secret masked: a different job."""
    stored = json.dumps(value, ensure_ascii=False)  # the row's JSON: one scan for either mark
    if '"_omitted_chars":' in stored:
        return ("the server restarted and this job's inline input (an image read from a path, or sent as base64) was"
                " too large to keep; call the tool again with the same arguments (a path is read again), or give"
                " the image by url or storage key, which a restart keeps")
    if MASK in stored:
        return ("the server restarted before this job finished, and its input held a secret (a signed URL, a key or a"
                " password), which is never written to disk; submit it again")
    return None
