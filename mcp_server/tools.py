"""MCP action tools: their signatures (names, input schemas, descriptions) and registration.

Each tool is a thin wrapper that turns its arguments into a job for the runner; the output
models live in ``mcp_server.outputs`` and the envelope -> result mapping in ``mcp_server.results``.

No business logic here: validation of limits, routing and execution happen in the
dispatcher and the graphs, the same code the RunPod worker runs. The one exception is what only
this side can reach: a local image file (``path``) is read here and sent as data, and what can be
refused before a job exists (a bad path, an image over the size limit) is. A tool is registered only
when its action module imports, so the server works whichever actions are installed; config
``mcp.enabled_tools`` trims the list further to save the client's context.

Annotations are evaluated at registration (no ``from __future__ import annotations``) so the
limits advertised in input schemas come from the config in force; a reloaded config registers the
tools again (``SwarmServer.refresh_tools``).
"""

import importlib.util
import logging
import math
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InputError
from core.rules import (
    EMPTY_TEXT,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_NAME_CHARS,
    Tier,
    blank,
    check_text_limit,
)
from graphs.actions import action_module
from graphs.image.inputs import Rgba
from mcp_server.calls import check_key_owner, over_http, run_job, server_state
from mcp_server.job_tools import JobStatus
from mcp_server.outputs import ConsensusOutput, DelegateOutput, ImageOutput, ResearchOutput
from mcp_server.previews import image_blocks
from mcp_server.reports import source_links
from mcp_server.results import (
    consensus_output,
    delegate_output,
    image_output,
    image_result,
    research_output,
    research_result,
    stored_images,
    text_result,
    without_local_urls,
)
from mcp_server.thread_tools import ThreadId, open_thread
from swarm.executors import runner_in_effect
from swarm.local_images import read_local_sources

log = logging.getLogger("swarm.mcp")

# no description: the name says it (a retry with the same key gets the same job), and six tools
# would repeat it in every client's context
IdempotencyKey = Annotated[
    str | None, Field(max_length=MAX_IDEMPOTENCY_KEY_CHARS, pattern=IDEMPOTENCY_KEY_PATTERN),
]

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
IMAGE_COMMON = " One of image, path, url, key ({limits}). Returns: key, preview, full-size link."
#: MCP tool name -> the ``image_tools`` action it runs (graphs/actions.py)
IMAGE_TOOL_ACTIONS = {"upscale_image": "upscale", "remove_background": "remove_background", "process_image": "pipeline"}
IMAGE_DESCRIPTIONS = {
    "upscale_image": "Upscale an image with Real-ESRGAN (x2-x4; anime/illustration model by default)." + IMAGE_COMMON,
    "remove_background": "Cut the subject out of an image (transparent background)." + IMAGE_COMMON
    + " Several images (faster): `images`, one result each; a bad one fails alone.",
    "process_image": "Remove the background, then upscale, in one job." + IMAGE_COMMON,
}


def image_description(tool: str, config: Any) -> str:
    """``tool``'s description with the input limits in force (``providers.image``): no schema
    keyword can carry them (a base64 string's bytes, a file's size, an image's pixels), and without
    them a model learns the limit only from a refusal, after sending the whole image. Megapixels
    are rounded down, so an image within what is said is within the limit."""
    image = config.providers.image
    limit = image.max_input_bytes
    size = f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit:,} bytes"
    pixels = image.max_input_pixels
    area = f"{math.floor(pixels / 100_000) / 10:g} MP" if pixels >= 1_000_000 else f"{pixels:,} pixels"
    return IMAGE_DESCRIPTIONS[tool].format(limits=f"≤{size}, {area}")


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
        **{tool: (action_module("image_tools", action), _image_registrar(tool)) for tool, action in IMAGE_TOOL_ACTIONS.items()},
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
    kinds = ", ".join(sorted(config.routing.delegation))

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
        kind: Annotated[str, Field(description=f"one of {kinds}", max_length=MAX_NAME_CHARS)] = "bulk_content",
        tier: Annotated[Tier | None, Field(description="default: providers.llm.default")] = None,
        thread_id: ThreadId = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, DelegateOutput]:
        _checked_text(ctx, "task", task, "max_task_chars")
        _checked_kind(ctx, kind)
        thread_id, history = await open_thread(ctx, thread_id, idempotency_key)
        inp = _drop_none(task=task, kind=kind, tier=tier, thread_id=thread_id, history=history or None)
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
        inp = _drop_none(question=question, depth=depth, mode=mode, max_sources=max_sources, backends=backends,
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
        inp = _drop_none(question=question, models=models, stances=stances, tier=tier)
        result = await run_job(ctx, {"project": "swarm", "action": "consensus", "input": inp}, idempotency_key=idempotency_key)
        return text_result(consensus_output(result))


def _image_registrar(action: str) -> Callable[[Any, Any], None]:
    def registrar(server: Any, config: Any) -> None:
        _IMAGE_TOOLS[action](server, config)

    return registrar


MAX_IMAGE_URL_CHARS = 4096
MAX_KEY_CHARS = 1024
ImageB64 = Annotated[str | None, Field(description="base64 or data: URL")]
# its length is checked when it is read (imageio.local_path): a limit no path reaches, not worth the context;
# nor is "a local file" (the name says it): the chars pay for the output schemas' failure shapes (admit_failures)
ImagePath = Annotated[str | None, Field(description="absolute, or a file:// URL")]
ImageUrl = Annotated[str | None, Field(description="http(s)", max_length=MAX_IMAGE_URL_CHARS)]
ImageKey = Annotated[str | None, Field(description="a result's storage key", max_length=MAX_KEY_CHARS)]
OutputFormat = Literal["png", "webp", "jpeg"]
ReturnB64 = Annotated[bool, Field(description="also base64 (capped)")]
Scale = Annotated[Literal[2, 3, 4] | None, Field(description="default: model's")]
Tile = Annotated[int | None, Field(ge=0, le=2048, description="input px per tile; 0: none")]
UpscaleModel = Annotated[str | None, Field(
    max_length=MAX_NAME_CHARS, description="realesrgan-anime-6b (default), realesrgan-x4plus, realesr-animevideov3-x2/x3/x4")]
RembgModel = Annotated[str | None, Field(max_length=MAX_NAME_CHARS, description="u2netp (default), isnet-anime, u2net")]
Fill = Annotated[Rgba | None, Field(description="RGB(A) fill")]


#: an image tool answers with content blocks (preview, link) and structured content checked against ImageOutput
ImageResult = Annotated[CallToolResult, ImageOutput]


def _image_annotations() -> ToolAnnotations:
    # not read-only (it stores), not destructive; not idempotent and open world are MCP's defaults
    return ToolAnnotations(read_only_hint=False, destructive_hint=False)


async def _image_call(ctx: Context, action: str, inp: dict[str, Any], return_base64: bool,
                      idempotency_key: str | None) -> CallToolResult:
    runtime = server_state(ctx).runtime
    inline_limit = runtime.config.mcp.max_inline_image_bytes
    # an InputError here (before any job exists) is answered as a failed job's (SwarmServer.call_tool)
    if inp.get("key"):
        check_key_owner(ctx, str(inp["key"]))
    for n, item in enumerate(inp.get("images") or []):
        if isinstance(item, dict) and item.get("key"):
            check_key_owner(ctx, str(item["key"]), f"images[{n}].key")
    inp = await read_local_sources(runtime.config, inp, lambda field: _file_roots(ctx, runtime.config, field))
    job = {"project": "image_tools", "action": action, "input": _drop_none(**inp, inline=return_base64 or None)}
    result = await run_job(ctx, job, idempotency_key=idempotency_key)
    output = image_output(result, return_base64=return_base64, inline_limit=inline_limit)
    if over_http(ctx):  # a file:// URL names the server's disk
        output = cast(ImageOutput, without_local_urls(output))
    blocks = await image_blocks(stored_images(output), runtime.providers().storage, inline_limit,
                                runtime.config.providers.image.max_output_pixels)
    return image_result(output, blocks)


def _file_roots(ctx: Context, config: Any, field: str) -> list[str] | None:
    """The folders ``path`` may read (``None``: any). Over stdio the client runs on this machine
    as this user, and may name any file it could open itself; over HTTP the file would be the
    server's, so only ``mcp.file_roots`` are read, and none when the key is empty."""
    roots = list(config.mcp.file_roots)
    if not over_http(ctx):  # stdio, or a client in this process
        return roots or None
    if not roots:
        raise InputError("local files are not read over HTTP (the file would be the server's); send the image as"
                         " url, key or base64, or list the folders it may read in mcp.file_roots", field=field)
    return roots


def _register_upscale(server: Any, config: Any) -> None:
    @server.tool(name="upscale_image", title="Upscale an image", description=image_description("upscale_image", config),
                 annotations=_image_annotations())
    async def upscale(ctx: Context, image: ImageB64 = None, path: ImagePath = None, url: ImageUrl = None,
                      key: ImageKey = None, scale: Scale = None, model: UpscaleModel = None, tile: Tile = None,
                      output_format: OutputFormat = "png", return_base64: ReturnB64 = False,
                      idempotency_key: IdempotencyKey = None) -> ImageResult:
        inp = {"image": image, "path": path, "url": url, "key": key, "scale": scale, "model": model, "tile": tile,
               "output_format": output_format}
        return await _image_call(ctx, "upscale", inp, return_base64, idempotency_key)


class ImageItem(BaseModel):
    # no docstring: it would be the schema's description, and the tool's says "one of image, path, url, key"

    model_config = ConfigDict(extra="forbid")

    # the same limits as the top-level image/path/url/key, whose descriptions say the rest
    image: str | None = None
    path: str | None = None
    url: Annotated[str | None, Field(max_length=MAX_IMAGE_URL_CHARS)] = None
    key: Annotated[str | None, Field(max_length=MAX_KEY_CHARS)] = None


def _register_remove_background(server: Any, config: Any) -> None:
    from graphs.image.inputs import MAX_BATCH_IMAGES

    # the count is checked by the dispatcher, whose error names input.images and the limit
    Images = Annotated[list[ImageItem] | None, Field(
        description="instead of image/path/url/key",
        json_schema_extra={"maxItems": MAX_BATCH_IMAGES})]

    @server.tool(name="remove_background", title="Remove background",
                 description=image_description("remove_background", config), annotations=_image_annotations())
    async def remove_background(ctx: Context, image: ImageB64 = None, path: ImagePath = None, url: ImageUrl = None,
                                key: ImageKey = None, images: Images = None,
                                model: RembgModel = None, alpha_matting: bool = False, only_mask: bool = False,
                                background_color: Fill = None, output_format: OutputFormat = "png",
                                return_base64: ReturnB64 = False, idempotency_key: IdempotencyKey = None) -> ImageResult:
        inp = {"image": image, "path": path, "url": url, "key": key, "model": model, "alpha_matting": alpha_matting or None,
               "only_mask": only_mask or None, "background_color": background_color, "output_format": output_format,
               "images": None if images is None else [item.model_dump(exclude_none=True) for item in images]}
        return await _image_call(ctx, "remove_background", inp, return_base64, idempotency_key)


def _register_pipeline(server: Any, config: Any) -> None:
    @server.tool(name="process_image", title="Cut out, then upscale", description=image_description("process_image", config),
                 annotations=_image_annotations())
    async def pipeline(ctx: Context, image: ImageB64 = None, path: ImagePath = None, url: ImageUrl = None,
                       key: ImageKey = None, model: RembgModel = None, upscale_model: UpscaleModel = None, scale: Scale = None,
                       tile: Tile = None, background_color: Fill = None, output_format: OutputFormat = "png",
                       return_base64: ReturnB64 = False, idempotency_key: IdempotencyKey = None) -> ImageResult:
        inp = {"image": image, "path": path, "url": url, "key": key, "model": model, "upscale_model": upscale_model,
               "scale": scale, "tile": tile, "background_color": background_color, "output_format": output_format}
        return await _image_call(ctx, "pipeline", inp, return_base64, idempotency_key)


#: MCP tool name -> registrar (the dispatcher actions are upscale, remove_background, pipeline).
_IMAGE_TOOLS: dict[str, Callable[[Any, Any], None]] = {
    "upscale_image": _register_upscale,
    "remove_background": _register_remove_background,
    "process_image": _register_pipeline,
}


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


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
