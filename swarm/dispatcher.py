"""The unified dispatcher: ``{project, action, input}`` -> the action's result + trace.

Both doors call ``dispatch``: ``handler.py`` inside the RunPod worker and the MCP server's
local runner. Actions are found in the registry (``graphs.actions``) and imported on first use.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.credentials import JobCredentials, credentials_scope
from core.errors import AllProvidersFailed, InputError, SwarmError
from core.redact import redact, redact_data, register_masked_parts
from core.rules import (
    EMPTY_TEXT,
    IDEMPOTENCY_KEY_PATTERN,
    JOB_ID_PATTERN,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_JOB_ID_CHARS,
    valid_job_id,
)
from graphs.actions import made_so_far, resolve_action
from graphs.budget import METER_KEY, JobMeter, add_refused_call, job_scope
from graphs.checkpoint import PRUNED_RESTART
from graphs.context import REPLAYED, RESUMED_AT, JobContext
from graphs.store_errors import store_unavailable
from providers.base import TraceStep
from swarm.envelope import JobEnvelope, totals_of
from swarm.idempotency import job_id_for_key
from swarm.logs import bind_job, unbind_job
from swarm.telemetry import export_job_spans

if TYPE_CHECKING:
    from core.config import SwarmConfig

log = logging.getLogger("swarm.dispatcher")

#: set on the log record of a failed job: the CLI, which prints the error itself, filters it out
JOB_FAILED_MARK = "swarm_job_failed"


class JobDeadlineExceeded(SwarmError):
    """The whole job ran past ``limits.job_deadline_s``."""

    kind = "job_deadline_exceeded"


#: the longest project or action name a job may give
MAX_NAME_CHARS = 64


class JobRequest(BaseModel):
    """One job as both doors receive it."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    action: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    input: dict[str, Any] = Field(default_factory=dict)
    job_id: str | None = Field(default=None, max_length=MAX_JOB_ID_CHARS, pattern=JOB_ID_PATTERN)
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS, pattern=IDEMPOTENCY_KEY_PATTERN,
        description="same key -> same job id (swarm.idempotency); when set it decides the job id",
    )


def input_error_from_validation(exc: ValidationError, prefix: str = "input") -> InputError:
    """One InputError naming every bad field, its problem and the limit pydantic reported."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]))
        ctx = err.get("ctx") or {}
        if err["type"] == "string_too_short" and ctx.get("min_length") == 1:  # as the MCP door says it
            parts.append(f"{loc}: {EMPTY_TEXT}")
            continue
        limit = next((f" (limit {k}={v})" for k, v in ctx.items() if k in {"max_length", "min_length", "le", "ge", "lt", "gt"}), "")
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{limit}")
    error = InputError("; ".join(parts))
    error.field = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else None
    return error


async def dispatch(raw: dict[str, Any] | JobRequest, make_context: Any,
                   credentials: Callable[[], JobCredentials] | None = None,
                   telemetry_config: SwarmConfig | None = None) -> dict[str, Any]:
    """Validate one job, run its action and return the result envelope.

    Args:
        raw: ``{project, action, input, job_id?}``.
        make_context: ``async (job_id) -> JobContext`` (the runtime builds providers, checkpointer).
        credentials: a RunPod job's: checks what its client forwarded (``core.credentials``;
            an ``InputError`` fails the job); the job runs with them, and its dispatch step names
            them. ``None``: a job run in-process, with this process's environment only.
        telemetry_config: the process's config, whose ``observability`` exports the spans of a job
            that failed before it had a context (the checkpoint store would not open); a job with a
            context exports with its own.

    Returns:
        ``JobEnvelope.to_dict()``: ``{job_id, project, action, status, output, error, trace,
        totals, elapsed_ms}``; status is COMPLETED or FAILED. Errors carry ``{type, message}``;
        when a chain ran dry, its attempts are steps of ``trace`` (and listed in the message), and
        what the job had made is ``output`` with ``partial: true``. No traceback and no secret
        ever reaches them. A job cancelled midway (an MCP client's cancel, a worker stopped)
        re-raises the cancellation; its spans are exported first, as a CANCELLED job with the
        steps it had finished.
    """
    started = time.perf_counter()
    given = _given_job_id(raw)
    minted = None if given else str(uuid.uuid4())
    envelope = JobEnvelope.for_job(_given_names(raw), given or minted)
    ctx: JobContext | None = None
    bound = None
    forwarded: JobCredentials | None = None
    try:
        job = _validate_job(raw)
        envelope = JobEnvelope.for_job(job, _job_id_of(job, envelope.job_id))
        bound = bind_job(envelope.job_id)
        fn, inp = _action_and_input(job)
        forwarded = credentials() if credentials is not None else None
        with credentials_scope(forwarded):  # this job's tasks only: never another job's keys
            # a secret in the input (a bearer token in a question) is masked wherever the job repeats it
            register_masked_parts(job.input)
            ctx = await make_context(envelope.job_id)
            ctx.new_job = envelope.job_id == minted  # an id minted here has no checkpoint yet
            ctx.job_kind = f"{job.project}/{job.action}"
            _record_input(ctx, job, inp)
            output = await _run_action(fn, inp, ctx, job, envelope.job_id)
        envelope = envelope.replace(trace=list(output.pop("trace", [])), output=output)
    except asyncio.CancelledError:
        _export_cancelled(envelope, started, ctx, forwarded, telemetry_config)
        unbind_job(bound)
        raise
    except SwarmError as exc:
        envelope = _failure(envelope, exc)
    except Exception as exc:  # a bug, not an input or provider problem: logged, never leaked
        if (unavailable := store_unavailable(exc, envelope.job_id)) is not None:
            envelope = _failure(envelope, unavailable)
        else:
            log.error("job %s crashed: %s", envelope.job_id, redact(repr(exc)), exc_info=log.isEnabledFor(logging.DEBUG))
            envelope = _crashed(envelope, ctx, on_worker=credentials is not None)
    trace = [*envelope.trace, _dispatch_step(envelope, started, ctx, forwarded)]
    envelope = envelope.replace(
        trace=trace, totals=totals_of(trace), elapsed_ms=round((time.perf_counter() - started) * 1000, 2)
    )
    final = redact_data(envelope.to_dict())
    export_job_spans(final, ctx, telemetry_config)
    unbind_job(bound)
    return final


def _export_cancelled(envelope: JobEnvelope, started: float, ctx: JobContext | None,
                      forwarded: JobCredentials | None, telemetry_config: SwarmConfig | None) -> None:
    """Export a cancelled job's spans: the steps of its last completed node (``graphs.run`` keeps
    the state it held) and the dispatch step, status CANCELLED. Whoever cancelled builds the answer."""
    from graphs.run import STOPPED_STATE

    state = (ctx.extras.get(STOPPED_STATE) if ctx is not None else None) or {}
    error = {"type": "JobCancelled", "message": f"job {envelope.job_id} was cancelled"}
    cancelled = envelope.replace(status="CANCELLED", error=error, trace=list(state.get("trace") or []))
    trace = [*cancelled.trace, _dispatch_step(cancelled, started, ctx, forwarded)]
    cancelled = cancelled.replace(trace=trace, totals=totals_of(trace),
                                  elapsed_ms=round((time.perf_counter() - started) * 1000, 2))
    export_job_spans(redact_data(cancelled.to_dict()), ctx, telemetry_config)


#: where a crash's details are: the log of the process that ran the job (``swarm.logs`` writes it
#: to stderr): a RunPod worker's, or, run in-process, the MCP server's (its client keeps it) or the
#: terminal of the ``swarm`` command
WORKER_LOG = "the RunPod worker's log"
LOCAL_LOG = "the MCP server's log on this machine (or the terminal of the swarm command that ran it)"


def _crashed(envelope: JobEnvelope, ctx: JobContext | None, *, on_worker: bool) -> JobEnvelope:
    """The FAILED envelope of a job that crashed (a bug): the provider calls it had made (billed)
    stay in its trace and totals, and its latest answer is ``output`` with ``partial: true``; a
    crashed job showed 0 tokens and $0 after a paid draft, and lost the draft. ``on_worker``: a
    RunPod job (its client's credentials checked), whose details are in the worker's log."""
    where = WORKER_LOG if on_worker else LOCAL_LOG
    error = {"type": "InternalError",
             "message": f"internal error in {envelope.project}/{envelope.action}; see {where}, job {envelope.job_id}"}
    meter = ctx.extras.get(METER_KEY) if ctx is not None else None
    if not isinstance(meter, JobMeter) or not meter.attempts:
        return envelope.failed(error)
    output = None
    if meter.last_text:
        output = {"partial": True, "text": meter.last_text, "text_from": meter.last_step}
    return envelope.failed(error, output=output, trace=list(meter.attempts))


def _validate_job(raw: dict[str, Any] | JobRequest) -> JobRequest:
    if not isinstance(raw, dict | JobRequest):
        raise InputError(f"must be an object with project, action and input, not {type(raw).__name__}", field="job")
    _refuse_lone_surrogates(raw if isinstance(raw, dict) else {"input": raw.input})
    try:
        return raw if isinstance(raw, JobRequest) else JobRequest.model_validate(raw)
    except ValidationError as exc:
        raise input_error_from_validation(exc, prefix="job") from None


def _refuse_lone_surrogates(raw: dict[str, Any]) -> None:
    """An ``InputError`` naming the first text (a value or a field name) that holds a lone UTF-16
    surrogate: valid JSON (``"\\ud800"``) but no Unicode text, which pydantic refused only as "unable
    to parse raw data as a unicode string", naming the whole ``input`` for a field name. One walk
    over the job, before any model validates it."""
    stack: list[tuple[str, Any]] = [("", raw)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            _check_text(value, path or "job", "")
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                name = _printable(str(key))
                if isinstance(key, str):
                    _check_text(key, f"{path}.{name}" if path else name, "the field name ")
                stack.append((f"{path}.{name}" if path else name, item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value))))


def _check_text(text: str, path: str, what: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # as every input error: the message says the path from the job ("input.task", "job.project"),
        # ``field`` the argument's own name ("task", "project")
        inside = path.removeprefix("input.")
        error = InputError(f"{path if inside != path else f'job.{path}'}: {what}holds a lone surrogate"
                           f" ({_printable(text[exc.start])}) at character {exc.start}; text must be valid Unicode")
        error.field = inside
        raise error from None


def _printable(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``\\ud800``): safe to log and send."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _job_id_of(job: JobRequest, fallback: str | None) -> str | None:
    """The job's id: the idempotency key's, else the caller's, else ``fallback``."""
    if job.idempotency_key is not None:  # beats a door's own per-delivery id (RunPod's)
        return job_id_for_key(job.project, job.action, job.idempotency_key)
    return job.job_id or fallback


def _action_and_input(job: JobRequest) -> tuple[Any, BaseModel]:
    """The action's function and the job's input validated against its model."""
    fn, model = resolve_action(job.project, job.action)
    try:
        return fn, model.model_validate(job.input)
    except ValidationError as exc:
        raise input_error_from_validation(exc) from None


def _record_input(ctx: JobContext, job: JobRequest, inp: BaseModel) -> None:
    """Give the job the digest of the input its action runs on, which its checkpoints record: the
    same id given again with other input is refused (``graphs.run.InputIdentity``), not answered
    with the first job's result. Named by the idempotency key when one decided the job id."""
    # imported here, not at the top: graphs.run brings in LangGraph, which only a job needs
    from graphs.run import JOB_INPUT, InputIdentity

    named_by = ("idempotency_key", job.idempotency_key) if job.idempotency_key else ("job_id", ctx.job_id)
    # the fields the caller set, secrets masked: a release that adds a field with a default, or a
    # signed URL signed again for the same object, is the same input when the job is resumed
    given = redact_data(inp.model_dump(mode="json", exclude_unset=True))
    ctx.extras[JOB_INPUT] = InputIdentity.of(given, *named_by)


async def _run_action(fn: Any, inp: BaseModel, ctx: JobContext, job: JobRequest, job_id: str | None) -> Any:
    """The action's output (its trace included), run under the job's budget and deadline."""
    deadline_s = ctx.config.limits.job_deadline_s
    with job_scope(ctx.config, ctx.extras, job.input) as meter:
        try:
            ctx.deadline_at = time.monotonic() + deadline_s
            async with asyncio.timeout(deadline_s):
                output = await fn(inp, ctx)
            if isinstance(output, dict) and (past := meter.past_budget()):
                output.setdefault("warnings", []).append(past)
            if isinstance(output, dict) and (pruned := ctx.extras.get(PRUNED_RESTART)):
                output.setdefault("warnings", []).append(pruned)
            return output
        except TimeoutError:
            error = JobDeadlineExceeded(
                f"job {job_id} passed limits.job_deadline_s={deadline_s:g} s; completed steps are"
                " checkpointed: run it again with the same job_id to resume"
            )
            _keep_what_was_made(error, job, ctx)
            raise error from None


def _keep_what_was_made(error: JobDeadlineExceeded, job: JobRequest, ctx: JobContext) -> None:
    """A job stopped at its deadline keeps its finished steps, as a failed one does: the trace of
    every completed node and, where they made something (a draft, a stored image), the action's
    partial output, from the state its graph run held when it was cancelled (``graphs.run``)."""
    from graphs.run import STOPPED_STATE, attach_partial

    state = ctx.extras.pop(STOPPED_STATE, None)
    if not state:  # stopped before its graph ran, or after it finished
        return
    error.graph_state = state  # type: ignore[attr-defined]
    made = made_so_far(job.project, job.action, state)
    if made is not None:
        attach_partial(error, made)
    else:
        error.trace = list(state.get("trace") or [])  # type: ignore[attr-defined]


def _dispatch_step(envelope: JobEnvelope, started: float, ctx: JobContext | None = None,
                   forwarded: JobCredentials | None = None) -> dict[str, Any]:
    replayed = ctx is not None and ctx.extras.get(REPLAYED)
    resumed = ctx.extras.get(RESUMED_AT) if ctx is not None else None
    detail = None
    if replayed:  # a finished job asked for again: what a client adding up costs must not count twice
        detail = ("replayed: the stored result of this job id; no provider was called now, the steps"
                  " above and the totals are those of its first run")
    elif resumed:  # the steps above before it are the first run's; a call cut off then is in no trace
        detail = (f"resumed at {', '.join(resumed)} from its checkpoint: the steps finished before it stopped"
                  " were not run again; a provider call in flight when it stopped may have been billed and"
                  " is not in this trace")
    pruned = ctx.extras.get(PRUNED_RESTART) if ctx is not None else None  # it started over, paying again
    keys = forwarded.detail() if forwarded is not None else None  # names only, never a value
    detail = "; ".join(filter(None, [detail, pruned, keys])) or None
    return TraceStep(
        step="dispatch",
        kind="node",
        provider="dispatcher",
        latency_ms=(time.perf_counter() - started) * 1000,
        outcome="ok" if envelope.status == "COMPLETED" else "error",
        error_class=(envelope.error or {}).get("type"),
        detail=detail,
    ).model_dump()


def _given_job_id(raw: Any) -> str | None:
    """The caller's job id, even when the rest of the job is malformed (if the id itself is valid)."""
    value = raw.job_id if isinstance(raw, JobRequest) else (raw.get("job_id") if isinstance(raw, dict) else None)
    return valid_job_id(value)


def _given_names(raw: Any) -> dict[str, str | None]:
    """The caller's project and action, even when the rest of the job is malformed (a string for
    ``input``): each one that is a name a job may carry (``MAX_NAME_CHARS``), else ``None``."""
    def name(key: str) -> str | None:
        value = raw.get(key) if isinstance(raw, dict) else getattr(raw, key, None)
        valid = isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS and _printable(value) == value
        return value if valid else None

    return {"project": name("project"), "action": name("action")}


def _failure(envelope: JobEnvelope, exc: SwarmError) -> JobEnvelope:
    """The FAILED envelope of ``exc``: its error, the attempts and partial output it carries."""
    error = exc.to_dict()
    result: dict[str, Any] = {"output": envelope.output, "trace": list(envelope.trace)}
    if isinstance(exc, AllProvidersFailed):
        result["trace"].extend(error.pop("attempts", []))
    if exc.partial is not None:  # any error a graph gave what it had made (an image step, a draft)
        result["output"] = exc.partial
    trace = getattr(exc, "trace", None)
    if trace:
        result["trace"][:0] = trace
    add_refused_call(result, exc)
    # marked: a door that prints the error itself (the CLI) drops this line instead of saying it twice
    log.warning("job %s failed: %s", envelope.job_id, redact(str(exc)), extra={JOB_FAILED_MARK: True})
    return envelope.failed(error, output=result["output"], trace=result["trace"])
