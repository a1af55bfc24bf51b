"""Real-ESRGAN upscaling on torch, with weights from the model store.

CPU by default, CUDA when present. ``precision: auto`` (the default) runs the fastest path within
the accuracy floor, measured once per machine and model (``precision.py``): on CPU bf16 or fp16
autocast where the CPU has it, and the same weights through the ``ncnn`` package (fp32, and bf16
storage) where it and the weights package are installed (``ncnn_runner.py``), else fp32; on CUDA strict fp32, fp16 and bf16
where the GPU runs them (``gpu.py``). ``fp32`` on CUDA is IEEE fp32: TF32 convolutions are off;
``fp32``, ``bf16`` or ``fp16`` pin one; ``warm`` (the RunPod worker, at start) loads the model and
makes that decision before the first job. Tiled with overlap so memory is bounded; the alpha channel is upscaled
separately (Lanczos) and put back; a scale the network lacks is reached by resampling its
native x4 output. torch is imported on first use only (``upscale_torch.py``: torch, its threads and versions,
the precision deciders, one tile's inference).

One inference at a time (the intra-op pool is shared): a job that waits for another says so to its
progress listener, and so does one measuring its precision. An upscale that cannot finish before
the job's deadline is refused (``deadline.py``): up front (before it waits for the model and once
it holds it) where even twice the speed its earlier upscales ran at would not do, and by its own
tiles' speed, after its first tiles and every few tiles after, where it falls behind.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import InputError, ProviderUnavailable
from providers.base import ImageAction, ImageConfig, TraceStep
from providers.image import gpu
from providers.image.backend import ReportingLock, SingleActionBackend, checkpoint
from providers.image.deadline import (
    WARM_TILES,
    Deadline,
    Job,
    Speeds,
    TileWatch,
    check_fits,
    current_deadline,
    work_pixels,
)
from providers.image.imageio import (
    ImageLimits,
    alpha_fate,
    check_output_pixels,
    encode,
    open_checked,
    to_rgb_alpha,
)
from providers.image.ncnn_runner import CANDIDATES as NCNN_CANDIDATES
from providers.image.ncnn_runner import NcnnNets
from providers.image.ncnn_runner import files_for as ncnn_files_for
from providers.image.precision import (
    CPU_CANDIDATES,
    AutoPrecision,
    CpuInfo,
    decisions_file,
    describe_pinned,
    read_cpu_info,
)
from providers.image.upscale_torch import (  # noqa: F401 - re-exported: the torch side lives there
    CPU_TIMING_SIZE,
    MIN_SIDE,
    PROVIDER,
    REVISION,
    cpu_auto_precision,
    cuda_auto_precision,
    grown_to_min_side,
    infer_fn,
    load_torch,
    set_threads,
    versions,
)

if TYPE_CHECKING:
    import numpy as np

    from core.config import UpscaleSpec

#: the provider a trace step names: the engine that ran (torch unless the ncnn candidate was chosen)
_ENGINE = dict.fromkeys(NCNN_CANDIDATES, "realesrgan-ncnn")
_MODEL_CACHE_SIZE = 2
#: where a speed figure comes from, as a refusal names it
_MEASURED_RUN = "measured on an earlier upscale in this process"
#: what a job waiting for the model is told the holder does
_UPSCALING, _WARMING = "another upscale", "the upscaler's warm-up (loading the model, choosing its precision)"


@dataclass(frozen=True)
class UpscaleSettings:
    """``providers.image.upscale`` plus the models folder."""

    model: str = "realesrgan-anime-6b"
    scale: int = 4
    tile: int = 256
    tile_pad: int = 16
    device: str = "auto"
    precision: str = "auto"
    models_dir: str | None = None


class RealESRGANUpscaler(SingleActionBackend):
    """``ImageProvider`` (and ``TracedImageProvider``) for ``ImageAction.UPSCALE``."""

    action = ImageAction.UPSCALE
    name = PROVIDER

    def __init__(
        self,
        settings: UpscaleSettings,
        limits: ImageLimits | None = None,
        *,
        cpu_info: Callable[[], CpuInfo] = read_cpu_info,
        auto_precision: AutoPrecision | None = None,
        cuda_precision: AutoPrecision | None = None,
        table: dict[str, frozenset[str]] | None = None,
    ) -> None:
        """``cpu_info``, ``auto_precision`` and ``table`` (the candidates of ``auto`` on CPU; default
        ``CPU_CANDIDATES`` plus ``ncnn`` where it and the model's ncnn files are installed) are
        for tests: a faked CPU, a cache in a temporary folder, a forced candidate set.
        ``cuda_precision`` decides on CUDA (default: one over ``gpu.read_gpu_info``, made when
        first needed, its decisions in the same file)."""
        self.settings = settings
        self.limits = limits or ImageLimits()
        self.cpu_info = cpu_info
        self.auto_precision = auto_precision or cpu_auto_precision(decisions_file(), cpu_info)
        self._cuda_precision = cuda_precision
        self.table = table
        self._ncnn = NcnnNets()
        self._models: OrderedDict[tuple[str, str, str], tuple[Any, int]] = OrderedDict()
        self._lock = ReportingLock()  # one inference at a time: the intra-op pool is shared
        #: the fastest speed per model this process's upscales ran at (``deadline.Speeds``)
        self.speeds = Speeds()

    @classmethod
    def from_config(
        cls,
        name: str,
        settings: UpscaleSpec,
        *,
        models_dir: str | None = None,
        limits: ImageLimits | None = None,
    ) -> RealESRGANUpscaler:
        """Build from ``providers.image.upscale``; ``models_dir`` and ``limits`` come from
        ``providers.image`` (the caller passes them: they are not in this section)."""
        return cls(UpscaleSettings(**settings.model_dump(), models_dir=models_dir), limits)

    # --- model handling ----------------------------------------------------------------------

    def device(self) -> str:
        """``cuda`` or ``cpu``, from ``providers.image.upscale.device`` and what torch sees (torch is not
        imported for ``cpu``, nor for ``auto`` on a Linux machine without a GPU driver)."""
        wanted = self.settings.device
        if wanted == "cpu" or (wanted == "auto" and not gpu.driver_present()):
            return "cpu"
        torch = load_torch()
        if wanted == "cuda" and not torch.cuda.is_available():
            raise ProviderUnavailable(PROVIDER, "device cuda requested but torch sees no CUDA GPU; set"
                                      " providers.image.upscale.device to auto (the GPU where torch sees one) or cpu")
        return "cuda" if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()) else "cpu"

    def precision(self, name: str, device: str) -> tuple[str, str]:
        """``(precision, trace text)`` for model ``name`` on ``device``: pinned in config, or
        (``auto``) the measured choice, of ``CUDA_CANDIDATES`` on CUDA. Call with the lock held:
        a measurement runs the model."""
        pinned = self.settings.precision
        if pinned != "auto":
            if device == "cuda":
                return pinned, gpu.describe_pinned(pinned, gpu.read_gpu_info(load_torch()))
            return pinned, describe_pinned(pinned, self.cpu_info())

        measured: list[str] = []

        def run(precision: str, image: np.ndarray) -> np.ndarray:
            # ncnn's and CUDA fp16 (half weights) are models of their own; the rest run the fp32 one
            measured.append(precision)
            own = precision in NCNN_CANDIDATES or precision == "fp16"
            net = self._model(name, device, precision if own else "fp32")[0]
            return self._infer_fn(net, device, precision)(image)

        if device == "cuda":  # fp16, what auto ran before it measured, where the lock is held too long
            table, auto, fallback = gpu.CUDA_CANDIDATES, self.cuda_precision(), "fp16"
        else:
            table, auto, fallback = (self.table if self.table is not None else self._candidates(name)), self.auto_precision, None
        decision = auto.decide(name, versions(table), run, table=table, fallback=fallback)
        if measured:
            self._forget_unchosen(name, device, decision.precision)
        return decision.precision, decision.describe()

    def _forget_unchosen(self, name: str, device: str, precision: str) -> None:
        """After a measurement, the candidates not chosen free what they loaded: their ncnn nets and
        torch models (anime-6B on the AMD EPYC: 440 -> 355 MB once the pools were emptied)."""
        self._ncnn.keep(name, precision if precision in NCNN_CANDIDATES else None)
        wanted = None if precision in NCNN_CANDIDATES else ("fp16" if precision == "fp16" and device == "cuda" else "fp32")
        for key in [key for key in self._models if key[:2] == (name, device) and key[2] != wanted]:
            del self._models[key]

    def cuda_precision(self) -> AutoPrecision:
        """``precision: auto`` on CUDA: the GPU's own decisions (``gpu.py``), with GPU-sized probes."""
        if self._cuda_precision is None:
            self._cuda_precision = cuda_auto_precision(decisions_file())
        return self._cuda_precision

    @staticmethod
    def _candidates(name: str) -> dict[str, frozenset[str]]:
        """``CPU_CANDIDATES``, plus ``ncnn`` and ``ncnn-bf16`` (any CPU) where ncnn and ``name``'s
        ncnn files are installed."""
        if not ncnn_files_for(name):
            return dict(CPU_CANDIDATES)
        return {**CPU_CANDIDATES, **dict.fromkeys(NCNN_CANDIDATES, frozenset())}

    def _model(self, name: str, device: str, precision: str) -> tuple[Any, int]:
        from providers.image import pull as weights_pull
        from providers.image import weights
        spec = weights.entry(name)
        if spec.kind != "upscale":
            raise InputError(f"{name!r} is not an upscaling model", field="model")
        if precision in NCNN_CANDIDATES:  # the same weights through ncnn: its infer function is the "network"
            net = self._ncnn.net(spec.name, precision)
            return net.infer, net.native
        # CUDA fp16 halves the weights; on CPU bf16 and fp16 are autocast on fp32 weights
        weights_dtype = "fp16" if precision == "fp16" and device == "cuda" else "fp32"
        key = (spec.name, device, weights_dtype)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        # prepared from the installed weights package on first use; a URL-only model names its pull
        path = weights_pull.ensure(spec.name, self.settings.models_dir)
        torch = load_torch()
        set_threads(torch)
        from providers.image import archs

        network, _ = archs.load(str(path), device=device)
        if weights_dtype == "fp16":
            network = network.half()
        # NHWC lets oneDNN (CPU) and cuDNN tensor cores (CUDA fp16) pick their faster kernels
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        native = int(getattr(network, "native_scale", 4))
        self._models[key] = (network, native)
        while len(self._models) > _MODEL_CACHE_SIZE:
            self._models.popitem(last=False)
        return network, native

    def _infer_fn(self, network: Any, device: str, precision: str) -> Any:
        return infer_fn(network, device, precision)

    # --- Warmable (warm: SingleActionBackend) -------------------------------------------------

    def _warm_sync(self) -> None:
        """Load the configured model at the precision a job runs it at: under ``auto`` the
        decision (cached, else measured, on CPU or GPU) is made here, not in the first job; a
        pinned precision just loads."""
        from providers.image import weights

        name = weights.entry(self.settings.model).name
        device = self.device()
        # what measuring the ncnn candidates left in their pools goes back, unless a job comes
        with self._lock.hold(_WARMING), self._ncnn.idle.using():
            precision, _ = self.precision(name, device)
            self._model(name, device, precision)

    # --- DeadlineAware ------------------------------------------------------------------------

    def check_deadline(self, width: int, height: int, config: ImageConfig, deadline: Deadline) -> None:
        """``InputError`` (field ``image``) when a ``width`` x ``height`` input cannot be upscaled
        before ``deadline`` at the speed an earlier upscale here ran at; the image action calls it
        before anything is written."""
        name, _ = self._resolve(config)
        check_fits(self._job(name, width, height, config), self.speeds.get(name), deadline)

    def _job(self, name: str, width: int, height: int, config: ImageConfig) -> Job:
        tile = self.settings.tile if config.tile is None else config.tile
        return Job(name, width, height, tile, self.settings.tile_pad)

    def _resolve(self, config: ImageConfig) -> tuple[str, int]:
        """The model's name and the scale of ``config`` (``InputError`` for an unknown model or scale)."""
        from providers.image import weights

        spec = (
            weights.entry(config.model, field="model", kind="upscale")
            if config.model
            else weights.entry(self.settings.model)
        )
        scale = config.scale or (spec.default_scale if config.model else None) or self.settings.scale
        if scale not in (1, 2, 3, 4):
            raise InputError(f"scale {scale} is not supported; valid: 2, 3, 4", field="scale")
        return spec.name, scale

    # --- ImageProvider (process, process_traced: SingleActionBackend) ------------------------

    def _process_sync(self, image: bytes, config: ImageConfig) -> tuple[bytes, list[TraceStep]]:
        """One step: model, device, precision, tiles, sizes, ms."""
        started = time.perf_counter()
        name, scale = self._resolve(config)
        img = open_checked(image, self.limits)
        width, height = img.size
        check_output_pixels(width, height, scale, self.limits)
        device = self.device()
        job, deadline = self._job(name, width, height, config), current_deadline()
        check_fits(job, self.speeds.get(name), deadline)  # before waiting for the model
        rgb, alpha = to_rgb_alpha(img)
        tile = job.tile
        # ncnn's pools hold a tile's buffers (~0.8 GB at tile 256), and glibc the freed pages,
        # until emptied: once no upscale came for a while (core.heap.IDLE_RELEASE_S)
        with self._lock.hold(_UPSCALING), self._ncnn.idle.using():
            precision, why = self.precision(name, device)
            network, native = self._model(name, device, precision)
            check_output_pixels(width, height, native, self.limits)
            check_fits(job, self.speeds.get(name), deadline)  # a wait or a measurement took time; a speed may be known now
            out, tiles = self._run(rgb, network, native, (device, precision), job, TileWatch(job, job.tiles(), deadline))
        result = self._finish(out, alpha, (round(width * scale), round(height * scale)), grey=img.mode in ("L", "LA"))
        data = encode(result, config.output_format)
        step = TraceStep(
            step="upscale",
            kind="image",
            provider=_ENGINE.get(precision, PROVIDER),
            model=name,
            latency_ms=(time.perf_counter() - started) * 1000,
            cost_usd=0.0,  # a model on this machine: no provider bills the call
            detail=(
                f"device={device} precision={why} tiles={tiles} tile={tile} in={width}x{height}"
                f" out={result.size[0]}x{result.size[1]} scale={scale} native={native}"
                f" alpha={alpha_fate(alpha is not None, config.output_format)}"
            ),
        )
        return data, [step]

    def _run(
        self, rgb: Any, network: Any, native: int, path: tuple[str, str], job: Job, watch: TileWatch
    ) -> tuple[Any, int]:
        """Run ``job``'s tiles on ``path`` (device, precision); its speed is noted in ``speeds``."""
        import numpy as np

        from providers.image.tiling import run_tiled

        (device, precision), tile = path, job.tile

        warm: list[float] = []  # when the first tile, which carries the network's one-off set-up, ended

        def on_tile(done: int, total: int) -> None:
            if done == WARM_TILES:
                warm.append(time.perf_counter())
            checkpoint(done, total)  # stops between tiles once the job is cancelled, and reports progress
            watch.tile_done(done, total)  # stops a job its own tiles say cannot finish in time, known speed or not

        array, (top, left) = grown_to_min_side(np.asarray(rgb, dtype=np.uint8))
        try:
            out, tiles = run_tiled(
                array, self._infer_fn(network, device, precision), scale=native, tile=tile, pad=job.pad, on_tile=on_tile,
            )
        except InputError:
            if watch.measured is not None:  # stopped by its own tiles: the next job is told up front
                self.speeds.note(job.model, *watch.measured, _MEASURED_RUN)
            raise
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise ProviderUnavailable(
                    PROVIDER, f"{device} ran out of memory at tile={tile}; set a smaller tile (the job's tile,"
                    f" or providers.image.upscale.tile), like {tile // 2 if tile else 256}"
                ) from None
            raise
        if top or left or array.shape[:2] != (rgb.height, rgb.width):  # the tiny input's own part of it
            out = out[top * native:(top + rgb.height) * native, left * native:(left + rgb.width) * native]
        # the speed of the tiles after the warm one: a whole one-tile job is mostly set-up (a 64x48
        # upscale read ~1,850 pixels/s where tiles ran ~44,000, and the next 1300x1300 was refused)
        planned = job.tiles()
        if warm and len(planned) > WARM_TILES:
            self.speeds.note(job.model, work_pixels(planned[WARM_TILES:]), time.perf_counter() - warm[0], _MEASURED_RUN)
        return out, tiles

    @staticmethod
    def _finish(out: np.ndarray, alpha: Any, size: tuple[int, int], grey: bool = False) -> Any:
        """The output image: ``out`` at ``size``, with ``alpha`` upscaled; a ``grey`` input (L, LA,
        16-bit grey) stays grey: the colour network's channels of a grey image differ by a few
        levels (up to 8 on realesrgan-x4plus), which tinted it."""
        from PIL import Image

        result = Image.fromarray(out, "RGB")
        if result.size != size:
            result = result.resize(size, Image.Resampling.LANCZOS)
        if grey:
            result = result.convert("L")
        if alpha is not None:
            result = result.convert("LA" if grey else "RGBA")
            result.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
        return result
