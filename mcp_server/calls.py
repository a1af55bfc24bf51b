"""How a tool call reaches the executor: a background job on the runtime's runner.

A call waits up to the wait budget (``runner.wait_budget_s``); a job that takes longer comes
back as a handle the client polls with ``job_status`` / ``job_result``. Progress reaches the
caller as MCP progress notifications while it waits, and the job store keeps the last one
for whoever polls later.
"""

from __future__ import annotations

from typing import Any, cast

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from mcp_server.results import raise_for_failure
from mcp_server.state import ServerState

LOCAL_OWNER = "local"


def server_state(ctx: Context) -> ServerState:
    """The server's lifespan state: runtime, jobs, log, subscriptions."""
    # a tool's bare ``Context`` types the lifespan state as a dict; the lifespan yields a ServerState
    return cast(ServerState, ctx.request_context.lifespan_context)


def owner_of(ctx: Context) -> str:
    """Who the caller is: the bearer token's identity on authenticated HTTP, else ``local``."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None) or {}
    token = getattr(scope.get("user"), "access_token", None)  # set only when auth is configured
    if token is None:
        token = get_access_token()
    return f"token:{token.client_id}" if token is not None else LOCAL_OWNER


def progress_sender(ctx: Context) -> Any:
    """``progress(stage, message, fraction)`` -> MCP progress notifications for this request."""
    state = server_state(ctx)
    step = 0

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        nonlocal step
        step += 1
        value, total = (round(fraction * 100, 1), 100.0) if fraction is not None else (float(step), None)
        try:
            await ctx.report_progress(value, total, f"{stage}: {message}" if message else stage)
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
        ToolError: the job finished FAILED (message from ``raise_for_failure``).
    """
    from mcp_server.jobs import IdempotencyConflict

    state = server_state(ctx)
    try:
        result = await state.jobs.submit(
            job, owner_of(ctx), progress=progress_sender(ctx), wait_s=wait_s, idempotency_key=idempotency_key,
            thread_id=thread_id,
        )
    except IdempotencyConflict as exc:
        raise ToolError(str(exc)) from None
    if result.get("status") != "IN_PROGRESS":
        raise_for_failure(result)
    return result
