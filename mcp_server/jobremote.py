"""Following a job on a RunPod endpoint: poll it to a final state, through an endpoint that
stops answering for a while, and cancel it there when the job is cancelled here.

``JobManager`` (mcp_server.jobs) runs ``follow_remote`` for a job whose runner is a
``RemoteExecutor``; the job id is the endpoint's own, so a restart re-attaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from core.redact import redact
from graphs.context import ProgressFn
from mcp_server.jobenvelopes import error_of
from mcp_server.jobstore import JobStore
from swarm.executors import AdoptsImages
from swarm.executors.runpod_progress import ProgressRelay

log = logging.getLogger("swarm.jobs")

REMOTE_FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
#: error types of a status poll that say nothing of the job itself (``RunPodError.type``)
TRANSIENT_REMOTE_ERRORS = frozenset({"ProviderTimeout", "ProviderUnavailable", "ProviderRateLimited"})
#: the longest wait between two polls while the endpoint does not answer
UNREACHABLE_POLL_MAX_S = 30.0


async def follow_remote(runner: Any, job_id: str, job: dict[str, Any], progress: ProgressFn, *, store: JobStore,
                        closing: Callable[[], bool],
                        relays: MutableMapping[str, ProgressRelay] | None = None) -> dict[str, Any]:
    """Poll a job on the endpoint to a final state (stream chunks become progress); cancel it there
    when this job is cancelled, but not when the server is merely shutting down (``closing()``).
    ``relays[job_id]`` holds the job's relay while it is followed: the steps its worker reports
    finished, for the answer of a poll that finds it still running (``jobenvelopes.steps_so_far``)."""
    started = time.perf_counter()
    delay = 0.1
    unreachable_since: float | None = None
    row = store.get(job_id)
    relay = runner.relay(progress, since=row["created_at"] if row else None)  # queued, then the worker's own
    if relays is not None:
        relays[job_id] = relay
    try:
        while True:
            try:
                state = dict(await runner.status(job_id))
                status = state.get("status")
                await relay.saw(job_id, state)
            except Exception as exc:
                unreachable_since = unreachable_since or time.monotonic()
                ending = _ends_the_job(runner, exc, unreachable_since)
                if ending is not None:
                    return _failed(runner, job, job_id, ending, started, relay)
                wait = min(max(delay, float(runner.poll_interval_s)) * 2, UNREACHABLE_POLL_MAX_S)
                await progress("runpod", f"{getattr(exc, 'message', exc)}; the job runs on there: asking again in"
                               f" {wait:.0f} s (unreachable for {time.monotonic() - unreachable_since:.0f} s)", None)
                delay = wait
                await asyncio.sleep(wait)
                continue
            if unreachable_since is not None:
                log.info("job %s: RunPod answers again after %.0f s", job_id, time.monotonic() - unreachable_since)
                unreachable_since, delay = None, 0.1
            if status in REMOTE_FINAL_STATES:
                # with the steps its worker reported finished: a TIMED_OUT or CANCELLED end carries no envelope
                envelope = dict(runner.envelope(job, job_id, {**state, "_steps": relay.steps}, started))
                if isinstance(runner, AdoptsImages):  # images a worker on its own disk sent inline
                    envelope = dict(await runner.adopt_images(job, envelope))
                return envelope
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, float(runner.poll_interval_s))
    except asyncio.CancelledError:
        if not closing():
            with contextlib.suppress(Exception):  # best effort; the row says CANCELLED either way
                await asyncio.wait_for(runner.cancel(job_id), 5)
        raise
    finally:
        if relays is not None:
            relays.pop(job_id, None)


def _ends_the_job(runner: Any, exc: Exception, unreachable_since: float) -> Exception | None:
    """The error that ends following a job whose status poll failed with ``exc``: an answer about
    the job itself, or an endpoint silent past ``runner.timeout_s``; ``None`` to keep following (a
    poll that timed out or met a 5xx says nothing of the job, which runs on: it was marked FAILED
    for good, its result orphaned and billed). ``exc`` is raised again when it is no answer of the
    endpoint's (a bug here): the job manager records it."""
    kind = getattr(exc, "type", None)
    if not isinstance(kind, str):
        raise exc
    if kind not in TRANSIENT_REMOTE_ERRORS:
        return exc
    return _gave_up(runner, unreachable_since)


def _failed(runner: Any, job: dict[str, Any], job_id: str, exc: Exception, started: float,
            relay: ProgressRelay) -> dict[str, Any]:
    """The FAILED envelope of a job its endpoint's answers (or silence) ended: the error, the steps
    its worker had reported finished and the runner's step, as ``run`` returns it."""
    log.warning("job %s: following it on the endpoint failed: %s", job_id, redact(str(getattr(exc, "message", exc))))
    return dict(runner.failure(job, job_id, error_of(exc), started, relay.steps))


def _gave_up(runner: Any, since: float) -> Exception | None:
    """The error that ends following a job whose endpoint has not answered for ``runner.timeout_s``
    (RunPod keeps a result 30 minutes; an endpoint down that long is no blip), else None."""
    limit = float(getattr(runner, "timeout_s", 600.0))
    waited = time.monotonic() - since
    if waited < limit:
        return None
    from swarm.executors.runpod_envelope import RunPodError

    return RunPodError("ProviderUnavailable", f"the endpoint did not answer for {waited:.0f} s (runner.runpod.timeout_s="
                       f"{limit:g}); the job may still run there: look for it in the endpoint's requests before"
                       " submitting it again")
