"""The MCP image tools (``upscale_image``, ``remove_background``, ``process_image``): their
descriptions, with the input limits in force, and their registrars (``IMAGE_TOOLS``), which
``mcp_server.tools.register`` calls. A local image file (``path``) is read here and sent as data,
and what can be refused before a job exists (a bad path, a key of another client) is.

Annotations are evaluated at registration (no ``from __future__ import annotations``), as in
``mcp_server.tools``.
"""

import math
from collections.abc import Callable
from typing import Annotated, Any, cast

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from core.errors import InputError
from mcp_server.calls import check_key_owner, over_http, run_job, server_state
from mcp_server.outputs import ImageOutput
from mcp_server.previews import image_blocks
from mcp_server.results import image_output, image_result, stored_images, without_local_urls
from mcp_server.tool_inputs import (
    Fill,
    IdempotencyKey,
    ImageB64,
    ImageItem,
    ImageKey,
    ImagePath,
    ImageUrl,
    OutputFormat,
    RembgModel,
    ReturnB64,
    Scale,
    Tile,
    UpscaleModel,
    drop_none,
)
from swarm.local_images import read_local_sources

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
    job = {"project": "image_tools", "action": action, "input": drop_none(**inp, inline=return_base64 or None)}
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
IMAGE_TOOLS: dict[str, Callable[[Any, Any], None]] = {
    "upscale_image": _register_upscale,
    "remove_background": _register_remove_background,
    "process_image": _register_pipeline,
}
