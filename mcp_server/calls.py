"""How a tool call reaches the executor: a background job on the runtime's runner.

A call waits up to the wait budget (``runner.wait_budget_s``); a job that takes longer comes
back as a handle the client polls with ``job_status`` / ``job_result``. Progress reaches the
caller as MCP progress notifications while it waits, and the job store keeps the last one
for whoever polls later.
"""

from __future__ import annotations

from typing import Any, cast

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context

from core.errors import InputError
from mcp_server.results import call_failed, raise_for_failure
from mcp_server.state import ServerState

LOCAL_OWNER = "local"


def server_state(ctx: Context) -> ServerState:
    """The server's lifespan state: runtime, jobs, log, subscriptions."""
    # a tool's bare ``Context`` types the lifespan state as a dict; the lifespan yields a ServerState
    return cast(ServerState, ctx.request_context.lifespan_context)


#: the storage keys a job writes: ``<project>/<job_id>/...`` (graphs/image/nodes.py)
JOB_KEY_PROJECTS = ("image_tools",)
#: the most of a key an error repeats
MAX_KEY_SHOWN = 300


def check_key_owner(ctx: Context, key: str, field: str = "key") -> None:
    """Refuse a storage key under another caller's job (``image_tools/<job_id>/...``) as if nothing
    were stored there: over HTTP, a client who got hold of another's key read their image, and
    could tell a real job id from an unknown one. A key under a job this store does not know (its
    row pruned after ``retention_days``, or never this server's) is refused to a client with a
    token too: the pruned row's owner was no longer checked, and anyone read the image. The local
    owner (stdio, HTTP without tokens) may read any key; so may anyone a key outside a job's folder."""
    parts = key.strip("/").split("/")
    # compared case-blind: on a case-insensitive disk (macOS, Windows) IMAGE_TOOLS/<job>/ is the same folder
    if len(parts) < 2 or parts[0].casefold() not in JOB_KEY_PROJECTS:
        return
    owner = owner_of(ctx)
    if owner == LOCAL_OWNER:
        return
    row = server_state(ctx).jobs.store.get(parts[1])
    if row is None or row["owner"] != owner:
        raise InputError(f"no object {key[:MAX_KEY_SHOWN]!r} in storage: use the key an image tool returned", field=field)


def over_http(ctx: Context) -> bool:
    """Whether the call came over HTTP (a client maybe on another machine), not stdio or in-process."""
    return ctx.request_context.request is not None


def owner_of(ctx: Context) -> str:
    """Who the caller is: the bearer token's identity on authenticated HTTP, else ``local``."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None) or {}
    token = getattr(scope.get("user"), "access_token", None)  # set only when auth is configured
    if token is None:
        token = get_access_token()
    return f"token:{token.client_id}" if token is not None else LOCAL_OWNER


#: the scale of every progress value sent (a percentage of the job)
PROGRESS_TOTAL = 100.0
#: the stage of a job's last event (research, image, delegation): only it may fill the bar
FINAL_STAGE = "done"


class ProgressScale:
    """MCP progress values for one request: a percentage of the job that always increases.

    MCP requires each notification's value to be above the last. A job's ``fraction`` is the
    value when it moves forward and stays under the total (a stage's own fraction, such as
    research's "search 2/2" at 1.0, must not fill the bar early: only ``done`` does); any other
    step (no fraction, or one that would go back) moves the value up by 1% of what is left.
    """

    def __init__(self) -> None:
        self.last: float | None = None

    def next(self, stage: str, fraction: float | None) -> float:
        fills = stage == FINAL_STAGE
        if fills and fraction is None:  # the job is done whatever its graph said of how far it got
            fraction = 1.0
        percent = None if fraction is None else round(fraction * PROGRESS_TOTAL, 2)
        if percent is not None and (percent < PROGRESS_TOTAL or fills and percent == PROGRESS_TOTAL) \
                and (self.last is None or percent > self.last):
            value = percent
        elif self.last is None:
            value = 0.0
        else:  # at least 0.01 more, as sent (rounded)
            value = max(round(self.last + (PROGRESS_TOTAL - self.last) / 100, 2), round(self.last + 0.01, 2))
        self.last = value
        return value


def progress_sender(ctx: Context) -> Any:
    """``progress(stage, message, fraction)`` -> MCP progress notifications for this request, their
    values increasing (``ProgressScale``) and sent in the order the job made them."""
    state = server_state(ctx)
    scale = ProgressScale()
    in_order = anyio.Lock()  # each event reaches this loop as its own task

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        async with in_order:
            value = scale.next(stage, fraction)
            try:
                await ctx.report_progress(value, PROGRESS_TOTAL, f"{stage}: {message}" if message else stage)
            except Exception:  # a client that went away must not fail the job
                state.log.debug("progress notification dropped", exc_info=True)

    return progress


async def run_job(
    ctx: Context, job: dict[str, Any], *, wait_s: float | None = None, idempotency_key: str | None = None,
    thread_id: str | None = None,
) -> dict[str, Any]:
    """Run ``job`` as a background job; the envelope when it finishes within the wait, else a handle.
    With ``thread_id`` its turns join that conversation when it completes.

    Raises:
        ToolFailed: the job finished FAILED (``raise_for_failure``).
        InputError: ``idempotency_key`` already names another request.
    """
    from mcp_server.jobs import IdempotencyConflict

    state = server_state(ctx)
    try:
        result = await state.jobs.submit(
            job, owner_of(ctx), progress=progress_sender(ctx), wait_s=wait_s, idempotency_key=idempotency_key,
            thread_id=thread_id,
        )
    except IdempotencyConflict as exc:  # its text starts with the field: "idempotency_key 'k' already names..."
        conflict = InputError(str(exc))
        conflict.field = "idempotency_key"
        raise conflict from None
    if result.get("status") == "FAILED" and result.get("job_id") is None:  # refused before it ran
        raise call_failed(result.get("error") or {})
    if result.get("status") != "IN_PROGRESS":
        raise_for_failure(result)
    return result
