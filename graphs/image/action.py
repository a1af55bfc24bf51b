"""The ``image_tools`` actions: upscale, remove_background, pipeline.

Each takes exactly one of ``image`` (base64 or a data URL), ``url`` (fetched SSRF-safe) or
``key`` (an object in the configured storage), checks every limit before anything runs or is
written, then runs the image graph. The result names the stored output:
``{image_key, url, width, height, format, bytes, trace}`` (+ ``image_b64`` when ``inline``).

``remove_background`` also takes ``images``: up to ``MAX_BATCH_IMAGES`` sources, processed in
one batch. Its result is ``{results, images, succeeded, failed, format, trace}``: one entry per
image in input order, either the stored output (as above, plus ``index``) or
``{index, error: {type, message}}``; a bad image fails alone, its message names
``images[i].<field>`` and the limit.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graphs.context import JobContext

INLINE_MAX_BYTES = 4 * 1024 * 1024
#: most images one remove_background job takes in ``images``
MAX_BATCH_IMAGES = 16
_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "bmp": "bmp"}
_SOURCES = ("image", "url", "key")


class ImageSource(BaseModel):
    """One image: exactly one of ``image``, ``url``, ``key``."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(
        default=None, description="the image as base64 (or a data:image/...;base64, URL)"
    )
    url: str | None = Field(
        default=None, max_length=4096, description="an http(s) URL to fetch the image from"
    )
    key: str | None = Field(default=None, max_length=1024, description="a key in the configured storage")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ImageSource:
        given = [name for name in _SOURCES if getattr(self, name)]
        if getattr(self, "images", None) is not None:
            if given:
                raise ValueError(f"give images or one of image, url, key, not both (got images and {', '.join(given)})")
            return self
        if len(given) != 1:
            raise ValueError(f"give exactly one of image, url, key (got {', '.join(given) or 'none'})")
        return self

    @property
    def source(self) -> str:
        """The name of the field that holds the image."""
        return next(name for name in _SOURCES if getattr(self, name))


class ImageInput(ImageSource):
    """Where the image comes from, and how the result is returned."""

    output_format: Literal["png", "webp", "jpeg"] = "png"
    inline: bool = Field(
        default=False, description=f"also return the output as base64 (up to {INLINE_MAX_BYTES} bytes)"
    )


class UpscaleInput(ImageInput):
    """Upscale with Real-ESRGAN."""

    model: str | None = Field(
        default=None, description="realesrgan-anime-6b, realesrgan-x4plus, realesr-animevideov3-x2/x3/x4"
    )
    scale: Literal[2, 3, 4] | None = Field(
        default=None, description="default: the model's, else providers.image.upscale.scale"
    )
    tile: int | None = Field(
        default=None, ge=0, le=2048, description="tile size in input pixels; 0 = no tiling"
    )


class BackgroundOptions(ImageInput):
    """The background-removal options remove_background and pipeline share."""

    model: str | None = Field(
        default=None, description="isnet-anime, u2netp, u2net; default: providers.image.rembg.model"
    )
    alpha_matting: bool = False
    only_mask: bool = False
    background_color: tuple[int, int, int, int] | None = Field(default=None, description="RGBA, each 0-255")

    @model_validator(mode="after")
    def _colour_range(self) -> BackgroundOptions:
        if self.background_color and not all(0 <= c <= 255 for c in self.background_color):
            raise ValueError("background_color channels must be 0-255")
        return self


class RemoveBackgroundInput(BackgroundOptions):
    """Cut the subject out; transparent (or coloured) background. One image, or a batch."""

    images: list[ImageSource] | None = Field(
        default=None,
        description=f"several images in one job, each {{image | url | key}} (1 to {MAX_BATCH_IMAGES});"
        " instead of image/url/key; one result per image",
        json_schema_extra={"minItems": 1, "maxItems": MAX_BATCH_IMAGES},
    )

    @field_validator("images", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        # counted before any item is validated: a huge list costs nothing
        if isinstance(value, list) and not 1 <= len(value) <= MAX_BATCH_IMAGES:
            raise ValueError(f"{len(value)} images; give 1 to {MAX_BATCH_IMAGES} per job (MAX_BATCH_IMAGES)")
        return value


class PipelineInput(BackgroundOptions):
    """Remove the background, then upscale (alpha kept through the upscale)."""

    model: str | None = Field(default=None, description="background-removal model")
    upscale_model: str | None = None
    scale: Literal[2, 3, 4] | None = None
    tile: int | None = Field(default=None, ge=0, le=2048)


async def upscale(inp: UpscaleInput, ctx: JobContext) -> dict[str, Any]:
    """Upscale one image x2/x3/x4."""
    return await _run("upscale", inp, {"upscale_model": inp.model, "scale": inp.scale, "tile": inp.tile}, ctx)


async def remove_background(inp: RemoveBackgroundInput, ctx: JobContext) -> dict[str, Any]:
    """Remove the background of one image, or of each of ``images`` in one batch."""
    if inp.images is not None:
        from graphs.image.batch import run_batch

        return await run_batch(inp, inp.images, _rembg_options(inp), ctx)
    return await _run("remove_background", inp, _rembg_options(inp), ctx)


async def pipeline(inp: PipelineInput, ctx: JobContext) -> dict[str, Any]:
    """Remove the background, then upscale."""
    options = {
        **_rembg_options(inp),
        "upscale_model": inp.upscale_model,
        "scale": inp.scale,
        "tile": inp.tile,
    }
    return await _run("pipeline", inp, options, ctx)


def _rembg_options(inp: BackgroundOptions) -> dict[str, Any]:
    return {
        "remove_background_model": inp.model,
        "alpha_matting": inp.alpha_matting,
        "only_mask": inp.only_mask,
        "background_color": inp.background_color,
    }


def image_graph(ctx: JobContext) -> Any:
    """The compiled image graph, built once per providers and checkpointer."""
    from graphs.image.graph import build_graph

    providers = ctx.providers
    return providers.memo(
        ("graph:image", id(ctx.checkpointer)),
        lambda: build_graph(providers.image, providers.storage, ctx.checkpointer),
    )


async def _run(action: str, inp: ImageInput, options: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    import anyio

    from graphs.run import run_graph
    from providers.image.imageio import ImageLimits, read_input

    limits = ImageLimits.from_config(ctx.config)
    storage = ctx.providers.storage
    await ctx.progress("input", "reading the image", 0.0)
    data = await read_input(image_b64=inp.image, url=inp.url, key=inp.key, storage=storage, limits=limits)
    kind = await anyio.to_thread.run_sync(_check, data, limits, action, options, ctx)
    input_key = inp.key or f"image_tools/{ctx.job_id}/input.{_EXT[kind]}"
    if not inp.key:
        await storage.put(input_key, data, overwrite=True)
    graph = image_graph(ctx)
    state = await run_graph(
        graph,
        {
            "action": action,
            "job_id": ctx.job_id,
            "current_key": input_key,
            "options": {**options, "output_format": inp.output_format},
            "steps_done": [],
            "trace": [],
        },
        ctx,
    )
    result = dict(state["result"])
    if inp.inline:
        if result["bytes"] <= INLINE_MAX_BYTES:
            result["image_b64"] = base64.b64encode(await storage.get(result["image_key"])).decode()
        else:
            result["inline_omitted"] = f"output is {result['bytes']} bytes; inline limit {INLINE_MAX_BYTES}"
    result["trace"] = state.get("trace", [])
    await ctx.progress("done", f"{result['width']}x{result['height']} {result['format']}", 1.0)
    return result


def _check(data: bytes, limits: Any, action: str, options: dict[str, Any], ctx: JobContext) -> str:
    """Decode-check the input and the output size before anything runs or is written."""
    from providers.image import weights
    from providers.image.imageio import check_output_pixels, open_checked, sniff_format
    img = open_checked(data, limits)
    if action in ("upscale", "pipeline"):
        settings = ctx.config.providers.image.upscale
        model = options.get("upscale_model")
        field = "model" if action == "upscale" else "upscale_model"
        default = weights.entry(model, field=field).default_scale if model else None
        scale = options.get("scale") or default or settings.scale
        check_output_pixels(img.size[0], img.size[1], scale, limits)
    return sniff_format(data) or "png"
