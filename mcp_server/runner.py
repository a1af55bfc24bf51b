"""How a tool call reaches the executor: the runtime's runner, with MCP progress."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context


async def run_job(ctx: Context, job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` on the configured runner, forwarding progress as MCP notifications."""
    from mcp_server.tools import raise_for_failure

    state = ctx.request_context.lifespan_context
    step = 0

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        nonlocal step
        step += 1
        try:
            await ctx.report_progress(step, None, f"{stage}: {message}")
        except Exception:  # a client that went away must not fail the job
            state.log.debug("progress notification dropped", exc_info=True)

    result = await state.runner().run(job, progress)
    raise_for_failure(result)
    return result
