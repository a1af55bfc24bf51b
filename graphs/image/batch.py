"""remove_background on a list of images: each read and checked on its own, then one batch
through the image graph (``remove_background_batch``), one result per image in input order.

A bad image (not base64, not an image, over a limit, a URL that fails) gets an error entry
naming ``images[i].<field>`` and the limit; the other images still run. The job fails only
when no image could be read at all.
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Any

from core.errors import InputError, SwarmError
from graphs.image.graph import image_graph
from graphs.image.inputs import EXT, INLINE_MAX_BYTES, ImageSource, RemoveBackgroundInput

if TYPE_CHECKING:
    from graphs.context import JobContext
    from providers.image.imageio import ImageLimits


async def run_batch(
    inp: RemoveBackgroundInput, sources: list[ImageSource], options: dict[str, Any], ctx: JobContext
) -> dict[str, Any]:
    """``{results, images, succeeded, failed, format, trace}`` for ``sources``."""
    from graphs.image.nodes import BATCH_STEP, alpha_warnings, storage_step
    from graphs.run import run_graph
    from providers.image.imageio import ImageLimits

    limits = ImageLimits.from_config(ctx.config)
    storage = ctx.providers.storage
    await ctx.progress("input", f"reading {len(sources)} images", 0.0)
    # every image is read and checked before anything is written
    read = await asyncio.gather(*(_read_one(i, src, limits, inp.output_format, ctx) for i, src in enumerate(sources)))
    failed = [entry for entry in read if "error" in entry]
    good = [entry for entry in read if "error" not in entry]
    if not good:
        reasons = "; ".join(entry["error"]["message"] for entry in failed[:3])
        raise InputError(f"none of the {len(sources)} images could be read: {reasons}", field="images")
    written = [e for e in good if e["write"]]
    with storage_step(storage, "put", ", ".join(e["key"] for e in written)[:200]) as stored_on:
        await asyncio.gather(*(storage.put(e["key"], e.pop("data"), overwrite=True) for e in written))
    state = await run_graph(
        image_graph(ctx),
        {
            "action": BATCH_STEP,
            "job_id": ctx.job_id,
            "batch": [{"index": e["index"], "key": e["key"]} for e in good],
            "options": {**options, "output_format": inp.output_format},
            "steps_done": [],
            "trace": [step.model_dump() for step in stored_on],
        },
        ctx,
    )
    results = sorted([*failed, *state["result"]["results"]], key=lambda entry: entry["index"])
    trace = [*(_read_step(entry) for entry in failed), *state.get("trace", [])]
    if inp.inline:
        await _inline(results, storage)
    succeeded = sum(1 for entry in results if "image_key" in entry)
    await ctx.progress("done", f"{succeeded} of {len(results)} images", 1.0)
    made = {
        "results": results,
        "images": len(results),
        "succeeded": succeeded,
        "failed": len(results) - succeeded,
        "format": inp.output_format,
        "trace": trace,
    }
    if succeeded and (warnings := alpha_warnings(None, {**options, "output_format": inp.output_format})):
        made["warnings"] = warnings
    return made


def _read_step(entry: dict[str, Any]) -> dict[str, Any]:
    """The trace step of an image that failed before the model: one step per image, always."""
    from providers.base import TraceStep

    error = entry["error"]
    return TraceStep(
        step="read_input", kind="node", provider="image_tools", outcome="error",
        error_class=error["type"], detail=error["message"],
    ).model_dump()


async def _read_one(index: int, source: ImageSource, limits: ImageLimits, output_format: str,
                    ctx: JobContext) -> dict[str, Any]:
    """``{index, key, data, write}``, or ``{index, error}`` naming ``images[index].<field>``: an image
    that cannot be read, or whose output ``output_format`` cannot encode, fails alone."""
    import anyio

    from providers.image.imageio import check_output_side, open_checked, read_input, sniff_format

    field = f"images[{index}].{source.source}"  # images[i].path for a local file a door read
    storage = ctx.providers.storage

    def check(data: bytes) -> None:
        width, height = open_checked(data, limits, field=field).size
        check_output_side(width, height, 1, output_format, field=field)

    try:
        data = await read_input(image_b64=source.image, url=source.url, key=source.key, storage=storage, limits=limits)
        await anyio.to_thread.run_sync(check, data)
    except InputError as exc:
        message = str(exc).removeprefix(f"{exc.field}: ") if exc.field else str(exc)
        return {"index": index, "error": InputError(message, field=field).to_dict()}
    except SwarmError as exc:  # a URL that could not be fetched: this image fails, the others go on
        error = exc.to_dict()
        return {"index": index, "error": {**error, "message": f"{field}: {error['message']}"}}
    if source.key:
        return {"index": index, "key": source.key, "data": data, "write": False}
    key = f"image_tools/{ctx.job_id}/input-{index}.{EXT[sniff_format(data) or 'png']}"
    return {"index": index, "key": key, "data": data, "write": True}


async def _inline(results: list[dict[str, Any]], storage: Any) -> None:
    """Base64 of each output while the running total stays within INLINE_MAX_BYTES."""
    total = 0
    for entry in results:
        if "image_key" not in entry:
            continue
        total += entry["bytes"]
        if total <= INLINE_MAX_BYTES:
            entry["image_b64"] = base64.b64encode(await storage.get(entry["image_key"])).decode()
        else:
            entry["inline_omitted"] = f"outputs pass {INLINE_MAX_BYTES} bytes in all; read image_key"
