"""The envelope of a job that did not finish on its own: cancelled (with what it had made so
far, read from its last checkpoint) or failed in the runner, and the steps a running job has
finished, for its handle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.redact import redact, redact_data
from mcp_server.jobloop import JobLoop
from mcp_server.jobstore import JobStore
from providers.base import TraceStep
from swarm.envelope import JobEnvelope
from swarm.executors.runpod_progress import ProgressRelay

log = logging.getLogger("swarm.jobs")

StoppedJob = Callable[[str, str, str], Awaitable[tuple["dict[str, Any] | None", "list[dict[str, Any]]"]]]
#: how long a cancelled job waits to read what its checkpoint holds
STOPPED_READ_S = 5.0


def cancelled_envelope(job_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """A CANCELLED envelope for ``job``, with nothing in it but the error (the base of the others)."""
    error = {"type": "JobCancelled", "message": f"job {job_id} was cancelled"}
    return JobEnvelope.for_job(job, job_id, status="CANCELLED", error=error).to_dict()


def error_of(exc: BaseException) -> dict[str, str]:
    """``{type, message}`` for an envelope: a runner's typed error as is, anything else as internal."""
    if isinstance(getattr(exc, "type", None), str) and isinstance(getattr(exc, "message", None), str):
        return {"type": exc.type, "message": redact(exc.message)}  # type: ignore[attr-defined]
    return {"type": "InternalError", "message": "the runner failed on this job; see the server log"}


async def cancelled_with_partial(store: JobStore, stopped_job: StoppedJob | None, job_id: str, job: dict[str, Any],
                                 remote: bool) -> dict[str, Any]:
    """A cancelled job's envelope with what it had made: the partial output and the trace of the
    steps its last checkpoint holds (paid for: they stay in the answer), a ``cancel`` step
    naming where it stopped, the totals, and the time since it was submitted."""
    from swarm.dispatcher import totals_of

    envelope = cancelled_envelope(job_id, job)
    output: dict[str, Any] | None = None
    trace: list[dict[str, Any]] = []
    if stopped_job is not None and not remote:
        try:
            output, trace = await asyncio.wait_for(stopped_job(job_id, job["project"], job["action"]),
                                                   STOPPED_READ_S)
        except Exception as exc:  # the answer says cancelled either way
            log.warning("job %s: what it had made could not be read from its checkpoint: %s", job_id,
                        redact(repr(exc)))
    row = store.get(job_id) or {}
    last = row.get("progress") or {}
    where = f" (last progress: {last['stage']}: {last.get('message', '')})" if last.get("stage") else ""
    kept = "; the steps above had finished (and were paid): they are in the partial output" if trace else ""
    trace = [*trace, TraceStep(step="cancel", kind="node", provider="jobs", outcome="error",
                               error_class="JobCancelled", detail=f"cancelled{where}{kept}").model_dump()]
    envelope.update(trace=trace, totals=totals_of(trace))
    if output:
        envelope["output"] = output
    if row.get("created_at"):
        envelope["elapsed_ms"] = round((time.time() - float(row["created_at"])) * 1000, 2)
    return envelope


async def steps_so_far(stopped_job: StoppedJob | None, job_loop: JobLoop | None, job_id: str,
                       row: dict[str, Any], relay: ProgressRelay | None = None) -> list[dict[str, Any]]:
    """The trace of the steps a job running here has finished (its last checkpoint holds them),
    for the handle of a job still running: what it has called, and paid, so far. ``[]`` when
    there is no checkpoint yet, or no saver. A job on an endpoint (``row["remote"]``): the steps
    its worker last reported with its progress (``relay``, the job's follower), ``[]`` from a
    worker that reports none."""
    if row.get("remote"):
        return relay.steps if relay is not None else []
    if stopped_job is None:
        return []

    async def read() -> list[dict[str, Any]]:
        return list((await stopped_job(job_id, row["project"], row["action"]))[1])

    try:
        if job_loop is None:
            trace = await asyncio.wait_for(read(), STOPPED_READ_S)
        else:  # the saver lives on the jobs' loop
            future = asyncio.run_coroutine_threadsafe(read(), job_loop.loop)
            trace = await asyncio.wait_for(asyncio.wrap_future(future), STOPPED_READ_S)
    except Exception as exc:  # the handle says "still running" either way
        log.debug("job %s: steps so far not read: %s", job_id, redact(repr(exc)))
        return []
    return [redact_data(step) for step in trace if isinstance(step, dict)]
