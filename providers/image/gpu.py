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

torch is passed in, never imported here.
"""

from __future__ import annotations

from typing import Any

from providers.image.cpu import CpuInfo

#: candidate -> GPU flags (``read_gpu_info``), any one of which makes it worth measuring (empty: always)
CUDA_CANDIDATES: dict[str, frozenset[str]] = {
    "fp32": frozenset(),
    "fp16": frozenset({"cuda_fp16"}),
    "bf16": frozenset({"cuda_bf16"}),
}
#: the GPU flags: part of the cache key (``precision.RELEVANT_FLAGS``)
GPU_FLAGS = frozenset({"cuda_fp16", "cuda_bf16"})
#: side of the probe images on a GPU, in input pixels: the upscaler's default tile, so a probe is
#: the work of one tile
CUDA_PROBE_SIZE = 256


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
