"""Tools that finish a long job's story: status, result, cancel, list.

A job id that does not exist and one that belongs to another client get the same answer,
so ids cannot be probed. Errors are raised (``InputError``...) and answered by the server in the
shape of a failed job's (``SwarmServer.call_tool``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, WithJsonSchema

from core.errors import InputError
from core.rules import JOB_ID_PATTERN, MAX_JOB_ID_CHARS
from mcp_server.calls import over_http, owner_of, progress_sender, server_state
from mcp_server.outputs import DelegateOutput, ImageOutput, ResearchOutput
from mcp_server.previews import image_blocks
from mcp_server.reports import research_blocks, source_links
from mcp_server.results import (
    call_failed,
    failure_text,
    public_steps,
    stored_images,
    tool_output,
    tool_output_fields,
)
from mcp_server.texts import handle_text, job_line, jobs_text, result_text

JobId = Annotated[str, Field(max_length=MAX_JOB_ID_CHARS, pattern=JOB_ID_PATTERN)]  # the pattern's + implies minLength 1
MAX_RESULT_WAIT_S = 50.0  # under Claude Desktop's ~60 s tool timeout


class JobStatus(BaseModel):
    """Where one job stands (no output: use job_result for that)."""

    job_id: str
    project: str
    action: str
    status: Literal["IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]
    progress: dict[str, Any] | None = Field(default=None, description="last progress: stage, message, fraction")
    error: dict[str, Any] | None = None
    created_at: float
    updated_at: float
    elapsed_ms: float | None = None
    running_here: bool = Field(description="false for a job that is waiting to be resumed")
    runs_in: str | None = None  # the pid of another live swarm-mcp process running it


class JobList(BaseModel):
    #: advertised as a list of objects (job_status's schema names their fields); validated as JobStatus
    jobs: Annotated[list[JobStatus], WithJsonSchema({"type": "array", "items": {"type": "object"}})]


class JobResult(BaseModel):
    """A finished job's full envelope, or the job's status while it still runs."""

    job_id: str
    status: Literal["IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]
    project: str | None = None
    action: str | None = None
    output: dict[str, Any] | None = Field(
        default=None, description="COMPLETED: the action tool's own result fields; else what the job had made")
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    message: str | None = None
    trace: Annotated[list[dict[str, Any]], WithJsonSchema({"type": "array"})] = Field(default_factory=list)
    totals: dict[str, Any] = Field(default_factory=dict)
    elapsed_ms: float | None = None


def unknown_job(job_id: str, retention_days: float) -> InputError:
    """The one answer for a job id the caller cannot see: none has it, another client's job has it
    (the same words, so ids cannot be probed), or the job finished before ``retention_days`` and the
    server dropped it. ``field`` is ``job_id``; the id is shown cut at the length a job id may have."""
    return InputError(f"{job_id[:MAX_JOB_ID_CHARS]!r} is not a job of yours on this server (a job that finished over"
                      f" {retention_days:g} days ago is dropped: checkpointer.retention_days); list_jobs shows yours",
                      field="job_id")


def _unknown(ctx: Context, job_id: str) -> InputError:
    return unknown_job(job_id, server_state(ctx).runtime.config.checkpointer.retention_days)


def register(server: Any) -> None:
    """Add job_status, job_result, job_cancel and list_jobs (always on)."""
    # idempotentHint means something only for tools that are not read-only (MCP spec): left out
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(name="job_status", title="Job status", annotations=read_only,
                 description="A job's status and last progress (cheap; no output).")
    async def job_status(job_id: JobId, ctx: Context) -> Annotated[CallToolResult, JobStatus]:
        try:
            return _status_result(JobStatus(**server_state(ctx).jobs.status(job_id, owner_of(ctx))))
        except KeyError:
            raise _unknown(ctx, job_id) from None

    @server.tool(
        name="job_result", title="Job result", annotations=read_only,
        description=(
            "Waits up to wait_s for a job's full result (sending progress); status IN_PROGRESS: still "
            "running, call again."
        ),
    )
    async def job_result(
        job_id: JobId,
        ctx: Context,
        wait_s: Annotated[float, Field(ge=0, le=MAX_RESULT_WAIT_S)] = 30.0,  # the description says it
    ) -> Annotated[CallToolResult, JobResult]:
        state = server_state(ctx)
        try:
            result = await state.jobs.result(job_id, owner_of(ctx), wait_s=wait_s, progress=progress_sender(ctx))
        except KeyError:
            raise _unknown(ctx, job_id) from None
        return await _job_result(state, result, local_urls=not over_http(ctx))

    @server.tool(
        name="job_cancel", title="Cancel a job",
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False),
        description="Cancel a running job (on RunPod too); a finished one stays.",
    )
    async def job_cancel(job_id: JobId, ctx: Context) -> Annotated[CallToolResult, JobStatus]:
        from mcp_server.jobs import RunsElsewhere

        try:
            return _status_result(JobStatus(**await server_state(ctx).jobs.cancel(job_id, owner_of(ctx))))
        except KeyError:
            raise _unknown(ctx, job_id) from None
        except RunsElsewhere as exc:  # no SwarmError: told by its own name, as a job's error is
            raise call_failed({"type": type(exc).__name__, "message": str(exc)}) from None

    @server.tool(name="list_jobs", title="List jobs", annotations=read_only,
                 description="Your jobs, newest first (fields as job_status), optionally of one status.")
    async def list_jobs(
        ctx: Context,
        status: Literal["IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"] | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> Annotated[CallToolResult, JobList]:
        rows = server_state(ctx).jobs.list(owner_of(ctx), status, limit)
        listed = JobList(jobs=[JobStatus(**r) for r in rows]).model_dump(mode="json")
        return CallToolResult(content=[TextContent(text=jobs_text(listed["jobs"]))], structured_content=listed)


def _status_result(status: JobStatus) -> CallToolResult:
    """A job's status as one line a model reads, all of it as structured content."""
    structured = status.model_dump(mode="json")
    return CallToolResult(content=[TextContent(text=job_line(structured))], structured_content=structured)


async def _job_result(state: Any, result: dict[str, Any], *, local_urls: bool = True) -> CallToolResult:
    """``result`` as job_result answers it: a finished job's output as its tool returned it (same
    fields, same content blocks: the research report as Markdown with a link per source, an
    image's preview and link, the answer in words), the public trace, and the rest of the envelope.
    A failed or cancelled job reads as its tool's own failure did (``isError``, the error, its
    attempts and partial answer); one still running, as the tool's handle."""
    runtime = state.runtime
    limit = runtime.config.mcp.max_inline_image_bytes
    own = tool_output(result, limit, local_urls=local_urls)  # over HTTP, no file:// URL
    shown = {k: v for k, v in result.items() if k in JobResult.model_fields}
    steps = public_steps(result.get("trace") or [])
    shown["trace"] = [step.model_dump(mode="json") for step in steps]
    if own is not None:
        shown["output"] = tool_output_fields(own)
    structured = JobResult.model_validate(shown).model_dump(mode="json")
    status = result.get("status")
    if status == "IN_PROGRESS":
        text = handle_text(str(result["job_id"]), result.get("message"), result.get("progress"), steps)
        return CallToolResult(content=[TextContent(text=text)], structured_content=structured)
    if status in ("FAILED", "CANCELLED"):  # what the tool itself answered; the whole job is structured
        return CallToolResult(content=[TextContent(text=failure_text(result, collected=True))],
                              structured_content=structured, is_error=True)
    if own is None:  # finished by an action no tool answers for: the envelope as it is
        return CallToolResult(content=[TextContent(text=json.dumps(structured, indent=2))], structured_content=structured)
    if isinstance(own, ResearchOutput):
        return CallToolResult(content=research_blocks(own), structured_content=structured)
    blocks: list[ContentBlock] = []
    if isinstance(own, ImageOutput):
        blocks = await image_blocks(stored_images(own), runtime.providers().storage, limit,
                                    runtime.config.providers.image.max_output_pixels)
    elif isinstance(own, DelegateOutput):  # a kind routed to research: its cited sources
        blocks = source_links(own.sources, own.citations)
    return CallToolResult(content=[TextContent(text=result_text(own)), *blocks], structured_content=structured)
