"""MCP resources: config, provider health, jobs, research reports and their sources, stored
images, graph diagrams.

Everything here reads; nothing starts a job. Job resources are scoped to the caller like the
job tools, and a finished job publishes ``resources/updated`` for ``swarm://jobs/{id}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from core.errors import InputError
from mcp_server.calls import check_key_owner, owner_of, server_state
from mcp_server.job_tools import unknown_job
from mcp_server.outputs import LATENCY_DECIMALS
from mcp_server.state import ServerState

#: the graphs swarm://graphs/{name} draws (compiled over fakes: no model, no network)
GRAPHS = ("delegation", "research", "consensus")


class NotFound(InputError):
    """What a resource URI names does not exist (no such job of yours, thread, artifact, graph, report
    or source): MCP's "resource not found", which ``SwarmServer.read_resource`` answers in the code of
    the client's protocol; other bad input in a URI (a page past the end) stays ``INVALID_PARAMS``.
    Its data says ``InputError``, as every refused input's does: the code tells the two apart."""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "type": InputError.__name__}


def not_found(error: InputError) -> NotFound:
    """``error`` (``unknown_job``'s, ``unknown_thread``'s) as a ``NotFound``: the same words and field."""
    said = str(error)
    return NotFound(said.removeprefix(f"{error.field}: ") if error.field else said, field=error.field)


def register(server: Any, current_state: Callable[[], ServerState]) -> None:
    """Add the static resources and the templates to ``server``.

    Static resources cannot take a ``Context`` in this SDK, so they reach the server state
    through ``current_state()`` (set by the lifespan).
    """
    _register_static(server, current_state)
    _register_templates(server)
    _register_source_templates(server)


def _register_static(server: Any, current_state: Callable[[], ServerState]) -> None:
    @server.resource("swarm://config", name="config", title="Effective config (redacted)", mime_type="application/json",
                     description="The config in force now, after ${ENV} expansion, with every secret masked.")
    def config_resource() -> str:
        from core.config import redacted_dump

        state = current_state()
        data = redacted_dump(state.runtime.config)
        if state.runtime.store.last_error:
            data["_last_reload_error"] = state.runtime.store.last_error
        return json.dumps(data, indent=2)

    @server.resource("swarm://providers", name="providers", title="Provider health and circuits",
                     mime_type="application/json",
                     description="Per LLM model: available now or why not (missing key, circuit open), circuit state.")
    async def providers_resource() -> str:
        return json.dumps(await provider_health(current_state()), indent=2)


async def _artifact(storage: Any, key: str) -> bytes:
    """An artifact's bytes, or a ResourceError: "not found" for a key that names nothing stored."""
    from core.errors import ProviderError
    from core.redact import redact

    try:
        return bytes(await storage.get(key))
    except (FileNotFoundError, KeyError):
        raise NotFound(f"no artifact {key!r} in storage: use the key an image tool returned", field="key") from None
    except InputError as exc:
        said = redact(str(exc)).removeprefix("key: ")
        if said.startswith("no object "):  # every store's words for a key naming nothing ("... (it is a folder)")
            raise NotFound(f"{said}: use the key an image tool returned", field="key") from None
        raise InputError(f"artifact {key!r} cannot be read: {said}", field="key") from None
    except ProviderError as exc:  # our own messages (storage down), redacted
        raise ResourceError(f"artifact {key!r} cannot be read: {redact(str(exc))}") from None


def _register_templates(server: Any) -> None:
    @server.resource("swarm://jobs/{job_id}", name="job", title="A job: status and trace", mime_type="application/json",
                     description="One of your jobs: status, last progress, error and the trace of every provider call.")
    async def job_resource(job_id: str, ctx: Context) -> str:
        return await _job_json(ctx, job_id)

    @server.resource("swarm://jobs/{job_id}/report{?page}", name="job-report", title="A research report, paginated",
                     mime_type="text/markdown",
                     description="The full Markdown report of a finished research job; large reports come in pages "
                                 "(?page=1, 2, ...); each page ends with a line naming the next page.")
    def report_resource(job_id: str, ctx: Context, page: str = "1") -> str:
        if not (page.strip().isascii() and page.strip().isdecimal()):  # typed here: the SDK's own conversion error names nothing
            raise InputError(f"must be a whole number from 1 (got {page[:20]!r})", field="page")
        row = _job_row(ctx, job_id)
        if row["status"] != "COMPLETED":
            raise InputError(f"job {job_id} is {row['status']}; the report exists once it is COMPLETED", field="job_id")
        output = (row.get("result") or {}).get("output") or {}
        report = output.get("report") or output.get("text")
        if not report:
            raise NotFound(f"job {job_id} ({row['action']}) has no report", field="job_id")
        size = server_state(ctx).runtime.config.mcp.report_page_chars
        return paginate(report, size, int(page), f"swarm://jobs/{job_id}/report")

    @server.resource("swarm://artifacts/{+key}", name="artifact", title="A stored image or file",
                     mime_type="application/octet-stream",  # a read names the object's own type (SwarmServer)
                     description="An object from the configured storage (e.g. an upscaled image), by the key a tool returned.")
    async def artifact_resource(key: str, ctx: Context) -> bytes:
        check_key_owner(ctx, key)
        return await _artifact(server_state(ctx).runtime.providers().storage, key)

    @server.resource("swarm://threads/{thread_id}", name="thread", title="A conversation", mime_type="application/json",
                     description="One of your threads: every kept turn (who said what) and how many were dropped.")
    async def thread_resource(thread_id: str, ctx: Context) -> str:
        from mcp_server.thread_tools import read_thread, unknown_thread

        thread = await read_thread(ctx, thread_id)
        if thread is None:
            raise not_found(unknown_thread(thread_id))
        return json.dumps(thread, indent=2)

    @server.resource("swarm://graphs/{name}", name="graph", title="A graph as a Mermaid diagram", mime_type="text/vnd.mermaid",
                     description=f"The LangGraph of an action as Mermaid text; names: {', '.join(GRAPHS)}.")
    def graph_resource(name: str) -> str:
        return mermaid(name)


def _register_source_templates(server: Any) -> None:
    """What a research report's citations open: each source's cited passages, and its whole text."""
    @server.resource("swarm://jobs/{job_id}/sources/{n}", name="job-source", title="A research source and its cited passages",
                     mime_type="text/markdown",
                     description="Source n of a finished research job: title, URL, and each passage the report cites it "
                                 "for (text, character offsets, heading, page; a search snippet is marked as one; a web "
                                 "page's passage with the link that opens the page at it).")
    def source_resource(job_id: str, n: str, ctx: Context) -> str:
        output, source = _research_source(ctx, job_id, n)
        return source_markdown(source, (output.get("cited_passages") or {}).get(str(source["id"]), []),
                               [c for c in output.get("citations", []) if (c.get("passage") or {}).get("source_id") == source["id"]],
                               f"swarm://jobs/{job_id}/sources/{source['id']}/text")

    @server.resource("swarm://jobs/{job_id}/sources/{n}/text", name="job-source-text", title="A research source's whole text",
                     mime_type="text/plain",
                     description="The whole text of source n of a research job, as the local index holds it now (the "
                                 "passages' offsets count into it); a web page is not fetched again: open its URL.")
    async def source_text_resource(job_id: str, n: str, ctx: Context) -> str:
        from core.redact import redact
        from providers.base import DocumentReader

        output, source = _research_source(ctx, job_id, n)
        search = server_state(ctx).runtime.providers().search
        found = await search.read_document(str(source["url"])) if isinstance(search, DocumentReader) else None
        cited_at = f"swarm://jobs/{job_id}/sources/{source['id']}"
        if found is None:
            if _gone_file(str(source["url"])):  # renamed or deleted since: "its text is at its url" led nowhere
                raise ResourceNotFoundError(f"source {source['id']} ({source['url']}) is no longer in the local index:"
                                            f" the file is gone (renamed or deleted since this report); its cited"
                                            f" passages, as they were, are at {cited_at}")
            raise ResourceNotFoundError(f"source {source['id']} is not a document of the local index; its text is at "
                                        f"its url ({source['url']}), its cited passages at {cited_at}")
        moved = [p for p in (output.get("cited_passages") or {}).get(str(source["id"]), [])
                 if isinstance(p.get("start"), int) and isinstance(p.get("end"), int) and isinstance(p.get("text"), str)
                 and redact(found[1][p["start"]:p["end"]]) != p["text"]]  # as stored: redacted (a key in a setup doc)
        if moved:  # edited since the report: its offsets would cut the wrong text, said nowhere
            raise ResourceNotFoundError(f"source {source['id']} ({source['url']}) changed since this report: its cited"
                                        f" passages no longer sit at their offsets ({len(moved)} moved); they are quoted"
                                        f" as they were at {cited_at}, and the file as it is now at its url")
        return found[1]


def _gone_file(url: str) -> bool:
    """Whether ``url`` names a local file that no longer exists."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    return parts.scheme == "file" and not Path(unquote(parts.path)).exists()


async def _job_json(ctx: Context, job_id: str) -> str:
    row = _job_row(ctx, job_id)
    result = row.get("result") or {}
    from mcp_server.jobstore import summary  # on first use: sqlite3 is not needed to start

    trace = result.get("trace")
    if trace is None:  # still running: the steps it has finished so far, as job_result shows them
        trace = await server_state(ctx).jobs.steps_so_far(job_id, row)
    # latencies to 0.1 ms, as the tools' results give them (docs/MCP.md): a reader needs no nanoseconds
    trace = [{**s, "latency_ms": round(s["latency_ms"], LATENCY_DECIMALS)}
             if isinstance(s, dict) and isinstance(s.get("latency_ms"), float) else s for s in trace or []]
    return json.dumps({**summary(row), "trace": trace, "totals": result.get("totals", {})}, indent=2)


def _job_row(ctx: Context, job_id: str) -> dict[str, Any]:
    state = server_state(ctx)
    row = state.jobs.store.get(job_id, owner_of(ctx))
    if row is None:
        raise not_found(unknown_job(job_id, state.runtime.config.checkpointer.retention_days))
    return row


def _research_source(ctx: Context, job_id: str, n: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished research job's output and its source ``n``, or a ResourceError saying what is wrong."""
    row = _job_row(ctx, job_id)
    if row["status"] != "COMPLETED":
        raise InputError(f"job {job_id} is {row['status']}; its sources exist once it is COMPLETED", field="job_id")
    output = (row.get("result") or {}).get("output") or {}
    ids = [s.get("id") for s in output.get("sources", [])]
    if not ids:  # research, or a delegate kind routed to it, has them
        raise NotFound(f"job {job_id} ({row.get('action')}) has no sources", field="job_id")
    source = next((s for s in output["sources"] if str(s.get("id")) == n.strip()), None)
    if source is None:
        raise NotFound(f"job {job_id} has no source {n[:20]!r}; its sources are {', '.join(map(str, ids))}", field="n")
    return output, source


def source_markdown(source: dict[str, Any], passages: list[dict[str, Any]], citations: list[dict[str, Any]],
                    text_uri: str) -> str:
    """One source as a reader opens it: title and URL, then each cited passage (where it lies
    in the text, its heading and page) quoted, with the report's sentences that cite it."""
    lines = [f"# [{source['id']}] {' '.join(str(source.get('title') or source['url']).split())}", "",
             f"- url: <{source['url']}>"]
    if source.get("retrieved_at"):
        lines.append(f"- retrieved: {source['retrieved_at']}")
    if str(source["url"]).startswith("file:"):  # a document of the local index; a web page is not kept
        lines.append(f"- whole text: {text_uri}")
    if not passages:
        lines += ["", "No passage of this source backs a sentence of the report."]
    for number, passage in enumerate(passages, start=1):
        lines += _passage_lines(number, passage, citations)
    return "\n".join(lines) + "\n"


def _passage_lines(number: int, passage: dict[str, Any], citations: list[dict[str, Any]]) -> list[str]:
    """One cited passage: where it lies, its text quoted, the link that opens a web page at it
    (``citations[].passage.link``, a text fragment; the source's url stays the plain URL), and
    the report's sentences that cite it."""
    if passage.get("snippet"):
        where = "search snippet (the page was not read: no offsets)"
    else:
        where = f"characters {passage['start']}-{passage['end']}"
        where += f", under \"{passage['heading']}\"" if passage.get("heading") else ""
        where += f", page {passage['page']}" if passage.get("page") else ""
    lines = ["", f"## Passage {number}: {where}", ""]
    lines += [f"> {line}".rstrip() for line in str(passage.get("text", "")).splitlines()]
    key = (passage.get("start"), passage.get("end"))
    citing = [c for c in citations if ((c.get("passage") or {}).get("start"), (c.get("passage") or {}).get("end")) == key]
    link = next((str(c["passage"]["link"]) for c in citing if c["passage"].get("link")), None)
    if link and not passage.get("snippet"):  # as the report's Sources list writes a link: no ">" or space in it
        lines += ["", f"Open at this passage: <{link.replace('>', '%3E').replace(' ', '%20')}>"]
    if citing:
        lines += ["", "Cited for:", *(f"- {c['claim']}" for c in citing)]
    return lines


def paginate(text: str, size: int, page: int, uri: str) -> str:
    """Page ``page`` (1-based) of ``text`` cut at ``size`` characters, on a line break when one is near."""
    chunks, rest = [], text
    while rest:
        cut = len(rest) if len(rest) <= size else (rest.rfind("\n", size // 2, size) + 1 or size)
        chunks.append(rest[:cut])
        rest = rest[cut:]
    if not 1 <= page <= len(chunks):
        raise InputError(f"{page} does not exist; the report has {len(chunks)} page(s)", field="page")
    body = chunks[page - 1]
    if page < len(chunks):
        body += f"\n\n<!-- page {page} of {len(chunks)}; next: {uri}?page={page + 1} -->\n"
    return body


async def provider_health(state: ServerState) -> dict[str, Any]:
    """LLM models (availability + circuit), search circuits, storage backend, last config error."""
    runtime = state.runtime
    config = runtime.config
    out: dict[str, Any] = {"config_version": runtime.store.version, "config_error": runtime.store.last_error}
    llm = runtime.providers(config).llm
    health = getattr(llm, "health", None)
    out["llm"] = await health() if health is not None else {"healthy": await llm.health_check()}
    search_circuits = getattr(runtime, "_search_circuits", None)
    out["search"] = {
        "chain": list(config.providers.search.fallback_chain),
        "circuits": search_circuits.snapshot() if search_circuits is not None else {},
    }
    storage_circuits = getattr(runtime, "_storage_circuits", None)
    out["storage"] = {
        "backend": config.providers.storage.default,
        "chain": config.providers.storage.order,
        "circuits": {name.removeprefix("storage:"): state for name, state in storage_circuits.snapshot().items()}
        if storage_circuits is not None else {},
    }
    return out


def mermaid(name: str) -> str:
    """The named graph compiled over fakes (no model, no network) and drawn as Mermaid."""
    from providers.testing import FakeLLM, FakeSearch

    if name == "delegation":
        from graphs.delegation.graph import build_graph

        graph = build_graph(FakeLLM())
    elif name == "research":
        from graphs.research.graph import build_graph as build_research

        async def no_fetch(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("diagram only")

        graph = build_research(FakeLLM(), FakeSearch([]), no_fetch)
    elif name == "consensus":
        from graphs.consensus.graph import build_graph as build_consensus

        graph = build_consensus(FakeLLM())
    else:
        raise NotFound(f"unknown graph {name!r}; valid: {', '.join(GRAPHS)}", field="name")
    return str(graph.get_graph().draw_mermaid())
