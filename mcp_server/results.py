"""Envelopes -> tool results: a finished or running job's envelope as the tool's output model,
and a failed one as a tool error a model can act on.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, TextContent

from mcp_server.outputs import ConsensusOutput, DelegateOutput, ImageOutput, ResearchOutput, TraceStepOut
from mcp_server.previews import StoredImage


def public_steps(trace: list[dict[str, Any]]) -> list[TraceStepOut]:
    return [
        TraceStepOut.model_validate({k: v for k, v in step.items() if k in TraceStepOut.model_fields}, strict=False)
        for step in trace
    ]


def _head(result: dict[str, Any]) -> dict[str, Any]:
    if result.get("status") == "IN_PROGRESS":
        return {"job_id": result["job_id"], "status": "IN_PROGRESS", "message": result.get("message"),
                "progress": result.get("progress")}
    return {"job_id": result["job_id"], "status": "COMPLETED", "trace": public_steps(result.get("trace") or []),
            "totals": result.get("totals") or {}}


def delegate_output(result: dict[str, Any], thread_id: str | None = None) -> DelegateOutput:
    output = result.get("output") or {}
    return DelegateOutput(
        **_head(result),
        text=output.get("text", ""),
        model=output.get("model"),
        review=output.get("review"),
        revisions=output.get("revisions", 0),
        thread_id=output.get("thread_id") or thread_id,
    )


def consensus_output(result: dict[str, Any]) -> ConsensusOutput:
    output = result.get("output") or {}
    return ConsensusOutput(
        **_head(result),
        synthesis=output.get("synthesis", ""),
        synthesizer=output.get("synthesizer"),
        positions=output.get("positions", []),
        failed=output.get("failed", []),
    )


def source_uri(job_id: str, source_id: Any) -> str:
    """The resource that opens one source of a research job: its cited passages with their offsets."""
    return f"swarm://jobs/{job_id}/sources/{source_id}"


def _cited_source(citation: dict[str, Any]) -> Any:
    """The source whose passage backs ``citation`` (else the first it cites), or None."""
    passage = citation.get("passage") or {}
    if passage.get("source_id") is not None:
        return passage["source_id"]
    return (citation.get("source_ids") or [None])[0]


def research_output(result: dict[str, Any], thread_id: str | None = None) -> ResearchOutput:
    output = result.get("output") or {}
    done = result.get("status") != "IN_PROGRESS"
    job_id = result["job_id"]
    sources = [{**s, "resource": source_uri(job_id, s["id"])} if "id" in s else s for s in output.get("sources", [])]
    citations = [{**c, "resource": source_uri(job_id, sid)} if (sid := _cited_source(c)) is not None else c
                 for c in output.get("citations", [])]
    return ResearchOutput(
        **_head(result),
        report=output.get("report", ""),
        report_uri=f"swarm://jobs/{job_id}/report" if done else None,
        mode=output.get("mode"),
        support=output.get("support"),
        grounding=output.get("grounding"),
        sources=sources,
        citations=citations,
        unsupported_sentences=output.get("unsupported_sentences", []),
        removed_citations=output.get("removed_citations", []),
        repeats_removed=output.get("repeats_removed", []),
        warnings=[str(w) for w in output.get("warnings", [])],
        review=output.get("review"),
        queries=[str(q) for q in output.get("queries", [])],
        thread_id=output.get("thread_id") or thread_id,
    )


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


def stored_images(output: ImageOutput) -> list[StoredImage]:
    """The images a finished result holds: its one result, or each good entry of a batch."""
    if output.status != "COMPLETED":
        return []
    if output.results is not None:
        return [StoredImage.from_entry(entry, entry["key"], f"images[{entry.get('index', n)}]")
                for n, entry in enumerate(output.results) if entry.get("key")]
    return [StoredImage.from_entry(output.details, output.key, "result")] if output.key else []


def image_result(output: ImageOutput, image_blocks: list[ContentBlock]) -> CallToolResult:
    """The structured output, its JSON as text (for clients without structured content), then per
    image its preview and link."""
    structured = output.model_dump(mode="json")
    return CallToolResult(content=[TextContent(text=json.dumps(structured, indent=2)), *image_blocks],
                          structured_content=structured)


def inline_within(entry: dict[str, Any], inline: str | None, inline_limit: int) -> str | None:
    if inline is not None and len(inline) * 3 // 4 > inline_limit:
        entry["inline_omitted"] = f"result is over mcp.max_inline_image_bytes={inline_limit}; download it from url"
        return None
    return inline


def _batch_entry(entry: dict[str, Any], return_base64: bool, inline_limit: int) -> dict[str, Any]:
    """One image of a batch result, with the same key/url/image_base64 names as a single result."""
    out = {k: v for k, v in entry.items() if k not in ("image_key", "image_b64")}
    if "image_key" in entry:
        out["key"] = entry["image_key"]
    inline = inline_within(out, entry.get("image_b64"), inline_limit)
    if inline is not None and return_base64:
        out["image_base64"] = inline
    return out


def raise_for_failure(result: dict[str, Any]) -> None:
    """Turn a FAILED envelope into a tool error a model can act on (no traceback, no secret)."""
    if result.get("status") in ("COMPLETED", "IN_PROGRESS"):
        return
    error = result.get("error") or {}
    attempts = [s for s in result.get("trace", []) if s.get("kind") != "node"]
    lines = [f"{error.get('type', 'Error')}: {error.get('message', 'the job failed')}"]
    if attempts and error.get("type") == "AllProvidersFailed":
        lines.append("attempts: " + "; ".join(
            f"{s.get('model') or s.get('provider')} {s.get('outcome')} {s.get('error_class') or ''}".strip()
            for s in attempts
        ))
    lines.append(f"job_id: {result.get('job_id')}")
    raise ToolError("\n".join(lines))
