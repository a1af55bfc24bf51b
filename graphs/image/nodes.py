"""Nodes of the image graph. Each reads ``current_key`` from storage, runs one provider and
writes its output under ``image_tools/<job_id>/<step>.<ext>`` (overwrite: a resumed node
writes the same key again). The batch node reads every key of ``batch`` and writes
``image_tools/<job_id>/<step>-<index>.<ext>``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from core.errors import InputError, ProviderError, SwarmError
from core.redact import redact
from core.storage_keys import public_url
from graphs.image.state import ImageState
from graphs.progress import emit
from providers.base import (
    BatchImageProvider,
    ImageAction,
    ImageConfig,
    ImageProvider,
    StorageProvider,
    TracedImageProvider,
    TraceStep,
    listen_to_storage,
)
from providers.image.backend import listen_to_progress
from providers.image.imageio import OPAQUE_FORMATS, encoded_size, has_transparency, transparency_lost


@contextmanager
def storage_step(storage: StorageProvider, op: str, key: str, before: Sequence[TraceStep] = ()) -> Iterator[list[TraceStep]]:
    """A storage call that fails leaves its step in the job's trace (backend, key, latency): the
    error names the store, the trace shows where in the job it stopped. A call that succeeds adds
    only what a storage chain told (``providers.storage.chain``: the store that failed and the one
    that took over), in the list this yields, for the node's trace; the image steps already carry
    the job's latency. ``before``: the steps its node ran before it, which the trace keeps too (a
    result that could not be stored hid the model step that made it)."""
    started = time.perf_counter()
    told: list[TraceStep] = []
    try:
        with listen_to_storage(told.append):
            yield told
    except SwarmError as exc:
        step = TraceStep(step=f"storage.{op}", kind="storage", provider=str(getattr(storage, "name", "") or type(storage).__name__),
                         latency_ms=(time.perf_counter() - started) * 1000, outcome="error",
                         error_class=type(exc).__name__, detail=redact(f"{key}: {exc}")[:300])
        exc.trace = [*(getattr(exc, "trace", None) or []), *(s.model_dump() for s in before),  # type: ignore[attr-defined]
                     *(s.model_dump() for s in told), step.model_dump()]
        raise


@contextmanager
def provider_step(step: str, provider: ImageProvider, model: str | None) -> Iterator[None]:
    """A provider call that fails leaves its step in the job's trace (who, error class, latency;
    why is the job's error, said once), unless its error already holds rows of the step (a
    chain's skips, ``AllProvidersFailed``'s attempts): the trace of a pipeline stopped at its
    second step otherwise ended at the first."""
    started = time.perf_counter()
    try:
        yield
    except SwarmError as exc:
        rows = [*(getattr(exc, "trace", None) or []), *(getattr(exc, "attempts", None) or [])]
        if not any(_step_of(row) == step for row in rows):
            row = TraceStep(step=step, kind="image", provider=str(getattr(exc, "provider", "") or _name(provider)),
                            model=getattr(exc, "model", None) or model, outcome="error", error_class=type(exc).__name__,
                            latency_ms=(time.perf_counter() - started) * 1000)
            exc.trace = [*(getattr(exc, "trace", None) or []), row.model_dump()]  # type: ignore[attr-defined]
        raise


def _step_of(row: Any) -> Any:
    return row.get("step") if isinstance(row, dict) else getattr(row, "step", None)


def _name(provider: Any) -> str:
    return str(getattr(provider, "name", "") or type(provider).__name__)


#: the node that runs remove_background on every image of ``batch``
BATCH_STEP = "remove_background_batch"

#: steps each action runs, in order; the last one writes the requested output format.
PLANS: dict[str, tuple[str, ...]] = {
    "upscale": ("upscale",),
    "remove_background": ("remove_background",),
    "pipeline": ("remove_background", "upscale"),
    BATCH_STEP: (BATCH_STEP,),
}
_STEP_OPTIONS = {
    "upscale": ("scale", "tile"),
    "remove_background": ("alpha_matting", "only_mask", "background_color"),
}


def output_key(job_id: str, step: str, output_format: str, index: int | None = None) -> str:
    """Where ``step`` stores its output (``<step>-<index>`` for one image of a batch)."""
    name = step if index is None else f"{step}-{index}"
    return f"image_tools/{job_id}/{name}.{'jpg' if output_format == 'jpeg' else output_format}"


def step_config(step: str, options: dict[str, Any], fmt: Any) -> ImageConfig:
    """The ``ImageConfig`` of ``step`` from the job's options."""
    return ImageConfig(
        model=options.get(f"{step}_model"),
        output_format=fmt,
        **{k: options[k] for k in _STEP_OPTIONS[step] if options.get(k) is not None},
    )


def alpha_warnings(img: Any, options: dict[str, Any]) -> list[str]:
    """The result's warning when its ``output_format`` has no transparency and the output would have
    had some: an upscale's ``img`` that hides pixels, or a cut-out (``img`` None) that is not a mask
    and not on an opaque ``background_color``."""
    fmt = options.get("output_format", "png")
    if fmt not in OPAQUE_FORMATS:
        return []
    if img is not None:
        see_through = has_transparency(img)
    else:
        background = options.get("background_color")
        see_through = not options.get("only_mask") and (background is None or background[3] < 255)
    return [transparency_lost(fmt)] if see_through else []


def make_step(
    step: str, provider_for: Callable[[str], ImageProvider], storage: StorageProvider
) -> Callable[[ImageState], Awaitable[dict[str, Any]]]:
    """A node running ``step`` (upscale or remove_background) with the provider for it."""

    async def node(state: ImageState) -> dict[str, Any]:
        plan = PLANS[state["action"]]
        options = state.get("options", {})
        last = plan[-1] == step
        # an intermediate image keeps its alpha: PNG whatever the final format
        fmt = options.get("output_format", "png") if last else "png"
        config = step_config(step, options, fmt)
        index = plan.index(step)
        emit(step, f"{step} ({index + 1}/{len(plan)})", index / len(plan))
        started = time.perf_counter()
        with storage_step(storage, "get", state["current_key"]) as read_from:
            data = await storage.get(state["current_key"])
        provider = provider_for(step)
        with (listen_to_progress(_tile_progress(step, index, len(plan)), _messages(step, index, len(plan))),
              provider_step(step, provider, config.model)):
            if isinstance(provider, TracedImageProvider):
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
        with storage_step(storage, "put", key, [*read_from, *steps]) as stored_on:
            await storage.put(key, out, _content_type(fmt), overwrite=True)
        return {"current_key": key, "current_meta": {"key": key, **_described(out)}, "steps_done": [step],
                "trace": [s.model_dump() for s in (*read_from, *steps, *stored_on)]}

    return node


def _tile_progress(step: str, index: int, steps: int) -> Callable[[int, int], None]:
    """A progress listener for step ``index`` of ``steps``: "upscale (1/1): tile 3/12". It runs
    on the provider's worker thread (``emit`` hands the event to the loop); at most one event per
    percent of the step, so a run of thousands of small tiles does not flood the client."""

    def on_progress(done: int, total: int) -> None:
        if done == 0 or done == total or done * 100 // total != (done - 1) * 100 // total:
            emit(step, f"{step} ({index + 1}/{steps}): tile {done}/{total}", (index + done / total) / steps)

    return on_progress


def _messages(step: str, index: int | None = None, steps: int = 1) -> Callable[[str], None]:
    """A message listener for step ``index`` of ``steps`` (None: a batch): "upscale (1/1): waiting
    for another upscale to finish (5 s)". No fraction: the work has not moved."""
    prefix = step if index is None else f"{step} ({index + 1}/{steps})"

    def on_message(message: str) -> None:
        emit(step, f"{prefix}: {message}")

    return on_message


def make_batch_step(
    step: str, provider_for: Callable[[str], ImageProvider], storage: StorageProvider
) -> Callable[[ImageState], Awaitable[dict[str, Any]]]:
    """A node running ``step`` on every image of ``batch`` in one provider call.

    A ``BatchImageProvider`` gets all images at once; another one gets them in turn.
    Each image ends as its stored output or its own error; the others go on.
    """

    async def node(state: ImageState) -> dict[str, Any]:
        options = state.get("options", {})
        fmt = options.get("output_format", "png")
        config = step_config(step, options, fmt)
        batch = state["batch"]
        emit(step, f"{step} on {len(batch)} images", 0.0)
        with storage_step(storage, "get", ", ".join(entry["key"] for entry in batch)[:200]) as read_from:
            images = await asyncio.gather(*(storage.get(entry["key"]) for entry in batch))
        indices = [entry["index"] for entry in batch]
        provider = provider_for(step)
        with listen_to_progress(messages=_messages(step)):
            if isinstance(provider, BatchImageProvider):
                outcome = await provider.process_batch(images, ImageAction(step), config, indices=indices)
                outputs = [(item.index, item.data, item.error) for item in outcome.items]
                steps = outcome.steps
            else:
                outputs, steps = await _one_by_one(provider, step, images, indices, config)
        results = []
        stored_on: list[TraceStep] = []
        for index, data, error in outputs:
            if error is not None or data is None:
                results.append({"index": index, "error": _error(error)})
                continue
            key = output_key(state["job_id"], step, fmt, index)
            try:
                with listen_to_storage(stored_on.append):
                    await storage.put(key, data, _content_type(fmt), overwrite=True)
            except ProviderError as exc:  # no store took it: this image fails, the others keep theirs
                results.append({"index": index, "error": _error(exc)})
                stored_on.append(TraceStep(step="storage.put", kind="storage", provider=_name(storage),
                                           outcome="error", error_class=type(exc).__name__,
                                           detail=redact(f"{key}: {exc}")[:300]))
                continue
            width, height = encoded_size(data)
            results.append(
                {"index": index, "image_key": key, "width": width, "height": height, "format": fmt, "bytes": len(data)}
            )
        return {"batch_results": results, "steps_done": [BATCH_STEP],
                "trace": [s.model_dump() for s in (*read_from, *steps, *stored_on)]}

    return node


async def _one_by_one(
    provider: ImageProvider, step: str, images: list[bytes], indices: list[int], config: ImageConfig
) -> tuple[list[tuple[int, bytes | None, SwarmError | None]], list[TraceStep]]:
    outputs: list[tuple[int, bytes | None, SwarmError | None]] = []
    steps: list[TraceStep] = []
    for index, data in zip(indices, images, strict=True):
        started = time.perf_counter()
        error: SwarmError | None = None
        try:
            outputs.append((index, await provider.process(data, ImageAction(step), config), None))
        except (InputError, ProviderError) as exc:
            outputs.append((index, None, exc))
            error = exc
        steps.append(TraceStep(
            step=step, kind="image", provider=type(provider).__name__, outcome="error" if error else "ok",
            error_class=type(error).__name__ if error else None,
            latency_ms=(time.perf_counter() - started) * 1000, detail=f"index={index}",
        ))
    return outputs, steps


def _error(exc: SwarmError | None) -> dict[str, Any]:
    if exc is None:
        return {"type": "ProviderError", "message": "the provider returned no image"}
    return exc.to_dict()


async def finalize_batch(state: ImageState, storage: StorageProvider) -> dict[str, Any]:
    """Add each stored output's resource and url."""
    described = []
    for entry in state.get("batch_results", []):
        if "image_key" in entry:
            key = entry["image_key"]
            entry = {**entry, "resource": f"swarm://artifacts/{key}", **(await public_url(storage, key))}
        described.append(entry)
    return {"result": {"results": described}}


async def finalize(state: ImageState, storage: StorageProvider) -> dict[str, Any]:
    """Describe the output: key, url, size, format."""
    key = state["current_key"]
    described = state.get("current_meta") or {}
    if described.get("key") != key:  # a checkpoint of an earlier version: read it back
        described = _described(await storage.get(key))
    fmt = state.get("options", {}).get("output_format", "png")
    return {
        "result": {
            "image_key": key,
            "resource": f"swarm://artifacts/{key}",
            **(await public_url(storage, key)),
            "width": described["width"],
            "height": described["height"],
            "format": fmt,
            "bytes": described["bytes"],
        }
    }


def _described(data: bytes) -> dict[str, int]:
    """An encoded image's size and length (its header only is read). ``finalize`` read every
    result back from storage for these: a whole second download of an upscale from S3."""
    width, height = encoded_size(data)  # not Image.open: Pillow's limit is below max_output_pixels
    return {"width": width, "height": height, "bytes": len(data)}


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
