"""What the action tools return: the structured output models (their JSON schemas are the
tools' ``outputSchema``).

Every result starts with ``JobOutcome``: a finished job (trace and totals) or one still running
(a job_id to finish with ``job_result``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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


class JobOutcome(BaseModel):
    """Common head of every action result: a finished job, or one still running."""

    job_id: str
    status: Literal["COMPLETED", "IN_PROGRESS"] = Field(
        description="IN_PROGRESS: the job outlasted the wait budget; call job_result(job_id) to get the rest"
    )
    message: str | None = Field(default=None, description="what to do next when the job is still running")
    progress: dict[str, Any] | None = Field(default=None, description="last progress of a running job")
    trace: list[TraceStepOut] = Field(default_factory=list)
    totals: dict[str, Any] = Field(default_factory=dict)


class DelegateOutput(JobOutcome):
    """The answer, the reviewer's verdict and the full execution trace."""

    text: str = Field(default="", description="the final answer")
    model: str | None = Field(default=None, description="model that wrote the final answer")
    review: dict[str, Any] | None = Field(default=None, description="reviewer verdict, or null when the route has none")
    revisions: int = 0


class ResearchOutput(JobOutcome):
    """A cited Markdown report; every [n] resolves to an entry of ``sources``."""

    report: str = Field(default="", description="Markdown report with [n] citations")
    report_uri: str | None = Field(default=None, description="swarm://jobs/{id}/report: the report, paginated")
    sources: list[dict[str, Any]] = Field(default_factory=list)
    citations: list[dict[str, Any]] = Field(default_factory=list)
    review: dict[str, Any] | None = None
    queries: list[str] = Field(default_factory=list)


class ImageOutput(JobOutcome):
    """A processed image as a storage key and a URL (base64 only when asked and small enough)."""

    key: str | None = Field(default=None, description="storage key of the result; read it as swarm://artifacts/{key}")
    url: str | None = Field(
        default=None,
        description="where to download the result, when the store has a plain URL (presigned URLs are never returned)",
    )
    image_base64: str | None = Field(default=None, description="the result inline, only with return_base64=true")
    details: dict[str, Any] = Field(default_factory=dict, description="size, model, format and other facts")
    results: list[dict[str, Any]] | None = Field(
        default=None,
        description="with `images`: one entry per image, in order: {index, key, url, width, height, bytes,"
        " image_base64?} or {index, error: {type, message}}",
    )
