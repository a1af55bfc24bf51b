"""Taking up unfinished jobs again: after a restart (``resume_unfinished``), and when the server
process that ran one is gone, or this one stopped following it (``_adopt``).

A job the store still lists as IN_PROGRESS is dispatched again with the same ``job_id``: the
graph resumes from its checkpoint, a job on an endpoint is re-attached. One untouched for
``checkpointer.retention_days``, or whose last step ran that long ago (its checkpoints go then,
however recently a restart took it up), has no checkpoint left: it fails as ``JobExpired`` instead
of running again from the start, unasked (``_expired``, ``_checkpoint_expired``). A job another live
server process runs is left to it. ``ResumesJobs`` is a base of ``JobManager`` (mcp_server.jobs),
which provides the state it declares and ``_start``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.redact import MASK, redact
from graphs.checkpoint import LastStep
from graphs.tombstones import elapsed_words
from mcp_server.jobenvelopes import cancelled_envelope
from mcp_server.jobstore import IN_PROGRESS, JobStore

log = logging.getLogger("swarm.jobs")


class ResumesJobs:
    """Resume and adopt, over the job manager's store, tasks and let-go set."""

    store: JobStore
    _tasks: dict[str, asyncio.Future[dict[str, Any]]]
    _let_go: set[str]
    _closing: bool
    #: ``checkpointer.retention_days`` now (None: jobs never expire)
    _retention_days: Callable[[], float] | None
    #: when a local job's last step ran, from its checkpoints (``Runtime.last_step``; None: unknown)
    _last_step: Callable[[str], Awaitable[LastStep | None]] | None

    def _start(self, job_id: str, job: dict[str, Any], *, remote: bool = False, resumed: bool = False) -> None:
        """Run ``job`` as a task under ``job_id`` (``JobManager._start``); ``resumed``: a local job
        taken up again, which ``_checkpoint_expired`` judges before it runs."""
        raise NotImplementedError

    def _notify(self, home: asyncio.AbstractEventLoop, job_id: str) -> None:
        """Announce that ``job_id`` ended (``JobManager._notify``)."""
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
            if (taken := self._resume_row(row)) is not None and not taken.done():
                resumed.append(row["job_id"])
        if resumed:
            log.info("resumed %d unfinished job(s): %s", len(resumed), ", ".join(resumed))
        if elsewhere:
            log.info("%d unfinished job(s) left to the server process(es) running them", elsewhere)
        return resumed

    def _adopt(self, row: dict[str, Any]) -> asyncio.Future[dict[str, Any]] | None:
        """Run here an unfinished job nobody runs: its server process is gone (killed while
        another server lives on), or this one stopped following it (RunPod unreachable). A job
        another live process runs is left to it. The running task, a done future holding the
        envelope of one that ended here on the take-over (``_resume_row``), or None."""
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
        taken = self._resume_row(row)
        if taken is not None and not taken.done():
            log.info("job %s: its server process is gone; resumed here", row["job_id"])
        return taken

    def _resume_row(self, row: dict[str, Any]) -> asyncio.Future[dict[str, Any]] | None:
        """Claim an unfinished job of a gone process (or one this process let go of) and run it
        again under its id: from its checkpoint, or re-attached to the endpoint's job. A job whose
        stored input lost something (an inline image too large to keep, a secret never written to
        disk) fails as ``JobLost`` instead of running on what is left, one too old as ``JobExpired``
        (by its row here; by its last checkpoint, which needs the store, in its task).

        Returns:
            The running task; a done future holding the FAILED envelope of a job that ended here
            (its end is announced, as any job's: a caller answers from it, not from the row it
            read before, which said IN_PROGRESS); None when another server claimed it first.
        """
        job_id = row["job_id"]
        if job_id in self._tasks or not self.store.claim(job_id, row.get("runner")):
            return None
        self._let_go.discard(job_id)
        refused = None if row.get("remote") else _input_lost(row["input"]) or self._expired(row)
        if refused is not None:
            # it ran from its start to the last time its server recorded it (a step, its progress)
            envelope = refused_envelope(job_id, row, refused, ran_s=row["updated_at"] - row["created_at"])
            self.store.finish(job_id, "FAILED", envelope)
            home = asyncio.get_running_loop()
            self._notify(home, job_id)
            ended: asyncio.Future[dict[str, Any]] = home.create_future()
            ended.set_result(envelope)
            return ended
        job = {"project": row["project"], "action": row["action"], "input": row["input"]}
        if row.get("remote"):
            self._start(job_id, job, remote=True)  # re-attach to the endpoint's job
        else:
            self._start(job_id, {**job, "job_id": job_id}, resumed=True)  # resume from its checkpoint
        return self._tasks.get(job_id)

    def _expired(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """``JobExpired`` for a local job nothing touched for ``checkpointer.retention_days``: its
        checkpoints go then (``graphs.checkpoint``), so running it would start it over unasked,
        paying for every step again, at a restart or when a client asks for its result."""
        days = self._retention_days() if self._retention_days is not None else None
        now = time.time()
        if days is None or row["updated_at"] >= now - days * 86400:
            return None
        age = elapsed_words(now - row["updated_at"])
        return _expiry(row["job_id"], f"stopped unfinished {age} ago (its server process ended)", days)

    async def _checkpoint_expired(self, job_id: str) -> tuple[tuple[str, str], float] | None:
        """``JobExpired`` for a local job taken up again whose last step ran past the retention, or
        whose checkpoints were pruned: the row's ``updated_at`` does not say it, as taking the job
        up (``store.claim``) and its progress ("queued", "resuming at") bump it without a step, so a
        restart that was itself stopped early made a job pruned since look fresh. One read of the
        store, on the jobs' loop (where the saver lives); a store that cannot be read is logged
        and the job runs (its run meets the same store, and says what is wrong). With the refusal,
        how long the job ran: from its start to its last step."""
        days = self._retention_days() if self._retention_days is not None else None
        if days is None or self._last_step is None:
            return None
        try:
            step = await self._last_step(job_id)
        except Exception as exc:  # the lookup is a guard: its failure must not fail the job, but is said
            log.warning("job %s: when its last step ran could not be read (%s); resumed", job_id, redact(repr(exc)))
            return None
        now = time.time()
        if step is None or not (step.pruned or step.at < now - days * 86400):
            return None
        expiry = _expiry(job_id, f"stopped unfinished; its last step ran {elapsed_words(now - step.at)} ago", days,
                         pruned=step.pruned)
        row = self.store.get(job_id)
        return expiry, (step.at - float(row["created_at"]) if row is not None else 0.0)


def refused_envelope(job_id: str, job: dict[str, Any], refused: tuple[str, str], *, ran_s: float = 0.0) -> dict[str, Any]:
    """The FAILED envelope of ``job`` (or its row), refused as ``refused`` (error type, message),
    after it ran ``ran_s`` (a job lost at a restart said 0.0 s after running for a minute)."""
    return {**cancelled_envelope(job_id, job), "status": "FAILED", "error": {"type": refused[0], "message": refused[1]},
            "elapsed_ms": round(max(0.0, ran_s) * 1000, 2)}


def _expiry(job_id: str, stopped: str, days: float, *, pruned: bool = False) -> tuple[str, str]:
    """``JobExpired`` (its type and message) for ``job_id``, which ``stopped`` as said; logged."""
    log.warning("job %s %s, past checkpointer.retention_days=%g; not run again", job_id, stopped, days)
    checkpoints = (f"its checkpoints were pruned (checkpointer.retention_days={days:g})" if pruned
                   else f"its checkpoints are pruned after checkpointer.retention_days={days:g}")
    return "JobExpired", (
        f"job {job_id} {stopped} and {checkpoints}: it was not run again from the start, which would pay for"
        " every step again; call the tool again with the same arguments (and a new idempotency_key, if it had"
        " one) to run it anew")


def _input_lost(value: Any) -> tuple[str, str] | None:
    """Why a job's stored input cannot run again after a restart (None: it can). The store keeps
    input redacted and huge strings as stubs (``jobstore.storable``), so a job resumed from it would
    fetch a signed URL without its signature or run a task with its secret masked: a different job."""
    stored = json.dumps(value, ensure_ascii=False)  # the row's JSON: one scan for either mark
    if '"_omitted_chars":' in stored:
        return "JobLost", ("the server restarted and this job's inline input (an image read from a path, or sent as base64) was"
                " too large to keep; call the tool again with the same arguments (a path is read again), or give"
                " the image by url or storage key, which a restart keeps")
    if MASK in stored:
        return "JobLost", ("the server restarted before this job finished, and its input held a secret (a signed URL, a key or a"
                " password), which is never written to disk; submit it again")
    return None
