"""The unified dispatcher: ``{project, action, input}`` -> the action's result + trace.

Both doors call ``dispatch``: ``handler.py`` inside the RunPod worker and the MCP server's
local runner. Actions are found by table lookup and imported on first use.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import typing
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import AllProvidersFailed, InputError, SwarmError
from core.redact import redact, redact_data
from core.rules import (
    IDEMPOTENCY_KEY_PATTERN,
    JOB_ID_PATTERN,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_JOB_ID_CHARS,
    valid_job_id,
)
from graphs.budget import fill_partial, job_scope
from graphs.context import JobContext
from providers.base import TraceStep
from providers.registry import import_string
from swarm.observability import bind_job, export_job_spans, unbind_job

log = logging.getLogger("swarm.dispatcher")

#: project -> action -> "module:function". The function takes (input_model, JobContext).
ACTIONS: dict[str, dict[str, str]] = {
    "swarm": {
        "delegate": "graphs.delegation.action:delegate",
        "research": "graphs.research.action:research",
    },
    "image_tools": {
        "upscale": "graphs.image.action:upscale",
        "remove_background": "graphs.image.action:remove_background",
        "pipeline": "graphs.image.action:pipeline",
    },
}

class JobDeadlineExceeded(SwarmError):
    """The whole job ran past ``limits.job_deadline_s``."""

    kind = "job_deadline_exceeded"

class JobRequest(BaseModel):
    """One job as both doors receive it."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)
    job_id: str | None = Field(default=None, max_length=MAX_JOB_ID_CHARS, pattern=JOB_ID_PATTERN)
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS, pattern=IDEMPOTENCY_KEY_PATTERN,
        description="same key -> same job id (swarm.idempotency); when set it decides the job id",
    )


def resolve_action(project: str, action: str) -> tuple[Any, type[BaseModel]]:
    """The action function and its input model; ``InputError`` listing the valid names."""
    actions = ACTIONS.get(project)
    if actions is None:
        raise InputError(f"unknown project {project!r}; valid: {', '.join(sorted(ACTIONS))}", field="project")
    target = actions.get(action)
    if target is None:
        raise InputError(
            f"unknown action {action!r} for project {project!r}; valid: {', '.join(sorted(actions))}",
            field="action",
        )
    try:
        fn = import_string(target)
    except ModuleNotFoundError as exc:
        raise InputError(
            f"action {project}/{action} is not available in this installation ({exc.name} is missing)",
            field="action",
        ) from None
    return fn, _input_model(fn)


@functools.lru_cache(maxsize=64)
def _input_model(fn: Any) -> type[BaseModel]:
    """The type of ``fn``'s first parameter; cached: resolving hints costs ~0.1 ms per job."""
    first = next(iter(inspect.signature(fn).parameters))
    return typing.get_type_hints(fn)[first]  # type: ignore[no-any-return]


def input_error_from_validation(exc: ValidationError, prefix: str = "input") -> InputError:
    """One InputError naming every bad field, its problem and the limit pydantic reported."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]))
        ctx = err.get("ctx") or {}
        limit = next((f" (limit {k}={v})" for k, v in ctx.items() if k in {"max_length", "min_length", "le", "ge", "lt", "gt"}), "")
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{limit}")
    error = InputError("; ".join(parts))
    error.field = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else None
    return error


def _envelope(job: JobRequest | None, job_id: str, started: float) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "project": job.project if job else None,
        "action": job.action if job else None,
        "status": "COMPLETED",
        "output": None,
        "error": None,
        "trace": [],
        "totals": {},
        "elapsed_ms": 0.0,
        "_started": started,
    }


def totals_of(trace: list[dict[str, Any]]) -> dict[str, Any]:
    """Token and cost totals over every step of a trace (unknown costs are left out)."""
    costs = [float(s["cost_usd"]) for s in trace if s.get("cost_usd") is not None]
    return {
        "input_tokens": sum(int(s.get("input_tokens") or 0) for s in trace),
        "output_tokens": sum(int(s.get("output_tokens") or 0) for s in trace),
        "cost_usd": round(sum(costs), 6) if costs else None,
        "provider_calls": sum(1 for s in trace if s.get("kind") != "node" and s.get("outcome") != "skipped"),
    }


async def dispatch(raw: dict[str, Any] | JobRequest, make_context: Any) -> dict[str, Any]:
    """Validate one job, run its action and return the result envelope.

    Args:
        raw: ``{project, action, input, job_id?}``.
        make_context: ``async (job_id) -> JobContext`` (the runtime builds providers, checkpointer).

    Returns:
        ``{job_id, project, action, status, output, error, trace, totals, elapsed_ms}``; status is
        COMPLETED or FAILED. Errors carry ``{type, message}`` (and ``attempts`` when a chain
        ran dry); no traceback and no secret ever reaches them.
    """
    started = time.perf_counter()
    job: JobRequest | None = None
    job_id = _given_job_id(raw) or str(uuid.uuid4())
    result = _envelope(None, job_id, started)
    ctx: JobContext | None = None
    bound = None
    try:
        try:
            job = raw if isinstance(raw, JobRequest) else JobRequest.model_validate(raw)
        except ValidationError as exc:
            raise input_error_from_validation(exc, prefix="job") from None
        job_id = job.job_id or job_id
        if job.idempotency_key is not None:  # beats a door's own per-delivery id (RunPod's)
            from swarm.idempotency import job_id_for_key

            job_id = job_id_for_key(job.project, job.action, job.idempotency_key)
        result = _envelope(job, job_id, started)
        bound = bind_job(job_id)
        fn, model = resolve_action(job.project, job.action)
        try:
            inp = model.model_validate(job.input)
        except ValidationError as exc:
            raise input_error_from_validation(exc) from None
        ctx = await make_context(job_id)
        deadline_s = ctx.config.limits.job_deadline_s
        with job_scope(ctx.config, ctx.extras, job.input):
            try:
                async with asyncio.timeout(deadline_s):
                    output = await fn(inp, ctx)
            except TimeoutError:
                raise JobDeadlineExceeded(
                    f"job {job_id} passed limits.job_deadline_s={deadline_s:g} s; completed steps are"
                    " checkpointed: run it again with the same job_id to resume"
                ) from None
        result["trace"] = list(output.pop("trace", []))
        result["output"] = output
    except SwarmError as exc:
        _fail(result, exc)
    except Exception as exc:  # a bug, not an input or provider problem: logged, never leaked
        log.error("job %s crashed: %s", result["job_id"], redact(repr(exc)), exc_info=log.isEnabledFor(logging.DEBUG))
        result["status"] = "FAILED"
        result["error"] = {
            "type": "InternalError",
            "message": f"internal error in {result['project']}/{result['action']}; see the worker log for job {result['job_id']}",
        }
    result["trace"].append(
        TraceStep(
            step="dispatch",
            kind="node",
            provider="dispatcher",
            latency_ms=(time.perf_counter() - started) * 1000,
            outcome="ok" if result["status"] == "COMPLETED" else "error",
            error_class=(result["error"] or {}).get("type"),
        ).model_dump()
    )
    result["totals"] = totals_of(result["trace"])
    result["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
    result.pop("_started", None)
    final = redact_data(result)
    export_job_spans(final, ctx)
    unbind_job(bound)
    return final


def _given_job_id(raw: Any) -> str | None:
    """The caller's job id, even when the rest of the job is malformed (if the id itself is valid)."""
    value = raw.job_id if isinstance(raw, JobRequest) else (raw.get("job_id") if isinstance(raw, dict) else None)
    return valid_job_id(value)


def _fail(result: dict[str, Any], exc: SwarmError) -> None:
    result["status"] = "FAILED"
    result["error"] = exc.to_dict()
    if isinstance(exc, AllProvidersFailed):
        result["trace"].extend(result["error"].pop("attempts", []))
        if exc.partial is not None:
            result["output"] = exc.partial
    trace = getattr(exc, "trace", None)
    if trace:
        result["trace"][:0] = trace
    fill_partial(result, exc)
    log.warning("job %s failed: %s", result["job_id"], redact(str(exc)))
