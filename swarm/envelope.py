"""The job envelope: what every executor and door returns for one job, whatever ran it.

``dispatch`` builds it in-process, the RunPod executor rebuilds it from an endpoint's answer,
and the endpoint's demo worker answers with one. Callers that expect dicts (the doors, the job
store, the tests) get ``to_dict()``, which always has the same keys in the same order.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Protocol

from graphs.budget import unknown_cost


class NamedJob(Protocol):
    """A validated job (``swarm.dispatcher.JobRequest``): the envelope needs its two names."""

    @property
    def project(self) -> str: ...

    @property
    def action(self) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class JobEnvelope:
    """One job's result.

    Attributes:
        job_id: the job's id (the caller's, the idempotency key's, or the endpoint's).
        project: the job's project; ``None`` when the job never named a valid one.
        action: the job's action; ``None`` likewise.
        status: ``COMPLETED`` or ``FAILED``; ``CANCELLED``, or RunPod's ``IN_QUEUE`` /
            ``IN_PROGRESS`` when a remote job outlived the caller's wait.
        output: what the action returned (minus its trace), or a partial result.
        error: ``{type, message, ...}`` when the job did not complete; never a traceback or a secret.
        trace: one step per graph node and provider attempt, the dispatch (and runpod) step last.
        totals: token, cost and provider-call totals over the trace.
        elapsed_ms: wall time of the job as its executor saw it.
    """

    job_id: str | None
    project: str | None = None
    action: str | None = None
    status: str = "COMPLETED"
    output: Any = None
    error: dict[str, Any] | None = None
    trace: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    totals: dict[str, Any] = dataclasses.field(default_factory=dict)
    elapsed_ms: float = 0.0

    @classmethod
    def for_job(cls, job: NamedJob | Mapping[str, Any] | None, job_id: str | None, **fields: Any) -> JobEnvelope:
        """The envelope of ``job`` (a ``JobRequest``, a raw job dict, or ``None`` for a malformed one).

        Args:
            job: where ``project`` and ``action`` come from.
            job_id: the job's id.
            **fields: any other envelope field (``status``, ``output``, ``error``, ...).
        """
        if job is None:
            project = action = None
        elif isinstance(job, Mapping):
            project, action = job.get("project"), job.get("action")
        else:
            project, action = job.project, job.action
        return cls(job_id=job_id, project=project, action=action, **fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], job: NamedJob | Mapping[str, Any] | None = None,
                  job_id: str | None = None) -> JobEnvelope:
        """An envelope another process sent (a worker's answer); keys it lacks come from ``job``.

        Keys outside the envelope's are dropped.
        """
        base = cls.for_job(job, job_id)
        given = {key: data[key] for key in ENVELOPE_KEYS if key in data}
        given["trace"] = list(given.get("trace") or [])
        return dataclasses.replace(base, **given)

    def failed(self, error: dict[str, Any], **fields: Any) -> JobEnvelope:
        """This envelope as FAILED with ``error`` (and any other field replaced)."""
        return dataclasses.replace(self, status="FAILED", error=error, **fields)

    def replace(self, **fields: Any) -> JobEnvelope:
        """A copy with ``fields`` replaced."""
        return dataclasses.replace(self, **fields)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as the doors and the job store pass it on (a shallow dict, keys in order)."""
        return {key: getattr(self, key) for key in ENVELOPE_KEYS}


#: The envelope's keys, in the order ``to_dict`` writes them.
ENVELOPE_KEYS = tuple(field.name for field in dataclasses.fields(JobEnvelope))


#: the key of RunPod's ``error`` string that carries the rest of a failed job's envelope
ENVELOPE_IN_ERROR = "envelope"


def for_runpod(envelope: dict[str, Any]) -> dict[str, Any]:
    """``envelope`` with its ``error`` as the JSON string of ``{type, message, ..., "envelope": rest}``.

    RunPod takes a handler's ``error`` as a string only: a dict ends the job COMPLETED with no
    output (runpod-python#299). The SDK's worker loop moves ``error`` out of the rest, which it
    sends as the job's ``output``; whether a FAILED job's ``output`` reaches the client is the
    platform's to decide, and the SDK's own local API (``--rp_serve_api``) answers a FAILED job
    with ``{id, status, error}`` only. So the string carries the rest of the envelope too, under
    ``ENVELOPE_IN_ERROR`` (job id, trace, partial output, totals), and ``output`` keeps it as well:
    ``swarm.executors.runpod_envelope.final_envelope`` reads whichever arrived.
    """
    error = envelope.get("error")
    if error is None or isinstance(error, str):
        return envelope
    rest = {key: value for key, value in envelope.items() if key != "error"}
    carried = {**error, ENVELOPE_IN_ERROR: rest}
    return {**envelope, "error": json.dumps(carried, ensure_ascii=False, default=str)}


def totals_of(trace: list[dict[str, Any]]) -> dict[str, Any]:
    """Token and cost totals over every step of a trace. The cost is unknown (``None``) where one
    billed model call's is (a sum of the others read as the job's whole cost), and where no step
    has a known cost although providers were called; a job that called none cost nothing."""
    costs = [float(s["cost_usd"]) for s in trace if s.get("cost_usd") is not None]
    calls = sum(1 for s in trace if s.get("kind") != "node" and s.get("outcome") != "skipped")
    unknown = any(unknown_cost(s) for s in trace) or (not costs and calls > 0)
    return {
        "input_tokens": sum(int(s.get("input_tokens") or 0) for s in trace),
        "output_tokens": sum(int(s.get("output_tokens") or 0) for s in trace),
        "cost_usd": None if unknown else round(sum(costs), 6),
        "provider_calls": calls,
    }
