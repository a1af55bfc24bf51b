"""The upscaler's torch side: torch imported on first use, its thread pool, the versions and
``precision: auto`` deciders its decisions are keyed and made by, the smallest input the network
is given, and one tile's inference.

``upscale.py`` (``RealESRGANUpscaler``) runs the model; this module holds what it runs it on.
torch is imported inside the functions only, never at module import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ProviderUnavailable
from providers.image import gpu
from providers.image.ncnn_runner import CANDIDATES as NCNN_CANDIDATES
from providers.image.ncnn_runner import ncnn_version
from providers.image.precision import AutoPrecision, CpuInfo, read_cpu_info

if TYPE_CHECKING:
    import numpy as np

PROVIDER = "realesrgan-torch"
#: changes when how a candidate runs changes (its tensors, autocast, ncnn options), so a cached
#: decision is measured again; the floor and ``MIN_SPEEDUP`` are in the key already (``precision.rules``)
REVISION = "upscale-paths 2"
#: the side of the image ``precision: auto`` times the CPU candidates on (they are scored on the
#: 64x64 probes): at 64x64 anime-6B's feature maps sit in cache and ncnn-bf16 (whose gain is
#: memory traffic) read 1.03-1.10x ncnn, a tie auto broke either way from session to session; at
#: 128x128 it reads 1.11-1.24x, as at the bench's 192x192 (bench/README.md, "Nineteenth session")
CPU_TIMING_SIZE = 128


def load_torch() -> Any:
    """The ``torch`` module, or ``ProviderUnavailable`` saying which pip install to run."""
    try:
        import torch
    except ImportError:
        raise ProviderUnavailable(
            PROVIDER,
            "torch is not installed; run: pip install torch==2.13.0 (CPU) or a CUDA build on a GPU image",
        ) from None
    return torch


_threads_set = False


def set_threads(torch: Any) -> None:
    """One intra-op pool sized to the CPUs this process may use (containers often limit them)."""
    global _threads_set
    if not _threads_set:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cpus))
        _threads_set = True


def torch_version() -> str:
    """torch's version as installed, without importing it (a cached decision for ncnn needs no torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return str(load_torch().__version__)  # says which pip install, or a torch without metadata


def versions(table: dict[str, frozenset[str]]) -> str:
    """``REVISION`` and the runtimes' versions (ncnn's where it is a candidate): part of the cache key."""
    return f"{REVISION} torch {torch_version()}" + (f" ncnn {ncnn_version()}" if "ncnn" in table else "")


def cpu_auto_precision(cache_path: Path, cpu_info: Callable[[], CpuInfo] = read_cpu_info) -> AutoPrecision:
    """``precision: auto`` on this CPU: scored on the 64x64 probes, timed on a
    ``CPU_TIMING_SIZE`` one, its decisions in ``cache_path``."""
    return AutoPrecision(cache_path, cpu_info, timing_size=CPU_TIMING_SIZE)


def cuda_auto_precision(cache_path: Path) -> AutoPrecision:
    """``precision: auto`` on this process's CUDA GPU (``gpu.read_gpu_info``), GPU-sized probes,
    its decisions in ``cache_path``."""
    return AutoPrecision(cache_path, lambda: gpu.read_gpu_info(load_torch()), probe_size=gpu.CUDA_PROBE_SIZE,
                         hardware="GPU")


#: the smallest side the network is given: a smaller input is grown to it by repeating its edge
#: pixels, and its own part cut from the output. The network pads with zeros, so on a 1x1 input the
#: border was all there was: (200, 50, 50) came back as (125, 65, 51) on average; from 4x4 the mean
#: colour was within 1-3 levels
MIN_SIDE = 16


def grown_to_min_side(array: Any) -> tuple[Any, tuple[int, int]]:
    """``array`` (HxWxC) grown to ``MIN_SIDE`` on each short side, edge pixels repeated evenly on
    both sides; and the (top, left) offset of the original in it."""
    import numpy as np

    height, width = array.shape[:2]
    grow_h, grow_w = max(0, MIN_SIDE - height), max(0, MIN_SIDE - width)
    if not grow_h and not grow_w:
        return array, (0, 0)
    top, left = grow_h // 2, grow_w // 2
    return np.pad(array, ((top, grow_h - top), (left, grow_w - left), (0, 0)), mode="edge"), (top, left)


def infer_fn(network: Any, device: str, precision: str) -> Any:
    """One tile's inference (HxWx3 uint8 in, the upscaled HxWx3 uint8 out) of ``network`` on
    ``device`` at ``precision``; an ncnn candidate's "network" is its infer function already."""
    if precision in NCNN_CANDIDATES:
        return network
    torch = load_torch()
    import numpy as np

    def infer(piece: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), gpu.inference_context(torch, device, precision):
            x = torch.from_numpy(np.array(piece, dtype=np.uint8)).to(device).permute(2, 0, 1)[None]
            half_weights = precision == "fp16" and device == "cuda"
            x = x.to(torch.float16 if half_weights else torch.float32).div_(255.0)
            x = x.contiguous(memory_format=torch.channels_last)
            autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
            if autocast is not None and not half_weights:
                with torch.autocast(device, dtype=autocast):
                    y = network(x)
            else:
                y = network(x)
            y = y.float().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
            return y[0].permute(1, 2, 0).cpu().numpy()

    return infer
