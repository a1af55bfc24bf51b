"""One RunPod job per local job id.

RunPod's ``/run`` takes no idempotency key, so the runner keeps one small record per local job id
(``<state>/runpod-jobs/<job id>.json``: endpoint, RunPod's job id, the job's digest), written as
soon as ``/run`` answers: running the same job (same id, same input) again follows that RunPod job
instead of paying for a second one, unless the endpoint has no record of it or it ended FAILED,
CANCELLED or TIMED_OUT. Another input under the same id is sent, for the worker to refuse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from core.paths import state_dir
from core.rules import valid_job_id
from graphs.context import ProgressFn
from swarm.executors.runpod_envelope import NO_RECORD_WHY, RunPodError

log = logging.getLogger("swarm.executors.runpod")
#: final states after which running the same job id again submits it anew (a retry)
RESUBMIT_STATES = frozenset({"FAILED", "CANCELLED", "TIMED_OUT"})


def job_digest(job: dict[str, Any]) -> str:
    """What makes a re-run the same job: its whole body (this side's keys are no part of it)."""
    return hashlib.sha256(json.dumps(job, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


class SubmitRecords:
    """The records of one endpoint's jobs, in ``jobs_dir`` (default: ``<state_dir>/runpod-jobs``,
    found at the first job)."""

    def __init__(self, endpoint_id: str, jobs_dir: Path | None = None) -> None:
        self.endpoint_id = endpoint_id
        self._jobs_dir = jobs_dir

    def path(self, job: dict[str, Any]) -> Path | None:
        """Where ``job``'s record lives; ``None`` when it has no valid local job id."""
        local_id = valid_job_id(job.get("job_id"))
        if local_id is None:
            return None
        return (self._jobs_dir or state_dir() / "runpod-jobs") / f"{local_id}.json"

    async def earlier(self, status: Callable[[str], Awaitable[Mapping[str, Any]]], record: Path | None, digest: str,
                      progress: ProgressFn | None) -> tuple[str | None, float]:
        """The RunPod job an earlier run of this job (same id, same ``digest``) submitted, when the
        endpoint still has it and it did not fail (following it costs nothing more), and when it was sent.

        ``status(runpod_job_id)`` is the endpoint's ``/status`` answer (``RunPodError`` with
        ``http_status`` 404 when it no longer has the job)."""
        now = time.time()
        try:
            kept = json.loads(record.read_text(encoding="utf-8")) if record is not None else None
        except FileNotFoundError:
            kept = None
        except (OSError, ValueError) as exc:
            log.warning("the record %s of an earlier run is unreadable (%s); the job is submitted anew", record, type(exc).__name__)
            kept = None
        if (not isinstance(kept, dict) or kept.get("endpoint_id") != self.endpoint_id
                or kept.get("digest") != digest or not isinstance(kept.get("runpod_job_id"), str)):
            return None, now
        earlier, since = kept["runpod_job_id"], float(kept.get("submitted_at") or now)
        try:
            state = (await status(earlier)).get("status")
        except RunPodError as exc:
            if exc.http_status != 404:
                raise  # unknown whether it still runs: submitting again might pay twice
            state = None
        if state is not None and state not in RESUBMIT_STATES:
            log.info("following RunPod job %s, submitted for this job id %.0f s ago", earlier, now - since)
            return earlier, since
        why = f"ended {state}" if state else f"is unknown to the endpoint now ({NO_RECORD_WHY})"
        if progress is not None:
            await progress("runpod", f"RunPod job {earlier}, submitted earlier for this job id, {why}; submitting it anew", None)
        return None, now

    def remember(self, record: Path | None, job_id: str, digest: str, since: float) -> None:
        """Write ``record``: this endpoint's RunPod job ``job_id`` runs the job of ``digest``."""
        if record is None:
            return
        text = json.dumps({"endpoint_id": self.endpoint_id, "runpod_job_id": job_id, "digest": digest, "submitted_at": since})
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            partial = record.with_suffix(".part")
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, record)
        except OSError as exc:  # the job is queued all the same; only a re-run would submit again
            log.warning("RunPod job %s not recorded in %s (%s): running this job id again submits it again",
                        job_id, record.parent, type(exc).__name__)
