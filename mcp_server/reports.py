"""A research report as a client reads it (the research tool's, or a delegate kind routed to
research): its sources and citations, each naming the resource that opens it
(``swarm://jobs/{id}/sources/{n}``), the report's text with what the citation check found, and a
``resource_link`` per source the report cites. ``results`` builds the tool outputs with these.
"""

from __future__ import annotations

from typing import Any

from mcp_types import ContentBlock, ResourceLink, TextContent

from mcp_server.outputs import ResearchOutput
from mcp_server.texts import remote_line, totals_line, trace_line


def source_uri(job_id: str, source_id: Any) -> str:
    """The resource that opens one source of a research job: its cited passages with their offsets."""
    return f"swarm://jobs/{job_id}/sources/{source_id}"


def _cited_source(citation: dict[str, Any]) -> Any:
    """The source whose passage backs ``citation`` (else the first it cites), or None."""
    passage = citation.get("passage") or {}
    if passage.get("source_id") is not None:
        return passage["source_id"]
    return (citation.get("source_ids") or [None])[0]


def linked_sources(job_id: str, output: dict[str, Any]) -> list[dict[str, Any]]:
    """A research report's sources (the research tool's, or a delegate kind routed to research),
    each naming the resource that opens it."""
    return [{**s, "resource": source_uri(job_id, s["id"])} if "id" in s else s for s in output.get("sources", [])]


def linked_citations(job_id: str, output: dict[str, Any]) -> list[dict[str, Any]]:
    """A research report's citations, each naming the resource of the source it rests on."""
    return [{**c, "resource": source_uri(job_id, sid)} if (sid := _cited_source(c)) is not None else c
            for c in output.get("citations", [])]


def research_blocks(output: ResearchOutput) -> list[ContentBlock]:
    """The report (its own Sources list included), then one ``resource_link`` per source the report
    cites: a source found and not cited has no passage to show (8 links for one citation, before);
    the structured result still lists every source."""
    return [TextContent(text=f"{output.report.rstrip()}\n\n---\n{_check_summary(output)}"),
            *source_links(output.sources, output.citations)]


def source_links(sources: list[dict[str, Any]], citations: list[dict[str, Any]]) -> list[ContentBlock]:
    """One ``resource_link`` per source a report cites (a research answer, or a delegate kind
    routed to research)."""
    cited = {n for citation in citations for n in citation.get("source_ids") or []}
    return [
        ResourceLink(uri=s["resource"], name=f"source-{s['id']}", title=f"[{s['id']}] {s.get('title') or s.get('url')}",
                     description="the passages cited from this source, quoted with their offsets",
                     mime_type="text/markdown")
        for s in sources if s.get("resource") and s.get("id") in cited
    ]


def _check_summary(output: ResearchOutput) -> str:
    """What the citation check found, and where the rest of the result is."""
    lines = []
    if output.support is not None:
        lines.append(f"Checked ({output.mode or 'report'}): {output.support:.0%} of factual sentences backed by "
                     "the passage they cite.")
    lines.extend(f"Warning: {w}" for w in output.warnings)  # they count what the check took out
    removed = {"unsupported_sentences": output.unsupported_sentences, "removed_citations": output.removed_citations,
               "repeats_removed": output.repeats_removed}
    if taken := [field for field, items in removed.items() if items]:  # where, not how many again
        lines.append(f"What the check took out, each with its reason: {', '.join(taken)} in the structured result.")
    lines.extend(remote_line(output.trace))
    if output.trace:
        lines.append(trace_line(output.trace))
    lines.append(f"totals: {totals_line(output.totals, output.trace)}")
    where = f"job_id: {output.job_id}" + (f"; thread_id: {output.thread_id}" if output.thread_id else "")
    if output.report_uri:
        where += f"; report in pages: {output.report_uri}"
    links = "each source's cited passages: the links below; " if output.citations else ""
    lines.append(f"{where}; {links}the full trace and citations with offsets: the structured result.")
    return "\n".join(lines)
