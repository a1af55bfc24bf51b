"""Nodes of the image graph. Each reads ``current_key`` from storage, runs one provider and
writes its output under ``image_tools/<job_id>/<step>.<ext>`` (overwrite: a resumed node
writes the same key again)."""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.config import get_stream_writer

from graphs.image.state import ImageState
from providers.base import ImageAction, ImageConfig, StorageProvider, TraceStep
from swarm.redact import redact

#: steps each action runs, in order; the last one writes the requested output format.
PLANS: dict[str, tuple[str, ...]] = {
    "upscale": ("upscale",),
    "remove_background": ("remove_background",),
    "pipeline": ("remove_background", "upscale"),
}
_STEP_OPTIONS = {
    "upscale": ("scale", "tile"),
    "remove_background": ("alpha_matting", "only_mask", "background_color"),
}


def output_key(job_id: str, step: str, output_format: str) -> str:
    return f"image_tools/{job_id}/{step}.{'jpg' if output_format == 'jpeg' else output_format}"


def _progress(stage: str, message: str, fraction: float | None) -> None:
    try:
        get_stream_writer()({"stage": stage, "message": message, "fraction": fraction})
    except RuntimeError:  # not running inside a graph stream (direct node call in a test)
        return


def make_step(
    step: str, provider_for: Callable[[str], Any], storage: StorageProvider
) -> Callable[[ImageState], Awaitable[dict[str, Any]]]:
    """A node running ``step`` (upscale or remove_background) with the provider for it."""

    async def node(state: ImageState) -> dict[str, Any]:
        plan = PLANS[state["action"]]
        options = state.get("options", {})
        last = plan[-1] == step
        # an intermediate image keeps its alpha: PNG whatever the final format
        fmt = options.get("output_format", "png") if last else "png"
        config = ImageConfig(
            model=options.get(f"{step}_model"),
            output_format=fmt,
            **{k: options[k] for k in _STEP_OPTIONS[step] if options.get(k) is not None},
        )
        index = plan.index(step)
        _progress(step, f"{step} ({index + 1}/{len(plan)})", index / len(plan))
        started = time.perf_counter()
        data = await storage.get(state["current_key"])
        provider = provider_for(step)
        if hasattr(provider, "process_traced"):
            out, steps = await provider.process_traced(data, ImageAction(step), config)
        else:
            out = await provider.process(data, ImageAction(step), config)
            steps = [
                TraceStep(
                    step=step,
                    kind="image",
                    provider=type(provider).__name__,
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            ]
        key = output_key(state["job_id"], step, fmt)
        await storage.put(key, out, _content_type(fmt), overwrite=True)
        return {"current_key": key, "steps_done": [step], "trace": [s.model_dump() for s in steps]}

    return node


async def finalize(state: ImageState, storage: StorageProvider) -> dict[str, Any]:
    """Describe the output: key, url, size, format."""
    from PIL import Image

    key = state["current_key"]
    data = await storage.get(key)
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    fmt = state.get("options", {}).get("output_format", "png")
    url: str | None = await storage.url(key)
    note = None
    if url and redact(url) != url:
        # A presigned URL is a credential: results, traces and logs never carry one.
        url, note = None, f"read swarm://artifacts/{key}, or presign the key with your own credentials"
    return {
        "result": {
            "image_key": key,
            "resource": f"swarm://artifacts/{key}",
            "url": url,
            **({"url_note": note} if note else {}),
            "width": width,
            "height": height,
            "format": fmt,
            "bytes": len(data),
        }
    }


def _content_type(fmt: str) -> str:
    return {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}[fmt]


def first_step(state: ImageState) -> str:
    return PLANS[state["action"]][0]


def after(step: str) -> Callable[[ImageState], str]:
    """Router: the next step of this action's plan, or finalize."""

    def route(state: ImageState) -> str:
        plan = PLANS[state["action"]]
        index = plan.index(step)
        return plan[index + 1] if index + 1 < len(plan) else "finalize"

    return route
