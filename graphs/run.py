"""Run a compiled graph for one job: resume by job id, stream progress, return final state."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.errors import InputError, SwarmError
from graphs.budget import current_meter
from graphs.context import EARLIER_STEPS, REPLAYED, RESUMED_AT, JobContext, _no_progress, step_identity
from graphs.job_lock import everywhere, running
from graphs.lean_saver import LeanStartSaver
from graphs.progress import publish_steps, relay
from graphs.store_errors import store_unavailable

# JOB_INPUT_KEY: the checkpoint metadata key of the input's digest (``InputIdentity``), which a
# pruned job's tombstone keeps too
from graphs.tombstones import JOB_INPUT_KEY, PRUNED_RESTART, pruned_restart

#: the checkpoint metadata key that records ``project/action`` (``JobContext.job_kind``)
JOB_KIND_KEY = "swarm_job"
#: ``JobContext.extras`` key of the job's ``InputIdentity`` (the dispatcher sets it)
JOB_INPUT = "job_input"
#: ``JobContext.extras`` key of the state after the last completed node of a run that was
#: cancelled (the job's deadline): what the dispatcher's error keeps of it (``attach_partial``)
STOPPED_STATE = "stopped_state"


@dataclass(frozen=True)
class InputIdentity:
    """What a job id given again is checked against: the digest of the input the action runs on.

    ``id_field``/``id_value`` name what the caller named the job by (``job_id``, or the
    ``idempotency_key`` that decided it). A door that resumes a job sends its input again as
    given (RunPod's /retry, MCP's ``resume_unfinished``, which refuses a copy its store masked).
    """

    digest: str
    id_field: str
    id_value: str

    @classmethod
    def of(cls, data: dict[str, Any], id_field: str, id_value: str) -> InputIdentity:
        """The identity of ``data``, a validated input (``model_dump(mode="json")``)."""
        # ASCII escapes: a lone surrogate (valid JSON, "\ud800") has no UTF-8 form to hash
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return cls(hashlib.sha256(canonical.encode("ascii")).hexdigest(), id_field, id_value)

    def check(self, recorded: Any) -> None:
        """``InputError`` when ``recorded`` (a checkpoint's digest) is another input's; a
        checkpoint written before digests were recorded has none and resumes."""
        if recorded and recorded != self.digest:
            raise InputError(f"{self.id_value!r} was used for another input; use a new {self.id_field},"
                             " or the same input to resume", field=self.id_field)


def lean_checkpointer(ctx: JobContext, saver: Any = None) -> Any:
    """``saver`` (default ``ctx.checkpointer``) in a ``LeanStartSaver``; ``None`` stays ``None``.

    For graphs whose first step runs one task (see ``graphs.lean_saver``). The job's own saver
    gets one wrapper per config version; another (a job's throwaway saver) a wrapper of its own.
    """
    if saver is None or saver is ctx.checkpointer:
        shared = ctx.checkpointer
        if shared is None:
            return None
        return ctx.providers.memo(("lean-saver", id(shared)), lambda: LeanStartSaver(shared))
    return LeanStartSaver(saver)


async def run_graph(graph: Any, initial: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run ``graph`` under thread ``ctx.job_id`` with durable (sync) checkpoints.

    A job id whose checkpoint stopped midway resumes from there (the interrupted node runs
    again, completed ones do not); a finished one returns its stored final state. Progress the
    nodes ``emit`` reaches ``ctx.progress`` (``graphs.progress.relay``).
    """
    # the job's kind and input digest ride in ``configurable``, which LangGraph copies into every
    # checkpoint's metadata
    identity: InputIdentity | None = ctx.extras.get(JOB_INPUT)
    config = {"configurable": {"thread_id": ctx.job_id, **({JOB_KIND_KEY: ctx.job_kind} if ctx.job_kind else {}),
                               **({JOB_INPUT_KEY: identity.digest} if identity else {})}}
    start: dict[str, Any] | None = initial
    lean = graph.checkpointer if isinstance(graph.checkpointer, LeanStartSaver) else None
    # a job id minted for this job has no checkpoint (nor does LangGraph's own first read need to
    # ask the store); for any other, one saver read says whether it has one, without the state
    # snapshot LangGraph would assemble around it
    if ctx.new_job or ctx.checkpointer is None:
        if ctx.new_job and lean is not None:
            lean.expect_new(ctx.job_id)
        return await _run_from(graph, start, config, ctx, lean)
    with running(ctx.job_id):  # a given id: one run of it at a time on this machine
        try:
            async with everywhere(ctx.checkpointer, ctx.job_id):  # and on every machine sharing its store
                return await _resumed_or_run(graph, start, config, ctx, lean, identity)
        except Exception as exc:  # the lock's own connection to the store failed
            if isinstance(exc, SwarmError) or (unavailable := store_unavailable(exc, ctx.job_id)) is None:
                raise
            raise unavailable from exc


async def _resumed_or_run(graph: Any, start: dict[str, Any] | None, config: dict[str, Any], ctx: JobContext,
                          lean: LeanStartSaver | None, identity: InputIdentity | None) -> dict[str, Any]:
    """A given job id's run: its stored final state, its resumption, or its first run (or a run
    again from the start, said in ``ctx.extras[PRUNED_RESTART]``, of a job whose checkpoints
    were pruned, unless its id was given to another input)."""
    if (stored := await ctx.checkpointer.aget_tuple(config)) is None:
        # said only to a job of the pruned one's input: another input under its id is a new job
        pruned = await pruned_restart(ctx.checkpointer, ctx.job_id, ctx.config.checkpointer.retention_days,
                                      input_digest=identity.digest if identity is not None else None)
        if pruned is not None:
            ctx.extras[PRUNED_RESTART] = pruned
            await ctx.progress("resume", pruned, None)
    else:
        recorded = (stored.metadata or {}).get(JOB_KIND_KEY)
        if recorded and ctx.job_kind and recorded != ctx.job_kind:
            raise InputError(f"{ctx.job_id!r} is a job of {recorded}, not {ctx.job_kind}; "
                             "give this job another job_id (or none)", field="job_id")
        if identity is not None:
            identity.check((stored.metadata or {}).get(JOB_INPUT_KEY))
        snapshot = await graph.aget_state(config)
        if snapshot.values:
            # the steps an earlier run made (and exported): telemetry sends only this run's
            ctx.extras[EARLIER_STEPS] = {step_identity(s) for s in snapshot.values.get("trace") or []}
            if not snapshot.next:
                ctx.extras[REPLAYED] = True
                return dict(snapshot.values)
            start = None
            ctx.extras[RESUMED_AT] = list(snapshot.next)
            if (meter := current_meter.get()) is not None:
                meter.carry(list(snapshot.values.get("trace") or []))
            await ctx.progress("resume", f"resuming at {', '.join(snapshot.next)}", None)
    return await _run_from(graph, start, config, ctx, lean)


async def _run_from(graph: Any, start: dict[str, Any] | None, config: dict[str, Any], ctx: JobContext,
                    lean: LeanStartSaver | None) -> dict[str, Any]:
    try:
        return await _stream(graph, start, config, ctx)
    finally:
        if lean is not None:  # drop what it held if the run ended early
            lean.forget(ctx.job_id)


async def _stream(graph: Any, start: dict[str, Any] | None, config: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The graph's final state; a run that stops leaves the state after its last completed node
    (what the action can return as a partial result) on its error, or, cancelled, in ``ctx.extras``."""
    final: dict[str, Any] = {}
    # "sync" makes every step durable before the next starts; without a saver there is nothing
    # to make durable (and langgraph 1.2 fails if asked to).
    durability = {"durability": "sync"} if ctx.checkpointer is not None else {}
    try:
        async with relay(None if ctx.progress is _no_progress else ctx.progress):
            async for values in graph.astream(start, config, stream_mode="values", **durability):
                final = values
                publish_steps(values.get("trace") or [])
    except SwarmError as exc:
        if getattr(exc, "graph_state", None) is None:
            exc.graph_state = dict(final)  # type: ignore[attr-defined]
        raise
    except asyncio.CancelledError:  # no error object to carry it: whoever cancelled (the deadline) reads it there
        ctx.extras[STOPPED_STATE] = dict(final)
        raise
    except Exception as exc:
        unavailable = store_unavailable(exc, ctx.job_id)
        if unavailable is None:
            raise
        # the steps that ran (paid for) stay in the answer: an InternalError showed 0 tokens
        unavailable.trace = list(final.get("trace") or [])  # type: ignore[attr-defined]
        unavailable.graph_state = dict(final)  # type: ignore[attr-defined]
        raise unavailable from exc
    return final


def attach_partial(exc: Any, output: dict[str, Any]) -> None:
    """Give a failed job's error (``BudgetExceeded``/``AllProvidersFailed``) what it had produced:
    ``output`` with ``partial: True`` over any partial the error carries, and the trace steps of
    every completed node (``exc.graph_state``, set by ``run_graph``) before the error's own."""
    state = getattr(exc, "graph_state", None) or {}
    partial = dict(exc.partial) if isinstance(exc.partial, dict) else {}
    partial.update(partial=True, **output)
    exc.partial = partial
    steps = list(state.get("trace", []))

    def key(step: dict[str, Any]) -> tuple[Any, ...]:
        return step.get("step"), step.get("kind"), step.get("provider"), step.get("model"), step.get("at")

    seen = {key(s) for s in steps}  # the meter holds the completed nodes' LLM attempts too
    steps += [s for s in getattr(exc, "trace", None) or [] if key(s) not in seen]
    exc.trace = steps
