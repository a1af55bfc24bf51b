"""Progress of a job on a RunPod endpoint, from its ``/status`` polls and ``/stream`` chunks, and
the trace steps it has finished so far, which a worker sends with each update (``steps_update``).

A worker's progress update (``runpod.serverless.progress_update``, which RunPod shows as the
``/status`` output while the job is IN_PROGRESS) is ``{stage, message, fraction}``, and from a
worker of this version also ``trace``: the newest finished steps, redacted and bounded
(``PROGRESS_STEPS_MAX`` steps, ``PROGRESS_STEPS_MAX_BYTES`` bytes; a first step says how many
older ones were left out), and ``trace_total``: how many steps the job has finished. The SDK sends
each update on a thread of its own, so they may arrive out of order: a follower keeps the steps
of the update with the highest ``trace_total``. The final envelope's trace is the authoritative one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from core.redact import redact, redact_data
from graphs.context import ProgressFn
from providers.base import TraceStep
from swarm.executors.runpod_envelope import NO_WORD_OF_THE_JOB, RunPodError

if TYPE_CHECKING:  # the MCP server imports this module at start; httpx (~35 ms) only when a job goes to RunPod
    import httpx

#: how often a job still waiting for a worker is reported (the first report comes at once)
QUEUE_NOTICE_S = 10.0
#: a progress update carries at most this many of the job's newest finished steps ...
PROGRESS_STEPS_MAX = 20
#: ... and at most this many bytes of them (JSON): RunPod stores each update with the job's status
PROGRESS_STEPS_MAX_BYTES = 16 * 1024
#: a longer text field of a step (a detail, an error) is cut to this many characters in an update
PROGRESS_STEP_TEXT_CHARS = 500
#: the keys of a progress update that carry the steps (the rest is what a person reads)
STEP_KEYS = frozenset({"trace", "trace_total"})


def steps_update(trace: Sequence[Any]) -> dict[str, Any]:
    """What a worker sends, with a progress update, of the steps its job has finished (``trace``,
    oldest first): ``{"trace": [...], "trace_total": n}``, the newest steps that fit the bounds,
    each text field cut to ``PROGRESS_STEP_TEXT_CHARS`` and redacted; when older ones are left out,
    a first ``progress`` step (outcome ``skipped``) says how many."""
    steps = [step for step in trace if isinstance(step, Mapping)]
    kept: list[dict[str, Any]] = []
    size = 0
    for step in reversed(steps[-PROGRESS_STEPS_MAX:]):
        # masked before it is cut: a secret cut in two would no longer be found and masked
        shown = {key: _clipped(value) for key, value in redact_data(dict(step)).items()}
        size += len(json.dumps(shown, ensure_ascii=False, default=str).encode())
        if size > PROGRESS_STEPS_MAX_BYTES:
            break
        kept.append(shown)
    kept.reverse()
    left_out = len(steps) - len(kept)
    if left_out:
        kept.insert(0, TraceStep(
            step="progress", kind="node", provider="runpod", outcome="skipped",
            detail=f"the first {left_out} of {len(steps)} finished steps are left out here: a progress update carries"
                   f" the newest {PROGRESS_STEPS_MAX} at most, {PROGRESS_STEPS_MAX_BYTES // 1024} KB at most; the"
                   " job's result carries them all",
        ).model_dump())
    return {"trace": kept, "trace_total": len(steps)}


def _clipped(value: Any) -> Any:
    if isinstance(value, str) and len(value) > PROGRESS_STEP_TEXT_CHARS:
        return value[:PROGRESS_STEP_TEXT_CHARS - 1] + "…"
    return value


def steps_of(update: Any) -> tuple[int, list[dict[str, Any]]] | None:
    """``(trace_total, steps)`` of a worker's progress update, each step a valid trace step,
    redacted on this side too; ``None`` when the update carries none (a worker older than this
    client, or no update at all)."""
    if not isinstance(update, Mapping) or not isinstance(update.get("trace"), list):
        return None
    total = update.get("trace_total")
    steps: list[dict[str, Any]] = []
    for raw in update["trace"][:PROGRESS_STEPS_MAX + 1]:  # the newest, and the note of those left out
        if not isinstance(raw, Mapping):
            continue
        try:  # the fields this side knows; a step that is no trace step is left out
            step = TraceStep.model_validate({k: v for k, v in raw.items() if k in TraceStep.model_fields})
        except ValidationError:
            continue
        steps.append(redact_data(step.model_dump()))
    return (total if isinstance(total, int) and not isinstance(total, bool) else len(steps)), steps


class Endpoint(Protocol):
    """What a relay needs of the runner (``RunPodExecutor``): whose queue, and its streams."""

    endpoint_id: str
    follow_stream: bool

    async def stream(self, job_id: str, http: httpx.AsyncClient | None = None, *, retry: bool = True) -> dict[str, Any]: ...


class ProgressRelay:
    """Progress from a job's ``/status`` polls: "queued, no worker has taken it yet (N s)" every
    ``QUEUE_NOTICE_S`` while it waits, then what the worker reports (``progress_update``: the status
    ``output`` while IN_PROGRESS, each change once) and, when the runner follows streams, the
    ``/stream`` chunks. Used by the runner's own wait and by the MCP server's follower alike, which
    show ``steps`` (the steps the job has finished, as its worker last reported them) in the
    answer of a job still running, as a local job's handle shows those of its checkpoint."""

    def __init__(self, runner: Endpoint, progress: ProgressFn | None, since: float) -> None:
        self._runner, self._progress, self._since = runner, progress, since
        self._told_at = -math.inf
        self._last: Any = None
        self._steps: list[dict[str, Any]] = []
        self._steps_total = -1

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The finished steps the worker last reported (``[]`` before any, or from an older worker)."""
        return list(self._steps)

    async def saw(self, job_id: str, state: Mapping[str, Any], http: httpx.AsyncClient | None = None) -> None:
        progress, status = self._progress, state.get("status")
        update = state.get("output") if status == "IN_PROGRESS" else None
        self._keep_steps(update)
        if progress is None:
            return
        if status == "IN_QUEUE" and time.perf_counter() - self._told_at >= QUEUE_NOTICE_S:
            self._told_at = time.perf_counter()
            await progress("queued", f"queued on endpoint {self._runner.endpoint_id}, no worker has taken it yet"
                           f" ({max(0.0, time.time() - self._since):.0f} s)", None)
        if status != "IN_PROGRESS":
            return
        if self._runner.follow_stream:
            # progress only, once: a stream that does not answer is read at the next poll (retried
            # here, its timeouts ran minutes past the job's wait)
            try:
                chunks = (await self._runner.stream(job_id, http, retry=False)).get("stream") or []
            except RunPodError as exc:
                if exc.type not in NO_WORD_OF_THE_JOB:
                    raise
                chunks = []
            for chunk in chunks:
                await forward_progress(progress, chunk.get("output") if isinstance(chunk, dict) else chunk)
        if isinstance(update, Mapping):  # a change of the steps alone is no news to a person
            update = {key: value for key, value in update.items() if key not in STEP_KEYS}
        if update is not None and update != self._last:
            self._last = update
            await forward_progress(progress, update)

    def _keep_steps(self, update: Any) -> None:
        """Keep the steps of ``update`` unless an update already seen reported more (a late one)."""
        reported = steps_of(update)
        if reported is not None and reported[0] >= self._steps_total:
            self._steps_total, self._steps = reported


async def forward_progress(progress: ProgressFn, update: Any) -> None:
    """One update a worker sent (``{stage, message, fraction}``, or anything else, shown redacted)."""
    if isinstance(update, dict) and "stage" in update:
        await progress(str(update["stage"]), str(update.get("message", "")), update.get("fraction"))
    elif update is not None:
        await progress("worker", redact(str(update))[:200], None)
