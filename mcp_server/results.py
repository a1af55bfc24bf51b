"""Envelopes -> tool results: a finished or running job's envelope as the tool's output model,
and a failed one as a tool error a model can act on.

``job_result`` maps a finished envelope with the same functions (``tool_output``), so a job
collected later reads exactly like the tool's own answer. An error found before or without a job
(input the door refuses, an unknown job id, a crash) is told as a failed job with no job
(``call_failed``): whichever layer found it, a client reads one shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, TextContent

from core.errors import SwarmError
from core.redact import redact
from graphs.actions import ACTIONS
from graphs.image.inputs import INLINE_MAX_BYTES
from mcp_server.outputs import (
    ConsensusOutput,
    DelegateOutput,
    ImageOutput,
    JobOutcome,
    ResearchOutput,
    TraceStepOut,
)
from mcp_server.previews import StoredImage
from mcp_server.reports import linked_citations, linked_sources, research_blocks
from mcp_server.texts import ELLIPSIS, clip, handle_text, result_text, totals_line, trace_line

#: the fields every action result starts with; ``job_result`` has them at its own top level
HEAD_FIELDS = frozenset(JobOutcome.model_fields)
#: the project whose every action is an image tool (``ImageOutput``)
IMAGE_PROJECT = "image_tools"


def public_steps(trace: list[dict[str, Any]]) -> list[TraceStepOut]:
    return [
        TraceStepOut.model_validate({k: v for k, v in step.items() if k in TraceStepOut.model_fields}, strict=False)
        for step in trace
    ]


def _head(result: dict[str, Any]) -> dict[str, Any]:
    """job_id, status and the public trace; while running, the message and progress too (and the
    steps so far, where the handle has them)."""
    head = {"job_id": result["job_id"], "trace": public_steps(result.get("trace") or [])}
    if result.get("status") == "IN_PROGRESS":
        return {**head, "status": "IN_PROGRESS", "message": result.get("message"), "progress": result.get("progress")}
    return {**head, "status": "COMPLETED", "totals": result.get("totals") or {}}


def delegate_output(result: dict[str, Any], thread_id: str | None = None) -> DelegateOutput:
    output = result.get("output") or {}
    return DelegateOutput(
        **_head(result),
        text=output.get("text", ""),
        model=output.get("model"),
        review=output.get("review"),
        revisions=output.get("revisions", 0),
        warnings=[str(w) for w in output.get("warnings", [])],
        thread_id=output.get("thread_id") or thread_id,
        sources=linked_sources(result["job_id"], output),
        citations=linked_citations(result["job_id"], output),
    )


def consensus_output(result: dict[str, Any]) -> ConsensusOutput:
    output = result.get("output") or {}
    return ConsensusOutput(
        **_head(result),
        synthesis=output.get("synthesis", ""),
        synthesizer=output.get("synthesizer"),
        synthesis_status=output.get("synthesis_status"),
        synthesis_error=output.get("synthesis_error"),
        warnings=[str(w) for w in output.get("warnings", [])],
        positions=output.get("positions", []),
        failed=output.get("failed", []),
    )


def research_output(result: dict[str, Any], thread_id: str | None = None) -> ResearchOutput:
    output = result.get("output") or {}
    done = result.get("status") != "IN_PROGRESS"
    job_id = result["job_id"]
    return ResearchOutput(
        **_head(result),
        report=output.get("report", ""),
        report_uri=f"swarm://jobs/{job_id}/report" if done else None,
        mode=output.get("mode"),
        written_by=output.get("written_by"),
        support=output.get("support"),
        grounding=output.get("grounding"),
        sources=linked_sources(job_id, output),
        citations=linked_citations(job_id, output),
        unsupported_sentences=output.get("unsupported_sentences", []),
        removed_citations=output.get("removed_citations", []),
        repeats_removed=output.get("repeats_removed", []),
        warnings=[str(w) for w in output.get("warnings", [])],
        review=output.get("review"),
        queries=[str(q) for q in output.get("queries", [])],
        thread_id=output.get("thread_id") or thread_id,
    )


def research_result(output: ResearchOutput) -> CallToolResult:
    """A research answer: the structured output (all of it), shown as the report in Markdown, a
    line on what the check found, and a link per source to the passages it was cited for. The
    JSON (trace, citations with offsets) is for programs: as text it was ten times the report."""
    structured = output.model_dump(mode="json")
    if output.status != "COMPLETED":
        text = handle_text(output.job_id, output.message, output.progress, output.trace, output.thread_id)
        return CallToolResult(content=[TextContent(text=text)], structured_content=structured)
    return CallToolResult(content=research_blocks(output), structured_content=structured)


def _polled_image(result: dict[str, Any], inline_limit: int) -> ImageOutput:
    # the stored output holds base64 only when the call asked for it (return_base64)
    return image_output(result, return_base64=True, inline_limit=inline_limit)


#: (project, action) -> the tool output of its finished envelope (every image action: ``ImageOutput``)
_TOOL_OUTPUTS: dict[tuple[str, str], Callable[[dict[str, Any], int], JobOutcome]] = {
    ("swarm", "delegate"): lambda result, _limit: delegate_output(result),
    ("swarm", "research"): lambda result, _limit: research_output(result),
    ("swarm", "consensus"): lambda result, _limit: consensus_output(result),
    **{(IMAGE_PROJECT, action): _polled_image for action in ACTIONS[IMAGE_PROJECT]},
}


def tool_output(result: dict[str, Any], inline_limit: int, *, local_urls: bool = True) -> JobOutcome | None:
    """What the action's tool returned (or would have) for a COMPLETED envelope; None for any
    other status (a cancelled or failed job's partial output is no tool answer). ``local_urls``:
    ``file://`` URLs kept (``without_local_urls``: not for a client over HTTP)."""
    make = _TOOL_OUTPUTS.get((str(result.get("project")), str(result.get("action"))))
    if result.get("status") != "COMPLETED" or make is None:
        return None
    output = make(result, inline_limit)
    return output if local_urls else without_local_urls(output)


def tool_output_fields(output: JobOutcome) -> dict[str, Any]:
    """``output`` without the head ``job_result`` already has (job_id, status, trace, ...)."""
    return output.model_dump(mode="json", exclude=set(HEAD_FIELDS))


def image_output(result: dict[str, Any], *, return_base64: bool, inline_limit: int) -> ImageOutput:
    """The stored result's key and URL; base64 only when asked and within mcp.max_inline_image_bytes."""
    output = dict(result.get("output") or {})
    key = output.pop("image_key", None)
    url = output.pop("url", None)
    inline = inline_within(output, output.pop("image_b64", None), inline_limit)
    results = output.pop("results", None)
    if results is not None:
        results = [_batch_entry(entry, return_base64, inline_limit) for entry in results]
    return ImageOutput(**_head(result), key=key, url=url, image_base64=inline if return_base64 else None,
                       details=output, results=results)


def without_local_urls(output: JobOutcome) -> JobOutcome:
    """``output`` for a client over HTTP: an image's ``file://`` URL names a file on the server's
    disk, which that client cannot open, and shows where the server keeps its data (the key and
    ``swarm://artifacts/{key}`` reach it)."""
    if not isinstance(output, ImageOutput):
        return output

    def local(url: Any) -> bool:
        return isinstance(url, str) and url.lower().startswith("file:")

    results = None if output.results is None else [
        {k: v for k, v in entry.items() if not (k == "url" and local(v))} for entry in output.results]
    return output.model_copy(update={"url": None if local(output.url) else output.url, "results": results})


def stored_images(output: ImageOutput) -> list[StoredImage]:
    """The images a finished result holds: its one result, or each good entry of a batch."""
    if output.status != "COMPLETED":
        return []
    if output.results is not None:
        return [StoredImage.from_entry(entry, entry["key"], f"images[{entry.get('index', n)}]")
                for n, entry in enumerate(output.results) if entry.get("key")]
    return [StoredImage.from_entry(output.details, output.key, "result")] if output.key else []


def image_result(output: ImageOutput, image_blocks: list[ContentBlock]) -> CallToolResult:
    """The structured output, the result in words (``texts.result_text``), then per image its line,
    preview and link."""
    return text_result(output, image_blocks)


def text_result(output: JobOutcome, blocks: Sequence[ContentBlock] = ()) -> CallToolResult:
    """A delegate, consensus or image answer: the structured output (every field, the full trace)
    and the result in words (``texts.result_text``), then ``blocks``."""
    return CallToolResult(content=[TextContent(text=result_text(output)), *blocks],
                          structured_content=output.model_dump(mode="json"))


def inline_within(entry: dict[str, Any], inline: str | None, inline_limit: int) -> str | None:
    """``inline`` when its bytes fit ``inline_limit`` (``mcp.max_inline_image_bytes``), else None,
    with ``entry["inline_omitted"]`` saying why in the door's words. The job caps its own base64
    (``INLINE_MAX_BYTES``, 4 MiB) and says so with a number a client cannot set ("inline limit
    4194304", "read image_key"), beside a preview line naming mcp.max_inline_image_bytes."""
    # the bytes the base64 holds: its padding is no byte (1,549 bytes read as 1,550, over a limit of 1,549)
    if inline is not None and len(inline) * 3 // 4 - inline[-2:].count("=") > inline_limit:
        entry["inline_omitted"] = _over_inline_limit(inline_limit)
        return None
    if inline is None and entry.get("inline_omitted"):  # the job left it out, over its own cap
        size = entry.get("bytes")
        entry["inline_omitted"] = _over_inline_limit(inline_limit) if not isinstance(size, int) or size > inline_limit \
            else f"a job returns at most {INLINE_MAX_BYTES:,} bytes as base64 (a batch: in all); download it from url"
    return inline


def _over_inline_limit(inline_limit: int) -> str:
    return f"result is over mcp.max_inline_image_bytes={inline_limit}; download it from url"


def _batch_entry(entry: dict[str, Any], return_base64: bool, inline_limit: int) -> dict[str, Any]:
    """One image of a batch result, with the same key/url/image_base64 names as a single result."""
    out = {k: v for k, v in entry.items() if k not in ("image_key", "image_b64")}
    if "image_key" in entry:
        out["key"] = entry["image_key"]
    inline = inline_within(out, entry.get("image_b64"), inline_limit)
    if inline is not None and return_base64:
        out["image_base64"] = inline
    return out


#: characters of a failed job's partial answer quoted in its error (the rest: ``job_result``)
PARTIAL_TEXT_CHARS = 1500
#: the output fields a reader reads first, in order: a draft, a report, a synthesis
_READABLE_FIELDS = ("text", "report", "synthesis")
#: what marks a partial output without being any of what it made
_PARTIAL_MARKS = frozenset({"partial", "stopped_at"})


class ToolFailed(ToolError):
    """A failed tool call as a tool error: its text (``str``) is what a model reads; ``result`` is the
    same failure as an ``isError`` result whose structured content is the whole job (error, partial
    output, public trace, totals), or the error alone when no job was made (``call_failed``). The SDK
    sends a ``ToolError``'s text after "Error executing tool NAME: "; the server sends ``result``
    instead (``SwarmServer.call_tool``): neither the SDK nor its client checks an ``isError`` result
    against the output schema."""

    def __init__(self, text: str, result: CallToolResult) -> None:
        super().__init__(text)
        self.result = result


def raise_for_failure(result: dict[str, Any]) -> None:
    """Turn a FAILED envelope into a tool error a model can act on (no traceback, no secret): the
    error, every attempt, the partial answer (its start), the trace and totals, and the job to
    collect the rest from.

    Raises:
        ToolFailed: the envelope is neither COMPLETED nor IN_PROGRESS.
    """
    if result.get("status") in ("COMPLETED", "IN_PROGRESS"):
        return
    raise _failed(result)


#: what a client reads of an exception nobody raised on purpose: nothing of it (its text may hold a
#: secret, its traceback the server's insides); the server log has it, redacted
INTERNAL_ERROR = {"type": "InternalError", "message": "the server failed on this call; its log has the details"}


def public_error(exc: BaseException) -> dict[str, str]:
    """``{type, message}`` of ``exc`` as a job's envelope carries it: a ``SwarmError`` by its class
    and redacted text, anything else as ``INTERNAL_ERROR``."""
    return exc.to_dict() if isinstance(exc, SwarmError) else dict(INTERNAL_ERROR)


def call_failed(error: dict[str, str]) -> ToolFailed:
    """An error found before or without a job as the failure a job's error is: ``isError``, the text
    "Type: field: message" (no trace, totals or job line: nothing ran), and the structured content
    of a failed job whose ``job_id`` is null, naming the ``field`` (or config ``key``) at fault where
    the error does."""
    said = {"type": error["type"], "message": redact(error["message"]),
            **{name: redact(str(error[name])) for name in ("field", "key") if error.get(name)}}
    return _failed({"job_id": None, "status": "FAILED", "error": said})


def _failed(result: dict[str, Any]) -> ToolFailed:
    text = failure_text(result)
    structured = failure_structured(result)
    return ToolFailed(text, CallToolResult(content=[TextContent(text=text)], structured_content=structured, is_error=True))


def failure_structured(result: dict[str, Any]) -> dict[str, Any]:
    """A failed job as structured content: what ``job_result`` holds of it, the trace made public."""
    steps = public_steps(result.get("trace") or [])
    return {"job_id": result.get("job_id"), "status": result.get("status") or "FAILED",
            "error": result.get("error") or {}, "output": result.get("output"),
            "trace": [s.model_dump(mode="json") for s in steps], "totals": result.get("totals") or {}}


def failure_text(result: dict[str, Any], *, collected: bool = False) -> str:
    """The error, the partial answer, the trace (each attempt: who, outcome, error class, latency)
    and totals, then where the rest is: ``job_result``, or (``collected``: this is job_result's
    answer) its structured ``output``. An ``AllProvidersFailed`` message lists its attempts itself
    and the trace line lists them again: an "attempts:" line between them said each a third time."""
    error = result.get("error") or {}
    steps = public_steps(result.get("trace") or [])
    lines = [f"{error.get('type', 'Error')}: {error.get('message', 'the job failed')}"]
    output = result.get("output")
    partial = _partial(output)
    if partial is not None:
        stopped = f" (stopped at {partial['stopped_at']})" if partial.get("stopped_at") else ""
        readable = _readable(partial)
        # nothing readable (a research stopped before its report): the heading alone read as an empty answer
        lines.append(f"partial result{stopped}:" if readable else
                     f"partial result{stopped}: nothing to show yet; what was kept is in the structured output")
        if readable:
            lines.append(readable)
    if steps:
        lines.append(trace_line(steps))
    if result.get("job_id") is None:  # refused before any job: nothing ran, nothing to collect
        return "\n".join(lines)
    lines.append(f"totals: {totals_line(result.get('totals') or {}, steps)}")
    if partial is not None:
        lines.append("the whole partial result: this answer's structured output" if collected
                     else f"partial result available: job_result({result.get('job_id')})")
    lines.append(f"job_id: {result.get('job_id')}")
    return "\n".join(lines)


def _partial(output: Any) -> dict[str, Any] | None:
    """A failed job's output when it marks itself partial and holds something besides the mark."""
    if not isinstance(output, dict) or not output.get("partial"):
        return None
    made = any(value not in (None, "", [], {}, 0) for key, value in output.items() if key not in _PARTIAL_MARKS)
    return output if made else None


def _readable(output: dict[str, Any]) -> str:
    """The start of the partial answer a model reads (a draft, a report, a synthesis or the
    positions), or the stored image of an image job's finished steps."""
    text = next((str(output[f]) for f in _READABLE_FIELDS if output.get(f)), "")
    if not text and output.get("positions"):
        text = "\n".join(f"{p.get('model')}: {p.get('text', '')}" for p in output["positions"] if isinstance(p, dict))
    if not text and output.get("image_key"):
        text = f"image after {' then '.join(output.get('steps_done') or [])} stored as key {output['image_key']}"
    if len(text) > PARTIAL_TEXT_CHARS:
        kept = clip(text, PARTIAL_TEXT_CHARS).removesuffix(ELLIPSIS)  # at a word end
        text = f"{kept} [... {len(text) - len(kept)} more characters]"
    return text
