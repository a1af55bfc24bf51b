"""Background removal's paths: their names, what each needs of the CPU and of pip, the engine that
runs each, which of them this machine can run, the runtime versions a decision is keyed by, and
the reference path's network over an onnxruntime session.

Paths (``PATHS``; the first is the reference):

* ``fp32``: onnxruntime fp32, the model as shipped; agrees with the rembg library within 1 level.
* ``torch-bf16``: the ONNX graph run by torch (``onnx_torch.py``) in bf16, where the CPU has
  AVX512-BF16 or AMX (oneDNN's bf16 convolutions), or ARM's ``bf16`` (measured: it may not pay).
* ``torch-fp16``: the same in fp16, where the CPU has AVX512-FP16 or AMX-FP16.
* ``torch-fp32``: torch in fp32; never faster than onnxruntime where measured, so pinned only.
* ``ncnn``: the same graph written as an ncnn network (``onnx_ncnn.py``), fp32: on any CPU where
  the ``ncnn`` package and torch (which folds the graph) are installed. Same output as
  onnxruntime; on an AVX2-only AMD EPYC 1.5-1.7x faster single-threaded.
* ``ncnn-bf16``: ncnn with bf16 storage between layers (arithmetic fp32), the nodes of
  ``onnx_torch.u2net_fp32_nodes`` kept fp32: on that EPYC 1.7-1.9x onnxruntime, mean alpha 0.06
  levels off. bf16 storage needs no bf16 hardware, so both ncnn paths are measured on every CPU.

How a path is chosen, built and run is ``rembg_paths.py``'s (which re-exports every name here).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from providers.image.cpu import named_flags
from providers.image.precision import CpuInfo

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

REFERENCE = "fp32"
#: path -> CPU flags any one of which makes it worth measuring under ``auto`` (empty: always)
PATHS: dict[str, frozenset[str]] = {
    REFERENCE: frozenset(),
    "torch-bf16": frozenset({"avx512_bf16", "amx_bf16", "bf16"}),  # bf16: ARM's feature
    "torch-fp16": frozenset({"avx512_fp16", "amx_fp16"}),
    "ncnn": frozenset(),
    "ncnn-bf16": frozenset(),
}
#: the ncnn paths -> whether each keeps bf16 storage
NCNN_PATHS = {"ncnn": False, "ncnn-bf16": True}
#: every path config can pin
PINNABLE = (*PATHS, "torch-fp32")
#: the torch paths -> the name of the torch dtype each runs the graph in (None: fp32)
TORCH_DTYPES = {"torch-fp32": None, "torch-bf16": "bfloat16", "torch-fp16": "float16"}
#: the trace step's provider: the engine that runs a path
ONNX_ENGINE, TORCH_ENGINE, NCNN_ENGINE = "rembg-onnx", "rembg-torch", "rembg-ncnn"
#: what to install for a torch path (requirements/torch-cpu.in)
TORCH_PIP = "pip install torch==2.13.0 (the CPU wheel: --index-url https://download.pytorch.org/whl/cpu)"
#: what to install for an ncnn path (requirements/worker.in)
NCNN_PIP = "pip install ncnn==1.0.20261020"
#: changes when what a path runs or how it is timed changes, so a cached decision is measured again
#: (2: bf16/fp16 keep ``onnx_torch.u2net_fp32_nodes`` in fp32; candidates timed one thread per call;
#: 3: the ncnn paths)
REVISION = "rembg-paths 3"

#: a model's forward on a float32 NCHW batch at its input size, returning (N, H, W) float32
MaskNet = Callable[["np.ndarray"], "np.ndarray"]
#: ``RembgRemover.predict_mask``: a net, an image and the model's settings -> the mask
Predict = Callable[[MaskNet, "Image.Image", dict[str, Any]], "Image.Image"]


def available_paths(table: dict[str, frozenset[str]] | None = None) -> dict[str, frozenset[str]]:
    """``table`` (default ``PATHS``) without the torch paths where torch is not installed, and
    without the ncnn paths where ncnn or torch (which folds the graph for ncnn) is not."""
    table = PATHS if table is None else table
    has_torch = importlib.util.find_spec("torch") is not None
    has_ncnn = has_torch and importlib.util.find_spec("ncnn") is not None
    return {name: needs for name, needs in table.items()
            if (has_torch or not name.startswith("torch-")) and (has_ncnn or name not in NCNN_PATHS)}


def versions() -> str:
    """The runtimes' versions and ``REVISION``, part of the decision's cache key."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [REVISION]
    for package in ("onnxruntime", "torch", "ncnn"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} absent")
    return " ".join(parts)


def describe_pinned(path: str, cpu: CpuInfo) -> str:
    """The trace text of a path set in config."""
    needs = PATHS.get(path, frozenset())
    if needs and not needs & cpu.flags:
        return f"{path} (pinned in config; this CPU lacks {'/'.join(named_flags(cpu, needs))}: emulated, slow)"
    return f"{path} (pinned in config)"


def engine(path: str) -> str:
    """The provider a trace step names for ``path``: ``rembg-torch``, ``rembg-ncnn`` or ``rembg-onnx``."""
    if path in NCNN_PATHS:
        return NCNN_ENGINE
    return TORCH_ENGINE if path.startswith("torch-") else ONNX_ENGINE


def ort_device(session: Any) -> str:
    """The device of an onnxruntime session's first execution provider: ``cpu``, ``cuda``, ..."""
    return str(session.get_providers()[0]).replace("ExecutionProvider", "").lower()


def onnxruntime_net(session: Any) -> MaskNet:
    """The session's first output (the fused mask d0), channel dropped; side outputs not copied."""
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: batch})[0][:, 0]

    return run
