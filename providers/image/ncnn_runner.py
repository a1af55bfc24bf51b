"""The upscaler's ``ncnn`` candidates: the same weights run by the ``ncnn`` package on the CPU,
fp32 (``ncnn``) or with bf16 storage (``ncnn-bf16``: weights and activations kept as bf16 between
layers, arithmetic in fp32; on an AVX2-only AMD EPYC 1.1-1.3x ncnn fp32 at PSNR 51-55 dB).

Our safetensors are converted from the ``.param``/``.bin`` files of the weights package
(``ncnn_convert.py``), so ncnn runs the identical network. It is a candidate of
``precision: auto`` only where both are present offline: ``ncnn`` importable and the weights
package installed (nothing is downloaded for it). On some CPUs (an AMD EPYC measured in issue 17)
ncnn's fp32 kernels beat torch's fp32; the measurement decides, under the same PSNR floor, for
both.

Importing this module imports neither ncnn nor numpy.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def files_for(name: str) -> tuple[Path, Path] | None:
    """The installed ``.param`` and ``.bin`` of model ``name``, or None (ncnn or the package absent)."""
    from providers.image import pull as weights_pull
    from providers.image import weights

    if importlib.util.find_spec("ncnn") is None:
        return None
    source = weights_pull.offline_source(weights.entry(name))
    files = weights_pull._installed_files(source) if source is not None else None
    if not files or len(files) != 2 or source is None or source.convert != "ncnn":
        return None
    return files[0], files[1]


def blob_names(param_text: str) -> tuple[str, str]:
    """The network's input blob (its ``Input`` layer's output) and output blob (the last layer's)."""
    layers = [line.split() for line in param_text.splitlines()[2:] if line.strip()]

    def outputs(tokens: list[str]) -> list[str]:
        n_in, n_out = int(tokens[2]), int(tokens[3])
        return tokens[4 + n_in:4 + n_in + n_out]

    inputs = [outputs(t)[0] for t in layers if t[0] == "Input"]
    if not inputs:
        raise ValueError("no Input layer in the .param file")
    return inputs[0], outputs(layers[-1])[0]


def new_net(bf16: bool, threads: int) -> Any:
    """An empty ``ncnn.Net`` on the CPU with ``threads`` threads: fp32 throughout, or bf16 storage
    where asked (nothing ncnn would pick by itself: no fp16, no Vulkan)."""
    import ncnn

    net = ncnn.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed",
                   "use_bf16_storage", "use_bf16_packed"):
        if hasattr(net.opt, option):
            setattr(net.opt, option, bf16 and option.startswith("use_bf16"))
    net.opt.num_threads = threads
    return net


class NcnnNet:
    """One loaded ncnn network; ``infer(piece)`` maps a uint8 HxWx3 tile to its uint8 output,
    as the torch path does (clip to [0, 1], x255, round). One inference at a time."""

    def __init__(self, param: Path, model: Path, threads: int | None = None, bf16: bool = False) -> None:

        self.net = new_net(bf16, threads or len(os.sched_getaffinity(0)))
        self.net.load_param(str(param))
        self.net.load_model(str(model))
        self.input, self.output = blob_names(param.read_text(encoding="utf-8"))
        self._lock = threading.Lock()

    def infer(self, piece: np.ndarray) -> np.ndarray:
        import ncnn
        import numpy as np

        rgb = np.ascontiguousarray(piece, dtype=np.uint8)
        mat = ncnn.Mat.from_pixels(rgb, ncnn.Mat.PixelType.PIXEL_RGB, rgb.shape[1], rgb.shape[0])
        mat.substract_mean_normalize([0.0, 0.0, 0.0], [1 / 255.0] * 3)
        with self._lock:
            extractor = self.net.create_extractor()
            extractor.input(self.input, mat)
            status, out = extractor.extract(self.output)
        if status != 0:
            raise RuntimeError(f"ncnn extract failed with status {status}")
        chw = np.clip(np.array(out), 0.0, 1.0) * 255.0
        return np.round(chw).astype(np.uint8).transpose(1, 2, 0)


#: the upscaler's ncnn candidates -> whether each keeps bf16 storage
CANDIDATES = {"ncnn": False, "ncnn-bf16": True}


class NcnnNets:
    """``NcnnNet`` per model name and candidate (``CANDIDATES``), loaded on first use."""

    def __init__(self) -> None:
        self._nets: dict[tuple[str, str], NcnnNet] = {}

    def infer_fn(self, name: str, candidate: str = "ncnn") -> Callable[[Any], Any]:
        key = (name, candidate)
        if key not in self._nets:
            files = files_for(name)
            if files is None:
                raise RuntimeError(f"ncnn or the weights package of {name} is not installed")
            self._nets[key] = NcnnNet(*files, bf16=CANDIDATES[candidate])
        return self._nets[key].infer


def ncnn_version() -> str:
    from importlib.metadata import version

    return version("ncnn")
