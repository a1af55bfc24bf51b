"""What the upscaler's ``precision: auto`` needs to know about a CUDA GPU, in ``CpuInfo``'s shape.

The measurement machinery (``precision.AutoPrecision``) is the CPU's: a candidate table, flags any
one of which makes a candidate worth measuring, a machine key for the cache. On CUDA the
"machine" is the GPU: its name, compute capability and CUDA version identify it, and its flags
say which reduced precisions it runs natively:

* ``cuda_fp16``: half arithmetic (compute capability 5.3 on; tensor cores from 7.0);
* ``cuda_bf16``: bfloat16 (8.0, Ampere, on; torch emulates it slowly before that).

The candidates (``CUDA_CANDIDATES``) are strict fp32 (the reference: TF32 off, so ``fp32``
means fp32 on a GPU too), fp16 (half weights and activations) and bf16 (autocast over fp32
weights). The probes are larger than the CPU's (``CUDA_PROBE_SIZE``): on 64x64 a GPU's kernel
launches, not its arithmetic, set the time, and every candidate would look alike.

``fp32`` on CUDA is IEEE fp32: torch lets cuDNN convolutions use TF32 on Ampere and later by
default (10 bits of mantissa), which is not what ``fp32`` promises; ``inference_context`` turns it
off around an fp32 inference (``ieee_fp32``). torch is passed in, never imported here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from providers.image.cpu import CpuInfo

#: candidate -> GPU flags (``read_gpu_info``), any one of which makes it worth measuring (empty: always)
CUDA_CANDIDATES: dict[str, frozenset[str]] = {
    "fp32": frozenset(),
    "fp16": frozenset({"cuda_fp16"}),
    "bf16": frozenset({"cuda_bf16"}),
}
#: the GPU flags: part of the cache key (``precision.RELEVANT_FLAGS``)
GPU_FLAGS: frozenset[str] = frozenset().union(*CUDA_CANDIDATES.values())
#: side of the probe images on a GPU, in input pixels: the upscaler's default tile, so a probe is
#: the work of one tile
CUDA_PROBE_SIZE = 256


#: what a Linux machine (or container) shows where torch could see a GPU: the NVIDIA driver, its
#: control device, ROCm's kernel driver, WSL2's GPU bridge
DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def driver_present(paths: tuple[str, ...] = DRIVER_PATHS) -> bool:
    """Whether asking torch for a CUDA device could say yes. False only on Linux with none of
    ``paths``: there ``device: auto`` is the CPU without importing torch (~1-2 s and ~300 MB,
    for nothing where ncnn runs the model); elsewhere torch is asked."""
    return not sys.platform.startswith("linux") or any(os.path.exists(path) for path in paths)


def flags_for(capability: tuple[int, int]) -> frozenset[str]:
    """The reduced precisions a GPU of compute ``capability`` runs natively."""
    flags = set()
    if capability >= (5, 3):
        flags.add("cuda_fp16")
    if capability >= (8, 0):
        flags.add("cuda_bf16")
    return frozenset(flags)


def read_gpu_info(torch: Any) -> CpuInfo:
    """The current CUDA device as ``CpuInfo``: ``arch`` "cuda", its name, ``sm_XY`` and CUDA version
    as identification, the GPU count as ``cpus``, its flags (``flags_for``)."""
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return CpuInfo(model=torch.cuda.get_device_name(index), flags=flags_for((major, minor)), arch="cuda",
                   cpus=torch.cuda.device_count(), ident=f"sm_{major}{minor} cuda {torch.version.cuda}")


def describe_pinned(precision: str, gpu: CpuInfo) -> str:
    """The trace text of a precision set in config, on a GPU."""
    needs = CUDA_CANDIDATES.get(precision, frozenset())
    if needs and not needs & gpu.flags:
        return f"{precision} (pinned in config; this GPU lacks {'/'.join(sorted(needs))}: emulated, slow)"
    return f"{precision} (pinned in config; IEEE, TF32 off)" if precision == "fp32" else f"{precision} (pinned in config)"


class _IeeeFp32:
    """cuDNN in IEEE fp32 while any inference holds it: the switch is process-wide, so it is
    counted, not nested (two providers' inferences overlapping restore it once, at the last exit).
    torch >= 2.9 has ``cudnn.conv/rnn.fp32_precision`` (both are set: a conv and an rnn setting
    that differ make a read of the legacy ``allow_tf32`` raise); older torch has ``allow_tf32``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[Any, ...] = ()

    @contextlib.contextmanager
    def __call__(self, torch: Any) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = self._set(torch.backends.cudnn)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._restore(torch.backends.cudnn, self._saved)

    @staticmethod
    def _set(cudnn: Any) -> tuple[Any, ...]:
        conv: Any = getattr(cudnn, "conv", None)
        rnn: Any = getattr(cudnn, "rnn", None)
        if getattr(conv, "fp32_precision", None) is not None and getattr(rnn, "fp32_precision", None) is not None:
            saved: tuple[Any, ...] = ("new", conv.fp32_precision, rnn.fp32_precision)
            conv.fp32_precision = rnn.fp32_precision = "ieee"
            return saved
        saved = ("legacy", cudnn.allow_tf32)
        cudnn.allow_tf32 = False
        return saved

    @staticmethod
    def _restore(cudnn: Any, saved: tuple[Any, ...]) -> None:
        if saved[0] == "new":
            cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = saved[1], saved[2]
        else:
            cudnn.allow_tf32 = saved[1]


#: ``with ieee_fp32(torch):`` cuDNN convolutions in IEEE fp32 (TF32 off) for the block
ieee_fp32 = _IeeeFp32()


def inference_context(torch: Any, device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """What an inference at ``precision`` on ``device`` runs inside: IEEE fp32 for ``fp32`` on
    CUDA, nothing else anywhere else."""
    return ieee_fp32(torch) if device == "cuda" and precision == "fp32" else contextlib.nullcontext()
