"""MCP tools: thin wrappers that turn tool arguments into a job for the runner.

No business logic here: validation of limits, routing and execution happen in the
dispatcher and the graphs, the same code the RunPod worker runs. A tool is registered only
when its action module imports, so the server works whichever actions are installed; config
``mcp.enabled_tools`` trims the list further to save the client's context.

Annotations are evaluated at registration (no ``from __future__ import annotations``) so the
limits advertised in input schemas come from the config in force.
"""

import importlib.util
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from core.rules import IDEMPOTENCY_KEY_PATTERN, MAX_IDEMPOTENCY_KEY_CHARS, Tier
from mcp_server.calls import run_job, server_state

log = logging.getLogger("swarm.mcp")

IdempotencyKey = Annotated[
    str | None,
    Field(
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="optional; a retry with the same key returns the first job instead of starting another",
    ),
]


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


DELEGATE_DESCRIPTION = (
    "Delegate a task to the swarm. The route for `kind` (config routing.delegation) picks the "
    "primary model family and an optional reviewer from another family; the primary drafts, "
    "the reviewer returns a verdict, and the draft is revised within a bounded loop. kinds: "
    "bulk_content (cheap drafting, reviewed), critical (strongest model, no reviewer), research "
    "(search-backed, when available). tier: fast | balanced | premium. Returns the final text, "
    "the review and a trace of every provider call (model, latency, tokens, cost, outcome). "
    "If status is IN_PROGRESS the job is still running: call job_result with its job_id."
)
RESEARCH_DESCRIPTION = (
    "Research a question on the web and local documents: plans sub-queries, searches in "
    "parallel, reads the best sources and writes a Markdown report whose every [n] citation "
    "resolves to a source it read (unsupported citations are removed). depth: quick (about 3 "
    "sources) | standard (5) | deep (8, slowest). Takes from seconds to minutes: a status of "
    "IN_PROGRESS means call job_result(job_id) later. The full report is also at report_uri."
)
IMAGE_COMMON = (
    " Give exactly one of `image` (base64 or a data: URL), `url` (http/https) or `key` (a "
    "storage key from an earlier result). Returns the result's storage key and a download URL; "
    "set return_base64=true only when you need the bytes inline (small images only)."
)
IMAGE_DESCRIPTIONS = {
    "upscale_image": "Upscale an image with Real-ESRGAN (anime/illustration models by default, x2-x4)." + IMAGE_COMMON,
    "remove_background": "Cut the subject out of an image: returns a PNG with a transparent background." + IMAGE_COMMON
    + " For several images at once (faster per image), give `images` instead: a list of {image | url | key};"
    " `results` then holds one entry per image, and a bad image fails alone.",
    "process_image": "Remove the background, then upscale, in one job (one upload, one result)." + IMAGE_COMMON,
}


def _action_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def register(server: Any, config: Any) -> list[str]:
    """Add every available, enabled action tool to ``server``; returns their names."""
    enabled = config.mcp.enabled_tools
    registrars: dict[str, tuple[str, Callable[[Any, Any], None]]] = {
        "delegate": ("graphs.delegation.action", _register_delegate),
        "research": ("graphs.research.action", _register_research),
        **{name: ("graphs.image.action", _image_registrar(name)) for name in IMAGE_DESCRIPTIONS},
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
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=True),
    )
    async def delegate(
        # the dispatcher enforces both limits with messages naming the config key
        task: Annotated[str, Field(description="what to do, in plain words",
                                   json_schema_extra={"minLength": 1, "maxLength": max_chars})],
        ctx: Context,
        kind: Annotated[str, Field(description=f"route in routing.delegation: {kinds}", max_length=64)] = "bulk_content",
        tier: Annotated[Tier | None, Field(description="model tier; default providers.llm.default")] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> DelegateOutput:
        job = {"project": "swarm", "action": "delegate", "input": _drop_none(task=task, kind=kind, tier=tier)}
        result = await run_job(ctx, job, idempotency_key=idempotency_key)
        return delegate_output(result)


def _register_research(server: Any, config: Any) -> None:
    max_chars = config.limits.max_question_chars

    @server.tool(
        name="research",
        title="Research a question",
        description=RESEARCH_DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=True),
    )
    async def research(
        question: Annotated[str, Field(description="what to find out",
                                       json_schema_extra={"minLength": 1, "maxLength": max_chars})],
        ctx: Context,
        depth: Annotated[Literal["quick", "standard", "deep"], Field(description="how many sources to read")] = "standard",
        max_sources: Annotated[int, Field(ge=1, le=20, description="most sources kept after ranking")] = 8,
        backends: Annotated[list[Annotated[str, Field(max_length=64)]] | None, Field(
            max_length=8, description="search backends in order (default: providers.search.fallback_chain)")] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> ResearchOutput:
        inp = _drop_none(question=question, depth=depth, max_sources=max_sources, backends=backends)
        result = await run_job(ctx, {"project": "swarm", "action": "research", "input": inp}, idempotency_key=idempotency_key)
        return research_output(result)


def _image_registrar(action: str) -> Callable[[Any, Any], None]:
    def registrar(server: Any, config: Any) -> None:
        _IMAGE_TOOLS[action](server, config)

    return registrar


ImageB64 = Annotated[str | None, Field(description="the image as base64 or a data:image/...;base64 URL")]
ImageUrl = Annotated[str | None, Field(description="http(s) URL of the image (fetched SSRF-safe)", max_length=4096)]
ImageKey = Annotated[str | None, Field(description="storage key of an earlier result", max_length=1024)]
OutputFormat = Annotated[Literal["png", "webp", "jpeg"], Field(description="format of the result")]
ReturnB64 = Annotated[bool, Field(description="also return the result inline as base64 (small results only)")]
Scale = Annotated[Literal[2, 3, 4] | None, Field(description="upscale factor; default: the model's")]
Tile = Annotated[int | None, Field(ge=0, le=2048, description="tile size in input pixels; 0 = no tiling")]
UpscaleModel = Annotated[str | None, Field(
    max_length=64, description="realesrgan-anime-6b (default), realesrgan-x4plus, realesr-animevideov3-x2/x3/x4")]
RembgModel = Annotated[str | None, Field(max_length=64, description="isnet-anime (default), u2netp, u2net")]
Rgba = Annotated[tuple[int, int, int, int] | None, Field(description="fill the background with this RGBA colour (0-255)")]


def _image_annotations() -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)


async def _image_call(ctx: Context, action: str, inp: dict[str, Any], return_base64: bool,
                      idempotency_key: str | None) -> ImageOutput:
    inline_limit = server_state(ctx).runtime.config.mcp.max_inline_image_bytes
    job = {"project": "image_tools", "action": action, "input": _drop_none(**inp, inline=return_base64 or None)}
    result = await run_job(ctx, job, idempotency_key=idempotency_key)
    return image_output(result, return_base64=return_base64, inline_limit=inline_limit)


def _register_upscale(server: Any, config: Any) -> None:
    @server.tool(name="upscale_image", title="Upscale an image", description=IMAGE_DESCRIPTIONS["upscale_image"],
                 annotations=_image_annotations())
    async def upscale(ctx: Context, image: ImageB64 = None, url: ImageUrl = None, key: ImageKey = None,
                      scale: Scale = None, model: UpscaleModel = None, tile: Tile = None,
                      output_format: OutputFormat = "png", return_base64: ReturnB64 = False,
                      idempotency_key: IdempotencyKey = None) -> ImageOutput:
        inp = {"image": image, "url": url, "key": key, "scale": scale, "model": model, "tile": tile,
               "output_format": output_format}
        return await _image_call(ctx, "upscale", inp, return_base64, idempotency_key)


class ImageItem(BaseModel):
    """One image of `images`: exactly one of image, url, key."""

    model_config = ConfigDict(extra="forbid")

    image: ImageB64 = None
    url: ImageUrl = None
    key: ImageKey = None


def _register_remove_background(server: Any, config: Any) -> None:
    from graphs.image.inputs import MAX_BATCH_IMAGES

    # the count is checked by the dispatcher, whose error names input.images and the limit
    Images = Annotated[list[ImageItem] | None, Field(
        description=f"several images in one job (1 to {MAX_BATCH_IMAGES}), instead of image/url/key",
        json_schema_extra={"maxItems": MAX_BATCH_IMAGES})]

    @server.tool(name="remove_background", title="Remove an image's background",
                 description=IMAGE_DESCRIPTIONS["remove_background"], annotations=_image_annotations())
    async def remove_background(ctx: Context, image: ImageB64 = None, url: ImageUrl = None, key: ImageKey = None,
                                images: Images = None,
                                model: RembgModel = None, alpha_matting: bool = False, only_mask: bool = False,
                                background_color: Rgba = None, output_format: OutputFormat = "png",
                                return_base64: ReturnB64 = False, idempotency_key: IdempotencyKey = None) -> ImageOutput:
        inp = {"image": image, "url": url, "key": key, "model": model, "alpha_matting": alpha_matting or None,
               "only_mask": only_mask or None, "background_color": background_color, "output_format": output_format,
               "images": None if images is None else [item.model_dump(exclude_none=True) for item in images]}
        return await _image_call(ctx, "remove_background", inp, return_base64, idempotency_key)


def _register_pipeline(server: Any, config: Any) -> None:
    @server.tool(name="process_image", title="Cut out, then upscale", description=IMAGE_DESCRIPTIONS["process_image"],
                 annotations=_image_annotations())
    async def pipeline(ctx: Context, image: ImageB64 = None, url: ImageUrl = None, key: ImageKey = None,
                       model: RembgModel = None, upscale_model: UpscaleModel = None, scale: Scale = None,
                       tile: Tile = None, background_color: Rgba = None, output_format: OutputFormat = "png",
                       return_base64: ReturnB64 = False, idempotency_key: IdempotencyKey = None) -> ImageOutput:
        inp = {"image": image, "url": url, "key": key, "model": model, "upscale_model": upscale_model,
               "scale": scale, "tile": tile, "background_color": background_color, "output_format": output_format}
        return await _image_call(ctx, "pipeline", inp, return_base64, idempotency_key)


#: MCP tool name -> registrar (the dispatcher actions are upscale, remove_background, pipeline).
_IMAGE_TOOLS: dict[str, Callable[[Any, Any], None]] = {
    "upscale_image": _register_upscale,
    "remove_background": _register_remove_background,
    "process_image": _register_pipeline,
}


# --- envelopes -> tool results -------------------------------------------------------------


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


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


def delegate_output(result: dict[str, Any]) -> DelegateOutput:
    output = result.get("output") or {}
    return DelegateOutput(
        **_head(result),
        text=output.get("text", ""),
        model=output.get("model"),
        review=output.get("review"),
        revisions=output.get("revisions", 0),
    )


def research_output(result: dict[str, Any]) -> ResearchOutput:
    output = result.get("output") or {}
    done = result.get("status") != "IN_PROGRESS"
    return ResearchOutput(
        **_head(result),
        report=output.get("report", ""),
        report_uri=f"swarm://jobs/{result['job_id']}/report" if done else None,
        sources=output.get("sources", []),
        citations=output.get("citations", []),
        review=output.get("review"),
        queries=[str(q) for q in output.get("queries", [])],
    )


def image_output(result: dict[str, Any], *, return_base64: bool, inline_limit: int) -> ImageOutput:
    """The stored result's key and URL; base64 only when asked and within mcp.max_inline_image_bytes."""
    output = dict(result.get("output") or {})
    key = output.pop("image_key", None)
    url = output.pop("url", None)
    inline = _inline_within(output, output.pop("image_b64", None), inline_limit)
    results = output.pop("results", None)
    if results is not None:
        results = [_batch_entry(entry, return_base64, inline_limit) for entry in results]
    return ImageOutput(**_head(result), key=key, url=url, image_base64=inline if return_base64 else None,
                       details=output, results=results)


def _inline_within(entry: dict[str, Any], inline: str | None, inline_limit: int) -> str | None:
    if inline is not None and len(inline) * 3 // 4 > inline_limit:
        entry["inline_omitted"] = f"result is over mcp.max_inline_image_bytes={inline_limit}; download it from url"
        return None
    return inline


def _batch_entry(entry: dict[str, Any], return_base64: bool, inline_limit: int) -> dict[str, Any]:
    """One image of a batch result, with the same key/url/image_base64 names as a single result."""
    out = {k: v for k, v in entry.items() if k not in ("image_key", "image_b64")}
    if "image_key" in entry:
        out["key"] = entry["image_key"]
    inline = _inline_within(out, entry.get("image_b64"), inline_limit)
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
