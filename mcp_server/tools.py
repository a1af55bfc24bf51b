"""MCP tools: thin wrappers that turn tool arguments into a job for the runner.

No business logic here: validation of limits, routing and execution happen in the
dispatcher and the graphs, the same code the RunPod worker runs.
"""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_server.runner import run_job


class TraceStepOut(BaseModel):
    """One provider attempt, skip or graph node."""

    step: str
    kind: str
    provider: str
    model: str | None = None
    attempt: int = 1
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    outcome: str
    error_class: str | None = None
    detail: str | None = None


class DelegateOutput(BaseModel):
    """The answer, the reviewer's verdict and the full execution trace."""

    job_id: str
    text: str = Field(description="the final answer")
    model: str | None = Field(default=None, description="model that wrote the final answer")
    review: dict[str, Any] | None = Field(default=None, description="reviewer verdict, or null when the route has none")
    revisions: int = 0
    trace: list[TraceStepOut]
    totals: dict[str, Any]


DELEGATE_DESCRIPTION = (
    "Delegate a task to the swarm. The route for `kind` (config routing.delegation) picks the "
    "primary model family and an optional reviewer from another family; the primary drafts, "
    "the reviewer returns a verdict, and the draft is revised within a bounded loop. kinds: "
    "bulk_content (cheap drafting, reviewed), critical (strongest model, no reviewer), research "
    "(search-backed, when available). tier: fast | balanced | premium. Returns the final text, "
    "the review and a trace of every provider call (model, latency, tokens, cost, outcome)."
)


def register(server: Any) -> None:
    """Add the tools to ``server``."""

    @server.tool(
        name="delegate",
        title="Delegate a task",
        description=DELEGATE_DESCRIPTION,
        annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=False, openWorldHint=True),
    )
    async def delegate(
        task: str,
        ctx: Context,
        kind: str = "bulk_content",
        tier: Literal["fast", "balanced", "premium"] | None = None,
    ) -> DelegateOutput:
        job = {"project": "swarm", "action": "delegate", "input": _drop_none(task=task, kind=kind, tier=tier)}
        result = await run_job(ctx, job)
        output = result["output"] or {}
        return DelegateOutput(
            job_id=result["job_id"],
            text=output.get("text", ""),
            model=output.get("model"),
            review=output.get("review"),
            revisions=output.get("revisions", 0),
            trace=[TraceStepOut.model_validate(s, strict=False) for s in _public_steps(result["trace"])],
            totals=result["totals"],
        )


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _public_steps(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in step.items() if k in TraceStepOut.model_fields} for step in trace]


def raise_for_failure(result: dict[str, Any]) -> None:
    """Turn a FAILED envelope into a tool error a model can act on (no traceback, no secret)."""
    if result.get("status") == "COMPLETED":
        return
    error = result.get("error") or {}
    attempts = [s for s in result.get("trace", []) if s.get("kind") != "node"]
    lines = [f"{error.get('type', 'Error')}: {error.get('message', 'the job failed')}"]
    if attempts and error.get("type") == "AllProvidersFailed":
        lines.append("attempts: " + "; ".join(
            f"{s.get('model') or s.get('provider')} {s.get('outcome')} {s.get('error_class') or ''}".strip()
            for s in attempts
        ))
    raise ToolError("\n".join(lines))
