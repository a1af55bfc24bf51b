"""MCP action tools: their signatures (names, input schemas, descriptions) and registration.

Each tool is a thin wrapper that turns its arguments into a job for the runner; the output
models live in ``mcp_server.outputs``, the envelope -> result mapping in ``mcp_server.results``, the
image tools in ``mcp_server.image_tools`` and the argument types in ``mcp_server.tool_inputs``.

No business logic here: validation of limits, routing and execution happen in the
dispatcher and the graphs, the same code the RunPod worker runs. The one exception is what only
this side can reach: a local image file (``path``) is read at this door and sent as data, and what can be
refused before a job exists (a bad path, an image over the size limit) is. A tool is registered only
when its action module imports, so the server works whichever actions are installed; config
``mcp.enabled_tools`` trims the list further to save the client's context.

Annotations are evaluated at registration (no ``from __future__ import annotations``) so the
limits advertised in input schemas come from the config in force; a reloaded config registers the
tools again (``SwarmServer.refresh_tools``).
"""

import importlib.util
import logging
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from core.errors import InputError
from core.rules import EMPTY_TEXT, MAX_NAME_CHARS, Tier, blank, check_text_limit
from graphs.actions import action_module
from mcp_server.calls import run_job, server_state
from mcp_server.image_tools import IMAGE_TOOL_ACTIONS, IMAGE_TOOLS
from mcp_server.job_tools import JobStatus
from mcp_server.outputs import ConsensusOutput, DelegateOutput, ResearchOutput
from mcp_server.reports import source_links
from mcp_server.results import (
    consensus_output,
    delegate_output,
    research_output,
    research_result,
    text_result,
)
from mcp_server.thread_tools import ThreadId, open_thread
from mcp_server.tool_inputs import IdempotencyKey, drop_none
from swarm.executors import runner_in_effect

log = logging.getLogger("swarm.mcp")

# Descriptions say what a model needs to call the tool right (what it does, the choices, the
# limits that are not in the schema, what to do with IN_PROGRESS) and nothing the schema says.
DELEGATE_DESCRIPTION = (
    "A primary model drafts; the route's reviewer (another family), if any, checks it; revisions "
    "are bounded. kinds: bulk_content (cheap, reviewed), critical (strongest, no "
    "reviewer), research (search-backed). A reply's thread_id continues it. IN_PROGRESS: call job_result."
)
RESEARCH_DESCRIPTION = (
    "Searches {where}, reads the best sources and writes a Markdown report, each "
    "sentence backed by a cited passage. depth: quick (~3 sources), standard (5), deep (8). mode "
    "extractive: quotes only. IN_PROGRESS: call job_result."
)


def research_description(config: Any) -> str:
    """The research tool's description, saying what it really searches with this config and
    environment: the web backends of the chain that are set up, else only the local documents (a
    model told "the web" would trust a keyless answer for news it cannot have). Where jobs run on
    a RunPod endpoint, the worker's variables decide, which this side cannot see: its chain is named."""
    from providers.base import Configurable
    from providers.search.chain import chain_names, search_backend

    if runner_in_effect(config, worker=False).kind == "runpod":  # searched there, with its variables
        worker_chain = ", ".join(config.providers.search.fallback_chain)
        return RESEARCH_DESCRIPTION.format(
            where=f"with the RunPod worker's search chain ({worker_chain}: the web where the worker has it set up,"
                  " else its local documents; the report names each source)")
    section = config.providers.search
    names = chain_names(section)
    try:  # the web backends only: the local index's modules are not needed to say it is there
        backends = {name: search_backend(section, name) for name in names if name != "local"}
    except Exception:  # a broken search section fails the job with its own message
        return RESEARCH_DESCRIPTION.format(where="the configured search backends")
    reasons = {name: backend.unconfigured_reason() if isinstance(backend, Configurable) else None
               for name, backend in backends.items()}
    web = [name for name, reason in reasons.items() if not reason]
    local = "local" in names
    if web:
        return RESEARCH_DESCRIPTION.format(where=f"the web ({', '.join(web)})" + (" and local documents" if local else ""))
    if not local:
        return RESEARCH_DESCRIPTION.format(where=f"{', '.join(names)} (not set up here: a call names what is missing)")
    unset = f" (web not set up: {', '.join(reasons)})" if reasons else ""
    return RESEARCH_DESCRIPTION.format(where=f"local documents only{unset}")


CONSENSUS_DESCRIPTION = (
    "Asks several models at once (optional stances), then one writes agreements, disagreements and a "
    "recommendation naming who said what. IN_PROGRESS: call job_result."
)

#: read-only and open world; not idempotent (each call is a new job), MCP's default, so left out
ACTION_ANNOTATIONS = ToolAnnotations(read_only_hint=True, open_world_hint=True)


def _checked_text(ctx: Context, field: str, value: str, key: str) -> None:
    """An empty ``value``, or one longer than ``limits.<key>`` (the config in effect now), is refused
    before a job exists, as the schema advertises: it answered a failed job listed by list_jobs."""
    if blank(value):
        raise InputError(EMPTY_TEXT, field=field)
    check_text_limit(value, server_state(ctx).runtime.config.limits, key, field)


def _checked_kind(ctx: Context, kind: str) -> None:
    """A kind the config in effect has no route for is refused before a job exists, with the
    valid ones, when jobs run here (it made a failed job that list_jobs showed). A job sent to a
    RunPod endpoint is not checked here: the worker's config routes it, and may have routes this
    one lacks; the worker refuses a kind it has none for, naming the field and its own kinds."""
    config = server_state(ctx).runtime.config
    if runner_in_effect(config, worker=False).kind != "local":
        return
    routes = config.routing.delegation
    if kind not in routes:
        raise InputError(f"unknown kind {kind!r}; valid: {', '.join(sorted(routes))} (routing.delegation in config)",
                         field="kind")


def _kind_field(config: Any) -> Any:
    """``delegate``'s ``kind``: an enum of the config's routes when jobs run here (a client learnt
    them only from the description or a refusal); a description of them where a RunPod endpoint
    runs the jobs, whose config may route others (``_checked_kind``). A kind outside the enum is
    still refused by ``_checked_kind``, with its own words, for a client that does not check."""
    kinds = sorted(config.routing.delegation)
    if runner_in_effect(config, worker=False).kind == "local":
        return Field(max_length=MAX_NAME_CHARS, json_schema_extra={"enum": kinds})
    return Field(description=f"one of {', '.join(kinds)}", max_length=MAX_NAME_CHARS)


def _action_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def register(server: Any, config: Any) -> list[str]:
    """Add every available, enabled action tool to ``server``; returns their names."""
    enabled = config.mcp.enabled_tools
    registrars: dict[str, tuple[str, Callable[[Any, Any], None]]] = {
        "delegate": (action_module("swarm", "delegate"), _register_delegate),
        "research": (action_module("swarm", "research"), _register_research),
        "consensus": (action_module("swarm", "consensus"), _register_consensus),
        **{tool: (action_module("image_tools", action), IMAGE_TOOLS[tool]) for tool, action in IMAGE_TOOL_ACTIONS.items()},
    }
    names = []
    for name, (module, registrar) in registrars.items():
        if enabled is not None and name not in enabled:
            continue
        if not _action_available(module):
            log.debug("tool %s not registered: %s is not installed", name, module)
            continue
        registrar(server, config)
        names.append(name)
    return names


def _register_delegate(server: Any, config: Any) -> None:
    max_chars = config.limits.max_task_chars
    kind_field = _kind_field(config)

    @server.tool(
        name="delegate",
        title="Delegate a task",
        description=DELEGATE_DESCRIPTION,
        annotations=ACTION_ANNOTATIONS,
    )
    async def delegate(
        # refused before a job exists (``_checked_text``), naming the config key
        task: Annotated[str, Field(description="what to do, in plain words",
                                   json_schema_extra={"minLength": 1, "maxLength": max_chars})],
        ctx: Context,
        kind: Annotated[str, kind_field] = "bulk_content",
        tier: Annotated[Tier | None, Field(description="default: providers.llm.default")] = None,
        thread_id: ThreadId = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, DelegateOutput]:
        _checked_text(ctx, "task", task, "max_task_chars")
        _checked_kind(ctx, kind)
        thread_id, history = await open_thread(ctx, thread_id, idempotency_key)
        inp = drop_none(task=task, kind=kind, tier=tier, thread_id=thread_id, history=history or None)
        job = {"project": "swarm", "action": "delegate", "input": inp}
        result = await run_job(ctx, job, idempotency_key=idempotency_key, thread_id=thread_id)
        output = delegate_output(result, thread_id)
        return text_result(output, source_links(output.sources, output.citations))


def _register_research(server: Any, config: Any) -> None:
    max_chars = config.limits.max_question_chars

    @server.tool(
        name="research",
        title="Research",
        description=research_description(config),
        annotations=ACTION_ANNOTATIONS,
    )
    async def research(
        question: Annotated[str, Field(description="what to find out",
                                       json_schema_extra={"minLength": 1, "maxLength": max_chars})],
        ctx: Context,
        depth: Literal["quick", "standard", "deep"] = "standard",
        mode: Literal["extractive", "abstractive", "auto"] = "auto",
        max_sources: Annotated[int, Field(ge=1, le=20, description="most sources kept after ranking")] = 8,
        backends: Annotated[list[Annotated[str, Field(max_length=MAX_NAME_CHARS)]] | None, Field(
            min_length=1, max_length=8, description="in order; default: the search fallback_chain")] = None,
        thread_id: ThreadId = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, ResearchOutput]:
        # the report joins the thread; the planner of a follow-up sees the earlier turns
        _checked_text(ctx, "question", question, "max_question_chars")
        thread_id, history = await open_thread(ctx, thread_id, idempotency_key)
        inp = drop_none(question=question, depth=depth, mode=mode, max_sources=max_sources, backends=backends,
                        thread_id=thread_id, history=history or None)
        result = await run_job(ctx, {"project": "swarm", "action": "research", "input": inp},
                               idempotency_key=idempotency_key, thread_id=thread_id)
        return research_result(research_output(result, thread_id))


def _register_consensus(server: Any, config: Any) -> None:
    from graphs.consensus.action import MAX_MODELS

    route = config.routing.consensus
    default = f"default {', '.join(route.models)}" if route else "required: no routing.consensus in config"

    @server.tool(name="consensus", title="Consensus", description=CONSENSUS_DESCRIPTION,
                 annotations=ACTION_ANNOTATIONS)
    async def consensus(
        question: Annotated[str, Field(json_schema_extra={"minLength": 1, "maxLength": config.limits.max_task_chars})],
        ctx: Context,
        models: Annotated[list[Annotated[str, Field(max_length=MAX_NAME_CHARS)]] | None, Field(
            min_length=1, max_length=MAX_MODELS, description=f"models or families; {default}")] = None,
        # at least one, as the job's own schema (ConsensusInput): [] passed here and failed as input.stances
        stances: Annotated[list[Literal["for", "against", "neutral"]] | None, Field(
            min_length=1, max_length=MAX_MODELS, description="one per model")] = None,
        tier: Tier | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, ConsensusOutput]:
        _checked_text(ctx, "question", question, "max_task_chars")
        inp = drop_none(question=question, models=models, stances=stances, tier=tier)
        result = await run_job(ctx, {"project": "swarm", "action": "consensus", "input": inp}, idempotency_key=idempotency_key)
        return text_result(consensus_output(result))


def admit_failures(tools: list[Any]) -> None:
    """Widen each registered tool's output schema (``mcp...tools.Tool``, in place) to what a failed
    call's structured content holds (``results.failure_structured``): a ``job_id`` that is null (refused
    before any job existed) and any job ``status`` (FAILED, CANCELLED). MCP has every structured result
    conform to the schema, a failed one too, and a client may check an ``isError`` result against it
    (the TypeScript SDK's does, and refused the call). The status enum names its values: no type."""
    statuses = list(typing.get_args(JobStatus.model_fields["status"].annotation))
    for tool in tools:
        schema = tool.fn_metadata.output_schema
        properties = (schema or {}).get("properties", {})
        if properties.get("job_id") == {"type": "string"}:
            properties["job_id"] = {"type": ["string", "null"]}
        if "enum" in properties.get("status", {}):
            properties["status"] = {"enum": statuses}
        tool.__dict__.pop("output_schema", None)  # drop the cached copy, if one was read

