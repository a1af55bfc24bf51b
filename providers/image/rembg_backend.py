"""Background removal with U2-Net family ONNX models on onnxruntime, weights from the store.

Why not the ``rembg`` package itself: rembg 2.0.86 requires scipy, scikit-image, pymatting
(numba + llvmlite, ~150 MB, seconds of JIT on first call) and pooch, and any session created
without an explicit model downloads one. What it does for these models is small and is
reproduced here exactly: the same resize, normalisation, min-max scaling of the first output
and Lanczos resize of the mask (``rembg_mask.py``, after ``rembg/sessions/u2netp.py``,
``dis_anime.py``, ``base.py``). Alpha matting is a guided-filter refinement of the mask edges
(He et al.), not pymatting's closed-form matting. The onnxruntime sessions are ``rembg_sessions.py``.

The requested or configured model is tried first; a model that is not pulled (and cannot be
prepared from an installed package) is skipped with a trace note naming its ``swarm models pull``
and ``providers.image.rembg.fallback_models`` follow. When none of them is there, the first one's
own error is the job's: one line, with the command that gets it.

Which path runs a model (``providers.image.rembg.precision``): onnxruntime fp32, or torch bf16/
fp16 on the same weights where the CPU has them and they are faster within a mask floor, measured
once per machine (``rembg_paths.py``); the trace step names the path and why, and its provider
is the engine that ran (``rembg-onnx``, or ``rembg-torch`` on a torch path). ``warm`` (the
RunPod worker, at start) loads the model and makes that decision before the first job.

Batches (``process_batch``): u2netp's ONNX input is fixed at batch 1 (``[1, 3, 320, 320]``), so
images are not stacked; instead one worker per core runs decode, inference (a session with one
intra-op thread; onnxruntime releases the GIL) and cutout/encode of its own image, so the cores
stay busy on inference while the Python-side work of other images overlaps with it. At most one
decoded image per worker is alive at a time; one bad image gives that image an error and the
others their results.

A job that waits for the model another job holds (or, in a batch, for worker slots another batch
holds for more than ``WAIT_REPORT_EVERY_S``) says so to its progress listener.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core import heap
from core.errors import AllProvidersFailed, InputError, ProviderError, ProviderUnavailable, SwarmError
from core.redact import redact
from providers.base import BatchItem, BatchOutcome, ImageAction, ImageConfig, TraceStep
from providers.image.backend import (
    WAIT_REPORT_EVERY_S,
    ReportingLock,
    SingleActionBackend,
    WorkCancelled,
    acquire_reporting,
    run_stoppable,
    stop_flag,
)
from providers.image.deadline import BatchPace, current_deadline
from providers.image.imageio import OPAQUE_FORMATS, ImageLimits, alpha_fate, has_transparency, open_checked
from providers.image.precision import AutoPrecision, CpuInfo, read_cpu_info
from providers.image.rembg_mask import cutout, encode_cutout, infer, predict_mask
from providers.image.rembg_paths import ONNX_ENGINE, MaskNet, PathChooser
from providers.image.rembg_sessions import OrtSessions

if TYPE_CHECKING:
    from PIL import Image

    from core.config import RembgSpec

PROVIDER = ONNX_ENGINE
#: what a job waiting for the model or for batch slots is told the holder does
_REMOVING, _WARMING = "another background removal", "the background remover's warm-up (loading the model, choosing its path)"
_BATCH = "another background-removal batch"


@dataclass(frozen=True)
class RembgSettings:
    """``providers.image.rembg`` plus the models folder."""

    model: str = "isnet-anime"
    fallback_models: tuple[str, ...] = ("u2netp",)
    models_dir: str | None = None
    threads: int | None = None
    providers: tuple[str, ...] = field(default_factory=tuple)
    #: zlib level of PNG output; with the run-length strategy (``rembg_mask.Z_RLE``) level 1 encodes a
    #: 512x512 cutout ~4x faster than Pillow's default (level 6) for ~6% more bytes; same pixels.
    png_compress_level: int = 1
    #: concurrent images in ``process_batch``; default: one per CPU core.
    batch_workers: int | None = None
    #: ``auto`` (measured per machine) or a path of ``rembg_paths.PINNABLE``
    precision: str = "auto"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class RembgRemover(SingleActionBackend):
    """``ImageProvider`` for ``ImageAction.REMOVE_BACKGROUND``; also a ``TracedImageProvider``
    and a ``BatchImageProvider``."""

    action = ImageAction.REMOVE_BACKGROUND
    name = PROVIDER

    def __init__(
        self,
        settings: RembgSettings,
        limits: ImageLimits | None = None,
        *,
        cpu_info: Callable[[], CpuInfo] = read_cpu_info,
        auto_precision: AutoPrecision | None = None,
        paths: dict[str, frozenset[str]] | None = None,
    ) -> None:
        """``cpu_info``, ``auto_precision`` and ``paths`` (the candidates of ``auto``, default
        ``rembg_paths.PATHS``) are for tests: a faked CPU, a cache in a temporary folder."""
        self.settings = settings
        self.limits = limits or ImageLimits()
        self.paths = PathChooser(settings.precision, settings.models_dir, cpu_info, auto_precision, paths,
                                 settings.providers)
        self._sessions = OrtSessions(settings.models_dir, settings.threads, settings.providers)
        self._lock = ReportingLock()
        self.idle = heap.IdleRelease(self._release)
        # batch inferences in flight across all batches: one per worker slot, so two batch jobs
        # at once share the cores instead of doubling the threads on them
        self._batch_slots = threading.BoundedSemaphore(settings.batch_workers or _cores())

    @classmethod
    def from_config(
        cls,
        name: str,
        settings: RembgSpec,
        *,
        models_dir: str | None = None,
        limits: ImageLimits | None = None,
    ) -> RembgRemover:
        """Build from ``providers.image.rembg``; ``models_dir`` and ``limits`` come from
        ``providers.image`` (the caller passes them: they are not in this section)."""
        fields = settings.model_dump()
        fields["fallback_models"] = tuple(fields["fallback_models"])
        return cls(RembgSettings(**fields, models_dir=models_dir), limits)

    # --- sessions ----------------------------------------------------------------------------

    def _net(self, name: str, field: str | None = None, threads: int | None = None) -> tuple[MaskNet, dict[str, Any], str]:
        """The mask network of ``name`` on its chosen path, its settings, and ``device=... path=...``
        for the trace. Call with ``self._lock`` held: under ``auto`` the first call measures."""
        # the weights first: a model not pulled is skipped, never measured (nor its failure cached)
        extra = self._sessions.prepare(name, field)
        net, why = self.paths.net(name, lambda: self._sessions.get(name, field, threads)[0], extra,
                                  lambda: self._sessions.get(name, threads=1)[0], self.predict_mask, threads)
        return net, extra, why

    def _release(self) -> None:
        """What jobs left loaded goes back once none came for a while (``self.idle``): ncnn's pooled
        buffers (~0.8-1.4 GB after a batch), the onnxruntime sessions with their arenas (~0.5 GB),
        then the C heap's free pages. The next job loads the session again (~0.1 s)."""
        self.paths.release()
        self._sessions.release()
        heap.trim()

    def chain(self, config: ImageConfig) -> list[str]:
        """Models to try, in order: the requested/configured one, then the fallbacks."""
        names = [config.model or self.settings.model, *self.settings.fallback_models]
        return list(dict.fromkeys(names))

    # --- inference ---------------------------------------------------------------------------

    #: the model's mask for an image, as rembg computes it (``rembg_mask.predict_mask``)
    predict_mask = staticmethod(predict_mask)

    # --- Warmable (warm: SingleActionBackend) -------------------------------------------------

    def _warm_sync(self) -> None:
        """Load the model a job without ``model`` gets (the first of the chain that loads) on
        its path: under ``auto`` on CPU the path is decided (cached, else measured) here, not
        in the first job. Raises ``_chain_failed``'s error when no model of the chain loads."""
        with self.idle.using():
            self._first_loaded(ImageConfig(), doing=_WARMING)

    # --- ImageProvider (process, process_traced: SingleActionBackend) ------------------------

    def _process_sync(self, image: bytes, config: ImageConfig) -> tuple[bytes, list[TraceStep]]:
        """The first model of the chain that works; one step per model tried. Raises what
        ``_chain_failed`` makes of the attempts when none works."""
        with self.idle.using():
            return self._process_one(image, config)

    def _process_one(self, image: bytes, config: ImageConfig) -> tuple[bytes, list[TraceStep]]:
        rgb, size, alpha = self._decode(image)
        steps: list[TraceStep] = []
        errors: list[ProviderError] = []
        for attempt, name in enumerate(self.chain(config), start=1):
            started = time.perf_counter()
            try:
                with self._lock.hold(_REMOVING):
                    net, extra, why = self._net(name, "model" if name == config.model else None)
                    mask = infer(net, rgb, extra, name, self.paths.engine(name))
            except ProviderError as exc:
                steps.append(self._step(name, attempt, started, "skipped" if _missing(exc) else "error", exc,
                                        provider=self.paths.engine(name)))
                errors.append(exc)
                continue
            made = cutout(rgb, mask, config, alpha)
            data = self._encode(made, config.output_format)
            steps.append(self._step(name, attempt, started, "ok", detail=_detail(why, size, extra, config, made),
                                    provider=self.paths.engine(name)))
            return data, steps
        raise _chain_failed(steps, errors)

    def _decode(self, image: bytes, field: str = "image") -> tuple[Image.Image, tuple[int, int], Image.Image | None]:
        """The image as RGB, its size, and its alpha where it has one that hides any pixel (what
        the cutout keeps hidden: the rembg library drops it, and colour under transparent pixels
        came out visible)."""
        img = open_checked(image, self.limits, field=field)
        img = img.convert("RGBA") if img.mode in ("P", "LA", "PA", "RGBa", "La") else img
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        if alpha is not None and alpha.getextrema()[0] == 255:
            alpha = None  # opaque throughout: nothing to keep hidden
        return img.convert("RGB"), img.size, alpha

    def _encode(self, img: Image.Image, output_format: str) -> bytes:
        return encode_cutout(img, output_format, self.settings.png_compress_level)

    # --- batches -----------------------------------------------------------------------------

    async def process_batch(
        self,
        images: Sequence[bytes],
        action: ImageAction,
        config: ImageConfig,
        *,
        indices: Sequence[int] | None = None,
    ) -> BatchOutcome:
        """Remove the background of every image in ``images`` with one model, concurrently.

        The model is chosen once (the chain as in ``process_traced``); each image then gets its
        own result or error: a bad image does not cost the others theirs. ``indices`` number
        the images in errors and trace steps (``images[i]``; default 0..n-1), for a caller that
        passes on a subset of its input. Raises (``_chain_failed``) only when no model of the
        chain loads.
        """
        self.check_action(action)
        numbers = list(indices) if indices is not None else list(range(len(images)))
        if len(numbers) != len(images):
            raise InputError(f"{len(numbers)} indices for {len(images)} images", field="indices")
        return await run_stoppable(self._batch_sync, list(images), numbers, config)

    def _batch_sync(self, images: list[bytes], numbers: list[int], config: ImageConfig) -> BatchOutcome:
        with self.idle.using():
            return self._batch_all(images, numbers, config)

    def _batch_all(self, images: list[bytes], numbers: list[int], config: ImageConfig) -> BatchOutcome:
        workers = max(1, min(self.settings.batch_workers or _cores(), len(images)))
        # one image at a time uses every core on it; several share the cores one thread each
        threads = None if workers == 1 else max(1, _cores() // workers)
        name, net, extra, why, steps = self._first_loaded(config, threads)
        stop = stop_flag()
        pace = BatchPace(current_deadline())  # near the job's deadline, no image is started
        # the pool's threads do not inherit the context: each image runs in a copy of this one, so
        # it sees the stop event and the progress listener
        context = contextvars.copy_context()

        def one(index: int) -> tuple[BatchItem, TraceStep]:
            if stop is not None and stop.is_set():  # the caller was cancelled: no more images
                raise WorkCancelled(f"cancelled before image {numbers[index]}")
            started = time.perf_counter()
            if late := pace.too_late(f"images[{numbers[index]}]"):
                return BatchItem(numbers[index], error=late), self._step(
                    name, 1, started, "skipped", late, index=numbers[index], provider=self.paths.engine(name))
            begun = pace.clock()
            done = self._batch_one(numbers[index], images[index], net, (name, why), extra, config)
            pace.took(pace.clock() - begun)
            return done

        # map() keeps input order; a worker holds one decoded image at a time
        with ThreadPoolExecutor(workers, thread_name_prefix="rembg-batch") as pool:
            done = list(pool.map(lambda index: context.copy().run(one, index), range(len(images))))
        return BatchOutcome([item for item, _ in done], [*steps, *(step for _, step in done)])

    def _first_loaded(
        self, config: ImageConfig, threads: int | None = None, doing: str = _REMOVING
    ) -> tuple[str, MaskNet, dict[str, Any], str, list[TraceStep]]:
        """The first model of the chain that loads: its name, net, settings and trace text, and
        a step for each model skipped before it. Raises ``_chain_failed``'s error when none loads.
        ``doing`` is what a job waiting for the model meanwhile is told."""
        steps: list[TraceStep] = []
        errors: list[ProviderError] = []
        for attempt, name in enumerate(self.chain(config), start=1):
            started = time.perf_counter()
            try:
                with self._lock.hold(doing):
                    net, extra, why = self._net(name, "model" if name == config.model else None, threads)
            except ProviderError as exc:
                steps.append(self._step(name, attempt, started, "skipped" if _missing(exc) else "error", exc,
                                        provider=self.paths.engine(name)))
                errors.append(exc)
                continue
            return name, net, extra, why, steps
        raise _chain_failed(steps, errors)

    def _batch_one(
        self, index: int, image: bytes, net: MaskNet, chosen: tuple[str, str], extra: dict[str, Any],
        config: ImageConfig,
    ) -> tuple[BatchItem, TraceStep]:
        (name, why), started, provider = chosen, time.perf_counter(), self.paths.engine(chosen[0])
        try:
            rgb, size, alpha = self._decode(image, field=f"images[{index}]")
            # a slot another batch holds for long is a wait worth telling; a short one is sharing
            acquire_reporting(lambda timeout: self._batch_slots.acquire(timeout=timeout), lambda: _BATCH,
                              first_after_s=WAIT_REPORT_EVERY_S)
            try:
                mask = infer(net, rgb, extra, name, provider)
            finally:
                self._batch_slots.release()
            made = cutout(rgb, mask, config, alpha)
            data = self._encode(made, config.output_format)
        except (InputError, ProviderError) as exc:
            step = self._step(name, 1, started, "error", exc, index=index, provider=provider)
            return BatchItem(index, error=exc), step
        detail = f"index={index} {_detail(why, size, extra, config, made)}"
        return BatchItem(index, data=data), self._step(name, 1, started, "ok", detail=detail, provider=provider)

    @staticmethod
    def _step(
        name: str,
        attempt: int,
        started: float,
        outcome: str,
        exc: SwarmError | None = None,
        *,
        detail: str = "",
        index: int | None = None,
        provider: str = PROVIDER,
    ) -> TraceStep:
        """One attempt of one model on ``provider`` (the engine that ran): ``detail`` on success,
        the redacted error on failure (a ``ProviderError``'s without its "who": the step names the
        provider and the model)."""
        return TraceStep(
            step="remove_background",
            kind="image",
            provider=provider,
            model=name,
            attempt=attempt,
            latency_ms=(time.perf_counter() - started) * 1000,
            cost_usd=0.0,  # a model on this machine: no provider bills the call
            outcome=outcome,  # type: ignore[arg-type]
            error_class=type(exc).__name__ if exc else None,
            detail=(f"index={index} " if index is not None and exc else "") + redact(_said(exc)) if exc else detail,
        )


def _detail(why: str, size: tuple[int, int], extra: dict[str, Any], config: ImageConfig, made: Image.Image) -> str:
    # a cut-out's transparency is said only where a format without it flattened it (the usual case
    # keeps it, and checking each output's alpha costs a pass over its pixels)
    lost = config.output_format in OPAQUE_FORMATS and has_transparency(made)
    return (
        f"{why} size={size[0]}x{size[1]} input={extra.get('input_size')}"
        f" alpha_matting={config.alpha_matting} only_mask={config.only_mask}"
        + (f" alpha={alpha_fate(True, config.output_format)}" if lost else "")
    )


def _missing(exc: ProviderError) -> bool:
    return isinstance(exc, ProviderUnavailable) and "swarm models pull" in str(exc)


def _said(exc: SwarmError) -> str:
    return exc.message if isinstance(exc, ProviderError) else str(exc)


def _chain_failed(steps: list[TraceStep], errors: list[ProviderError]) -> ProviderError:
    """The error of a chain where no model loaded. When each model is only missing (not pulled,
    nothing to prepare it from, a corrupt file), the first one's own: one line with the command
    that gets it. ``AllProvidersFailed`` repeated that line inside a list of attempts (the MCP
    text and the command line then listed the attempts again), and its type read as a failure of
    the models. The attempts stay in the job's trace (``trace``, as ``graphs.image.nodes`` adds a
    storage step). Anything else (a model that failed to load) is ``AllProvidersFailed``."""
    if errors and all(_missing(exc) for exc in errors):
        first = errors[0]
        first.trace = [step.model_dump() for step in steps]  # type: ignore[attr-defined]
        return first
    return AllProvidersFailed("remove_background", steps)
