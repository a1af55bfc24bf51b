"""The ``image_tools`` actions: upscale, remove_background, pipeline.

Each takes exactly one of ``image`` (base64 or a data URL), ``url`` (fetched SSRF-safe) or
``key`` (an object in the configured storage), checks every limit before anything runs or is
written, then runs the image graph. The result names the stored output:
``{image_key, url, width, height, format, bytes, trace}`` (+ ``image_b64`` when ``inline``).

``remove_background`` also takes ``images``: up to ``MAX_BATCH_IMAGES`` sources, processed in
one batch. Its result is ``{results, images, succeeded, failed, format, trace}``: one entry per
image in input order, either the stored output (as above, plus ``index``) or
``{index, error: {type, message}}``; a bad image fails alone, its message names
``images[i].<field>`` and the limit. An image a door read from a local file comes as ``image`` with
``given_as: path``, and its errors name ``path`` (``images[i].path``), the field the caller wrote.

An output longer a side than ``output_format`` encodes (``imageio.MAX_SIDE``) is refused before the
model runs; one whose transparency ``output_format`` drops (JPEG) runs, and its result ``warnings`` say so.

An upscale (or pipeline) runs under the job's deadline (``limits.job_deadline_s``, which the
dispatcher enforces): one that the upscaler says cannot finish in time at this machine's measured
speed is refused before anything is written (``providers.image.deadline``).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from core.errors import InputError, ProviderError, SwarmError
from core.redact import redact
from graphs.context import JobContext
from graphs.image.batch import run_batch
from graphs.image.graph import image_graph
from graphs.image.inputs import (
    EXT,
    INLINE_MAX_BYTES,
    BackgroundOptions,
    ImageInput,
    PipelineInput,
    RemoveBackgroundInput,
    UpscaleInput,
)
from graphs.image.nodes import PLANS, alpha_warnings, step_config, storage_step
from providers.base import TraceStep
from providers.image.deadline import Deadline, DeadlineAware, job_deadline


async def upscale(inp: UpscaleInput, ctx: JobContext) -> dict[str, Any]:
    """Upscale one image x2/x3/x4."""
    return await _run("upscale", inp, {"upscale_model": inp.model, "scale": inp.scale, "tile": inp.tile}, ctx)


async def remove_background(inp: RemoveBackgroundInput, ctx: JobContext) -> dict[str, Any]:
    """Remove the background of one image, or of each of ``images`` in one batch."""
    _check_background_model(inp)
    if inp.images is not None:  # near the deadline the batch starts no more images, and keeps those done
        with job_deadline(ctx.config.limits.job_deadline_s, at=ctx.deadline_at):
            return await run_batch(inp, inp.images, _rembg_options(inp), ctx)
    return await _run("remove_background", inp, _rembg_options(inp), ctx)


async def pipeline(inp: PipelineInput, ctx: JobContext) -> dict[str, Any]:
    """Remove the background, then upscale."""
    _check_background_model(inp)
    options = {
        **_rembg_options(inp),
        "upscale_model": inp.upscale_model,
        "scale": inp.scale,
        "tile": inp.tile,
    }
    return await _run("pipeline", inp, options, ctx)


def _check_background_model(inp: BackgroundOptions) -> None:
    """An unknown background model (or an upscaler) is refused before the job reads or writes
    anything, naming ``model`` and the valid ones, as an upscale's model is (``_check``): it failed
    inside the step, a failed job with its input stored and its cost unknown."""
    if inp.model is not None:
        from providers.image import weights

        weights.entry(inp.model, field="model", kind="remove_background")


def _rembg_options(inp: BackgroundOptions) -> dict[str, Any]:
    return {
        "remove_background_model": inp.model,
        "alpha_matting": inp.alpha_matting,
        "only_mask": inp.only_mask,
        "background_color": inp.background_color,
    }


def partial_output(state: dict[str, Any]) -> dict[str, Any]:
    """The steps a stopped image job had finished, the step it stopped at, the stored image the
    next would have read and, in a batch, each image's stored result so far."""
    done = state.get("steps_done", [])
    made: dict[str, Any] = {"steps_done": done}
    plan = PLANS.get(state.get("action") or "", ())
    if plan:
        made["stopped_at"] = plan[len(done)] if len(done) < len(plan) else "finalize"
    if done and state.get("current_key"):
        made["image_key"] = state["current_key"]
    if state.get("batch_results"):
        made["results"] = state["batch_results"]
    return made


def _keep_what_was_made(exc: SwarmError) -> None:
    """A job that failed after a step finished keeps it (a pipeline whose upscale failed after its
    background removal): the error carries the finished steps' trace before its own, and, as its
    partial result, the stored image the failed step would have read (``partial_output``)."""
    from graphs.run import attach_partial

    state = getattr(exc, "graph_state", None) or {}
    if state.get("steps_done"):
        attach_partial(exc, partial_output(state))


async def _run(action: str, inp: ImageInput, options: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    # the dispatcher's clock, started with the job: reading and storing the input count too
    with job_deadline(ctx.config.limits.job_deadline_s, at=ctx.deadline_at) as deadline:
        try:
            return await _run_by(deadline, action, inp, options, ctx)
        except InputError as exc:  # an image the door read from a local file: its errors name path
            named_as(exc, inp.source)
            raise


async def _run_by(deadline: Deadline, action: str, inp: ImageInput, options: dict[str, Any],
                  ctx: JobContext) -> dict[str, Any]:
    import anyio

    from graphs.run import run_graph
    from providers.image.imageio import ImageLimits, read_input

    limits = ImageLimits.from_config(ctx.config)
    storage = ctx.providers.storage
    await ctx.progress("input", "reading the image", 0.0)
    started = time.perf_counter()
    try:
        data = await read_input(image_b64=inp.image, url=inp.url, key=inp.key, storage=storage, limits=limits)
    except ProviderError as exc:  # a fetch or a store that failed is a step of the job, as in a batch
        # (bad input is refused as the dispatcher refuses it: no step, no job kept by the MCP door)
        source = inp.source
        step = TraceStep(step="read_input", kind="node", provider=str(getattr(exc, "provider", "") or "image_tools"),
                         latency_ms=(time.perf_counter() - started) * 1000, outcome="error",
                         error_class=type(exc).__name__, detail=redact(f"{source}: {exc}")[:300])
        exc.trace = [*(getattr(exc, "trace", None) or []), step.model_dump()]  # type: ignore[attr-defined]
        exc.field = exc.field or source  # the error names the input it could not read, as a refusal does
        raise
    options = {**options, "output_format": inp.output_format}
    kind, warnings = await anyio.to_thread.run_sync(_check, data, limits, action, options, ctx, deadline)
    input_key = inp.key or f"image_tools/{ctx.job_id}/input.{EXT[kind]}"
    stored_on: list[Any] = []
    if not inp.key:
        with storage_step(storage, "put", input_key) as stored_on:
            await storage.put(input_key, data, overwrite=True)
    graph = image_graph(ctx)
    initial = {"action": action, "job_id": ctx.job_id, "current_key": input_key,
               "options": options, "steps_done": [],
               "trace": [step.model_dump() for step in stored_on]}
    try:
        state = await run_graph(graph, initial, ctx)
    except SwarmError as exc:
        _keep_what_was_made(exc)
        raise
    result = dict(state["result"])
    if warnings:
        result["warnings"] = warnings
    if inp.inline:
        if result["bytes"] <= INLINE_MAX_BYTES:
            result["image_b64"] = base64.b64encode(await storage.get(result["image_key"])).decode()
        else:
            result["inline_omitted"] = f"output is {result['bytes']} bytes; inline limit {INLINE_MAX_BYTES}"
    result["trace"] = state.get("trace", [])
    await ctx.progress("done", f"{result['width']}x{result['height']} {result['format']}", 1.0)
    return result


def _check(data: bytes, limits: Any, action: str, options: dict[str, Any], ctx: JobContext,
           deadline: Deadline) -> tuple[str, list[str]]:
    """Decode-check the input, the output size (its pixels, and its sides against ``output_format``)
    and whether the upscale can finish by ``deadline`` before anything runs or is written. Returns
    the input's format and what the result warns of (its transparency lost to a JPEG)."""
    from providers.image import weights
    from providers.image.imageio import check_output_pixels, check_output_side, open_checked, sniff_format
    img = open_checked(data, limits)
    scale = 1
    if action in ("upscale", "pipeline"):
        settings = ctx.config.providers.image.upscale
        model = options.get("upscale_model")
        field = "model" if action == "upscale" else "upscale_model"
        default = weights.entry(model, field=field, kind="upscale").default_scale if model else None
        scale = options.get("scale") or default or settings.scale
        check_output_pixels(img.size[0], img.size[1], scale, limits)
    check_output_side(img.size[0], img.size[1], scale, options["output_format"])
    if action in ("upscale", "pipeline"):
        upscaler = ctx.providers.image("upscale")
        if isinstance(upscaler, DeadlineAware):
            upscaler.check_deadline(img.size[0], img.size[1], step_config("upscale", options, "png"), deadline)
    return sniff_format(data) or "png", alpha_warnings(img if action == "upscale" else None, options)


def named_as(exc: InputError, source: str) -> None:
    """``exc``, an error of the job's image, naming ``source`` (``path``: the caller gave a local
    file, which the door sent as ``image``) where it named ``image``; its trace and partial result kept."""
    if exc.field == "image" and source != "image":
        exc.args = (f"{source}: {str(exc).removeprefix('image: ')}", *exc.args[1:])
        exc.field = source
