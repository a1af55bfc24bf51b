"""What the action tools return: the structured output models (their JSON schemas are the
tools' ``outputSchema``).

Every result starts with ``JobOutcome``: a finished job (trace and totals) or one still running
(a job_id to finish with ``job_result``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema, field_validator

#: decimals of a public trace step's ``latency_ms`` (0.1 ms: a reader needs no nanoseconds)
LATENCY_DECIMALS = 1


class TraceStepOut(BaseModel):
    """One provider attempt, skip or graph node, and when it was recorded (``at``, UTC ISO 8601)."""

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
    #: of a skipped step: why, as a program reads it (``providers.base.SkipKind``: stopped, key_unset,
    #: not_built, circuit_open, timed_out, over_budget; ``detail`` says it to a person)
    skip: str | None = None
    at: str | None = None

    @field_validator("latency_ms")
    @classmethod
    def _rounded(cls, value: float) -> float:
        return round(value, LATENCY_DECIMALS)


#: the trace as output schemas advertise it: a list (of TraceStepOut objects, which the tools' text
#: need not spell out in every tool; results are still validated against ``TraceStepOut``)
Trace = Annotated[list[TraceStepOut], WithJsonSchema({"type": "array"})]


class JobOutcome(BaseModel):
    """Common head of every action result: a finished job, or one still running."""

    job_id: str
    status: Literal["COMPLETED", "IN_PROGRESS"] = Field(description="IN_PROGRESS: call job_result(job_id)")
    message: str | None = Field(default=None, description="what to do next, while running")
    progress: dict[str, Any] | None = None
    trace: Trace = Field(default_factory=list)
    totals: dict[str, Any] = Field(default_factory=dict)


#: a list advertised as a bare array: every character of an output schema is paid in every
#: conversation's tools/list (tests/test_mcp_stdio.py), and the field names say what they hold
Objects = Annotated[list[dict[str, Any]], WithJsonSchema({"type": "array"})]
Strings = Annotated[list[str], WithJsonSchema({"type": "array"})]


class DelegateOutput(JobOutcome):
    """The answer, the reviewer's verdict, warnings (an answer its token limit cut, or one stopped
    where the model began repeating itself) and the full execution trace."""

    text: str = Field(default="", description="the final answer")
    model: str | None = Field(default=None, description="who wrote it")
    review: dict[str, Any] | None = Field(default=None, description="reviewer verdict (null: no reviewer)")
    revisions: int = 0
    warnings: Strings = Field(default_factory=list)
    thread_id: str | None = None
    # a kind routed to research (its report's [n]): each names its ``resource``, as ResearchOutput's
    sources: Objects = Field(default_factory=list)
    citations: Objects = Field(default_factory=list)


class ResearchOutput(JobOutcome):
    """A cited Markdown report; every [n] resolves to an entry of ``sources``, and each source
    and citation names its ``resource`` (``swarm://jobs/{job_id}/sources/{n}``: the passages it
    was cited for, their text and offsets)."""

    report: str = ""
    report_uri: str | None = Field(default=None, description="the report, paginated")
    mode: str | None = None
    written_by: str | None = None  # the model that wrote the report; null when it quotes the sources
    support: float | None = None
    grounding: dict[str, Any] | None = None
    sources: Objects = Field(default_factory=list)
    citations: Objects = Field(default_factory=list)
    unsupported_sentences: Objects = Field(default_factory=list)
    removed_citations: Objects = Field(default_factory=list)
    repeats_removed: Objects = Field(default_factory=list)
    warnings: Strings = Field(default_factory=list)
    review: dict[str, Any] | None = None
    queries: Strings = Field(default_factory=list)
    thread_id: str | None = None


class ConsensusOutput(JobOutcome):
    """Each model's position (who answered, stance, text, cost), the ones that failed, and the
    synthesis; when there is none, ``synthesis_status`` and ``synthesis_error`` say why (and a warning)."""

    synthesis: str = ""
    synthesizer: str | None = None
    synthesis_status: str | None = None
    synthesis_error: str | None = None
    warnings: Strings = Field(default_factory=list)
    positions: Objects = Field(default_factory=list)
    failed: Objects = Field(default_factory=list)


class ImageOutput(JobOutcome):
    """A processed image as a storage key and a URL (base64 only when asked and small enough)."""

    key: str | None = Field(default=None, description="storage key; resource swarm://artifacts/{key}")
    url: str | None = Field(default=None, description="plain download URL, when the store has one")
    image_base64: str | None = None
    details: dict[str, Any] = Field(default_factory=dict, description="width, height, format, bytes, model...")
    results: Objects | None = Field(
        default=None, description="with `images`, in order: {index, key, url, width, height, bytes, image_base64?}"
        " or {index, error}",
    )
