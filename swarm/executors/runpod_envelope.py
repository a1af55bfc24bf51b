"""What a RunPod job's end becomes: the envelope the local executor would return, with the
runpod step last in its trace, redacted; ``RunPodError``, a request to the endpoint that failed
for good; and ``worker_error``, RunPod's ``error`` field as ``{type, message}``."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from core.redact import redact, redact_data
from core.rules import valid_job_id
from graphs.actions import ACTIONS
from providers.base import TraceStep
from swarm.dispatcher import totals_of
from swarm.envelope import ENVELOPE_IN_ERROR, JobEnvelope

#: what the error of a ``/run`` that went out but got no usable answer (a 5xx, a timeout, a
#: connection dropped) says; a FAILED envelope whose error says it names no job as "not queued"
MAY_BE_QUEUED = ("the job may have been queued all the same, and a second /run would start a second job; look for it"
                 " in the endpoint's requests before submitting again")

#: why an endpoint has no record of a job it was sent (HTTP 404 to /status): RunPod drops a result
#: 30 min after /run ends (1 min after /runsync); a local endpoint (``swarm endpoint serve``) keeps
#: jobs in memory, so its restart forgets them too. Neither can say which: it does not know the id.
NO_RECORD_WHY = "its result expired, or the endpoint restarted since"


def unknown_job(endpoint_id: str, job_id: str, detail: str) -> str:
    """What a 404 to ``/status/{job_id}`` (or ``/stream``, ``/cancel``) says: the endpoint does not know the job."""
    return (f"RunPod endpoint {endpoint_id} has no record of job {job_id}: {NO_RECORD_WHY} (RunPod keeps a result"
            f" 30 min after /run; a local endpoint keeps jobs in memory only); submit the job again to run it."
            f" The endpoint said (HTTP 404): {detail}")


#: error types of a request that got no answer about the job (a timeout, a dropped or refused
#: connection, a 5xx, a 429): the job runs on there, and following it goes on
NO_WORD_OF_THE_JOB = frozenset({"ProviderTimeout", "ProviderUnavailable", "ProviderRateLimited"})


class RunPodError(Exception):
    """A request to the endpoint failed for good: ``type`` and ``message`` go in the envelope."""

    def __init__(self, type_: str, message: str, http_status: int | None = None) -> None:
        self.type = type_
        self.message = redact(message)
        self.http_status = http_status
        super().__init__(self.message)


def final_envelope(endpoint_id: str, job: dict[str, Any], job_id: str | None, state: dict[str, Any],
                   started: float) -> dict[str, Any]:
    """The envelope of ``job`` from ``endpoint_id``'s final ``state`` (``started``: perf_counter)."""
    status = state.get("status")
    output = state.get("output")
    if isinstance(output, list) and output and isinstance(output[-1], dict) and "status" in output[-1]:
        output = output[-1]  # a generator handler with return_aggregate_stream: the envelope is last
    # The swarm handler answers with an envelope; any other handler's output is the job's output.
    sent = JobEnvelope.from_dict(output, job, job_id) if isinstance(output, dict) and "status" in output else None
    if status == "COMPLETED" and sent is None and output is None and job.get("project") in ACTIONS:
        # RunPod's answer to a handler error that was no string: a worker image older than
        # this client (its handler sent the error as an object), whose error was dropped
        envelope = JobEnvelope.for_job(job, job_id).failed({
            "type": "WorkerError",
            "message": f"RunPod job {job_id} ended COMPLETED with no output: the worker's error was lost on the way"
                       " (a worker image older than this client sends it as an object); rebuild and redeploy the image",
        })
    elif status == "COMPLETED" and sent is None and job.get("project") in ACTIONS:
        # another handler's answer (a vLLM endpoint's id set by mistake): read as this project's,
        # a list or a string crashed the MCP server and the CLI, and a dict came back an empty success
        envelope = JobEnvelope.for_job(job, job_id).failed({
            "type": "WorkerError",
            "message": f"RunPod job {job_id} ended COMPLETED with output that is no runpod-swarm result"
                       f" ({_shape(output)}): is RUNPOD_ENDPOINT_ID ({endpoint_id}) the endpoint running this"
                       " project's worker image?",
        })
    elif status == "COMPLETED":
        envelope = sent or JobEnvelope.for_job(job, job_id, output=output)
    elif status == "FAILED":
        # the envelope the handler sent: in ``output``, or (an API that drops a FAILED job's output)
        # inside its error string (``swarm.envelope.for_runpod``)
        sent = sent or _carried_envelope(state.get("error"), job, job_id)
        # no envelope (a worker that died, or lost): the steps its worker reported finished (paid for)
        reported = list(state.get("_steps") or [])
        envelope = (sent or JobEnvelope.for_job(job, job_id, trace=reported)).failed(worker_error(state.get("error")))
    elif state.get("_budget_exhausted"):
        local_id = valid_job_id(job.get("job_id"))
        again = (f"; run this job again with job id {local_id} to follow it (it is not submitted again)"
                 if local_id else ", ask for its status later")
        # ``_unanswered``: the endpoint stopped answering its status polls, so the status is the last known
        unanswered = state.get("_unanswered")
        last = (f"{status} when the endpoint last answered" if state.get("_answered")
                else "the endpoint answered no status poll")
        now = (f"may still be running there ({last}): {unanswered}" if unanswered
               else f"is still {status} after the wait budget; it keeps running there")
        # the steps its worker last reported finished (``runpod_progress``); the result will have them all
        envelope = JobEnvelope.for_job(job, job_id, status=status, trace=list(state.get("_steps") or []), error={
            "type": "StillRunning", "message": f"RunPod job {job_id} {now}{again}",
        })
    else:  # CANCELLED or TIMED_OUT: no envelope comes, the steps its worker reported finished stay
        envelope = JobEnvelope.for_job(job, job_id, trace=list(state.get("_steps") or [])).failed({
            "type": "JobCancelled" if status == "CANCELLED" else "JobTimedOut",
            "message": f"RunPod job {job_id} ended {status}"
            + (f": {state['error']}" if isinstance(state.get("error"), str) else ""),
        })
    return _finish(endpoint_id, envelope.replace(job_id=envelope.job_id or job_id), state, started)


def _shape(output: Any) -> str:
    """What a foreign handler's output is, in a few words (never its content: it may hold anything)."""
    if isinstance(output, dict):
        keys = ", ".join(sorted(str(key)[:40] for key in output)[:5])
        return f"an object with keys {keys}" if keys else "an empty object"
    return f"a {type(output).__name__}" if output is not None else "none"


def failure_envelope(endpoint_id: str, job: dict[str, Any], job_id: str | None, type_: str, message: str,
                     started: float, steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The FAILED envelope of a request that failed (``job_id``: RunPod's, ``None`` when /run
    never gave one); it keeps the job id the caller gave and showed, as a worker's would, and the
    ``steps`` its worker had reported finished (paid for: they stay in the answer)."""
    envelope = JobEnvelope.for_job(job, valid_job_id(job.get("job_id")) or job_id, trace=list(steps or [])).failed(
        {"type": type_, "message": redact(message)})
    state: dict[str, Any] = {"id": job_id, "status": "FAILED"}
    if job_id is None and MAY_BE_QUEUED in message:
        state["_may_be_queued"] = True
    return _finish(endpoint_id, envelope, state, started, error_class=type_)


def _finish(endpoint_id: str, envelope: JobEnvelope, state: dict[str, Any], started: float,
            error_class: str | None = None) -> dict[str, Any]:
    """``envelope`` with the runpod step last and this side's elapsed time, as a redacted dict."""
    elapsed = (time.perf_counter() - started) * 1000
    if state.get("id"):
        detail = f"job {state['id']} {state.get('status')}"
    elif state.get("_may_be_queued"):  # /run went out and got no answer that names the job
        detail = f"submitting failed: the job may have been queued on endpoint {endpoint_id} all the same (no job id came back)"
    else:
        detail = f"the job was not queued on endpoint {endpoint_id}"
    if "delayTime" in state:
        detail += f"; queued {state['delayTime']} ms, ran {state.get('executionTime', '?')} ms on {state.get('workerId', '?')}"
    step = TraceStep(
        step="runpod",
        kind="node",
        provider="runpod",
        model=endpoint_id,
        latency_ms=round(elapsed, 2),
        outcome="ok" if envelope.status == "COMPLETED" else "error",
        error_class=error_class or (envelope.error or {}).get("type"),
        detail=detail,
    ).model_dump()
    trace = [*envelope.trace, step]
    # a job its worker never answered has no totals: none were counted, the runpod step is no provider call
    envelope = envelope.replace(trace=trace, elapsed_ms=round(elapsed, 2), totals=envelope.totals or totals_of(trace))
    return redact_data(envelope.to_dict())


#: what a swarm error carries besides type and message (``SwarmError.to_dict``)
_ERROR_KEYS = ("type", "message", "attempts", "field", "key", "partial")


def _decoded(raw: Any) -> Any:
    """``raw`` as JSON when it is a string that holds some, else ``raw``."""
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            return json.loads(raw)
    return raw


def _carried_envelope(raw: Any, job: dict[str, Any], job_id: str | None) -> JobEnvelope | None:
    """The envelope a swarm handler's error string carries (``ENVELOPE_IN_ERROR``), or None."""
    decoded = _decoded(raw)
    carried = decoded.get(ENVELOPE_IN_ERROR) if isinstance(decoded, dict) else None
    if not isinstance(carried, dict) or "status" not in carried:
        return None
    return JobEnvelope.from_dict(carried, job, job_id)


def worker_error(raw: Any) -> dict[str, Any]:
    """RunPod's ``error`` field as ``{type, message}``, with no traceback and no secret.

    The swarm handler sends the JSON string of ``{type, message, ...}`` (``swarm.envelope.for_runpod``;
    its other keys, such as ``attempts``, are kept, not the envelope it carries); a handler that
    raised gets the SDK's JSON string with ``error_type``, ``error_message`` and a traceback
    (dropped here).
    """
    decoded = _decoded(raw)
    if isinstance(decoded, dict) and "message" in decoded and "type" in decoded:
        raw = decoded
    if isinstance(raw, dict) and "message" in raw:
        kept = redact_data({k: raw[k] for k in _ERROR_KEYS if k in raw})  # never a worker's traceback
        return {**kept, "type": str(raw.get("type") or "WorkerError"), "message": redact(str(raw["message"]))}
    if isinstance(raw, str):
        if isinstance(decoded, dict) and "error_message" in decoded:
            kind = str(decoded.get("error_type", "")).removeprefix("<class '").removesuffix("'>").rsplit(".", 1)[-1]
            return {"type": kind or "WorkerError", "message": redact(str(decoded["error_message"]))[:500]}
        first = raw.split("\ntraceback:", 1)[0].split("\nTraceback", 1)[0]
        return {"type": "WorkerError", "message": redact(first)[:500]}
    return {"type": "WorkerError", "message": redact(str(raw))[:500] if raw is not None else "the worker reported a failure"}
