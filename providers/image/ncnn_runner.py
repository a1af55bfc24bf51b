"""The upscaler's ``ncnn`` candidates: the same weights run by the ``ncnn`` package on the CPU,
fp32 (``ncnn``) or with bf16 storage (``ncnn-bf16``: weights and activations kept as bf16 between
layers, arithmetic in fp32; on an AVX2-only AMD EPYC 1.1-1.3x ncnn fp32 at PSNR 51-55 dB).

Our safetensors are converted from the ``.param``/``.bin`` files of the weights package
(``ncnn_convert.py``), so ncnn runs the identical network. It is a candidate of ``precision: auto``
only where both are present offline: ``ncnn`` importable and the weights package installed
(nothing is downloaded for it). On some CPUs (an AMD EPYC measured in issue 17) ncnn's fp32
kernels beat torch's fp32; the measurement decides, under the same PSNR floor, for both.

Memory: an RRDB network (anime-6B, x4plus) ends in an upsampling tail (nearest x2, conv, nearest
x2, three convs) whose 64-channel maps at 4x the tile's side were most of a tile's memory: one
288x288 padded tile went through ncnn at ~2.3 GB (bf16 storage) to ~3 GB (fp32), and a 2048x2048
upscale peaked at 6.7-8.6 GB. ``TailPlan`` runs the body on the whole tile and the tail on strips
of the body's output with the few rows of context the tail's kernels reach (the same output
within a level: Winograd's rounding moves with a pixel's place in its tile), so a tile peaks at
the body's ~0.75 GB. The net's buffers come from pool allocators this module owns, emptied once
no upscale has come for ``core.heap.IDLE_RELEASE_S`` (``NcnnNets.idle``): ncnn's own pools keep every
buffer they ever handed out for the life of the net.

Importing this module imports neither ncnn nor numpy.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import heap

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


def _layers(param_text: str) -> list[list[str]]:
    return [line.split() for line in param_text.splitlines()[2:] if line.strip()]


def _ends(tokens: list[str]) -> tuple[list[str], list[str]]:
    """A layer line's input and output blob names."""
    n_in, n_out = int(tokens[2]), int(tokens[3])
    return tokens[4:4 + n_in], tokens[4 + n_in:4 + n_in + n_out]


def _params(tokens: list[str]) -> dict[str, str]:
    n_in, n_out = int(tokens[2]), int(tokens[3])
    return dict(item.split("=", 1) for item in tokens[4 + n_in + n_out:] if "=" in item)


def blob_names(param_text: str) -> tuple[str, str]:
    """The network's input blob (its ``Input`` layer's output) and output blob (the last layer's)."""
    layers = _layers(param_text)
    inputs = [_ends(t)[1][0] for t in layers if t[0] == "Input"]
    if not inputs:
        raise ValueError("no Input layer in the .param file")
    return inputs[0], _ends(layers[-1])[1][0]


#: the tail's layer types: each output row reads a few rows of its input, nothing from before the tail
_TAIL_LAYERS = frozenset({"Convolution", "Interp", "ReLU", "Split"})
#: at most this many pixels (rows x width, at the body's scale) in one strip of the tail; a body's
#: rows are cut into strips of ``STRIP_PIXELS // width`` rows. Each strip reruns ``halo`` rows of its neighbours;
#: with a halo of 2, on anime-6B with bf16 storage, a 192x192 image ran 7% faster in 64-row strips
#: than whole (1.75 vs 1.88 s) and a 288x288 tile (the default tile and its padding) 4% (4.50 vs
#: 4.71 s): the 4x maps of a strip stay in cache. 8,192 and 16,384 pixels were slower (1.80, 1.79 s)
STRIP_PIXELS = 12_288


@dataclass(frozen=True)
class TailPlan:
    """Where a network's upsampling tail starts (``blob``), how many rows of context a strip of it
    needs on each side (``halo``, at the body's scale) and how much it enlarges (``scale``)."""

    blob: str
    halo: int
    scale: int

    @classmethod
    def of(cls, param_text: str) -> TailPlan | None:
        """The tail from the first nearest-neighbour ``Interp`` to the end, where everything after it
        is convolutions (stride 1, no dilation), nearest upsampling and activations that read only
        the tail's own blobs; else None (the net runs whole: animevideov3 adds its input back at the end)."""
        layers = _layers(param_text)
        start = next((i for i, t in enumerate(layers) if t[0] == "Interp"), None)
        if start is None:
            return None
        blob = _ends(layers[start])[0][0]
        produced, reach, scale = {blob}, 0.0, 1.0
        for tokens in layers[start:]:
            inputs, outputs = _ends(tokens)
            params = _params(tokens)
            if tokens[0] not in _TAIL_LAYERS or not set(inputs) <= produced:
                return None
            if tokens[0] == "Interp":
                up = float(params.get("1", "1")), float(params.get("2", "1"))
                if params.get("0", "0") != "1" or up[0] != up[1] or not up[0].is_integer() or \
                        "3" in params or "4" in params:  # nearest, one whole scale, not an output size
                    return None
                scale *= up[0]
            elif tokens[0] == "Convolution":
                kernel = int(params.get("1", "1"))
                same = (("2", "1"), ("3", "1"), ("4", str((kernel - 1) // 2)))  # no dilation, stride 1, "same" padding
                if any(params.get(key, default) != default for key, default in same) or \
                        any(key in params for key in ("11", "12", "13", "14", "15", "16", "17")):  # non-square
                    return None
                reach += (kernel - 1) / 2 / scale  # rows of the body's output this conv reads beyond its own
            produced.update(outputs)
        # exact: a strip's edge rows go wrong by a kernel's reach per conv, so ``reach`` rows of
        # context keep every row it keeps as the whole tail computes it (a row more cost 4% of a
        # 192x192 image on anime-6B with bf16 storage: 1.82 vs 1.75 s)
        return cls(blob, math.ceil(reach), int(scale))


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


def own_pools(net: Any, workspace_ratio: float) -> tuple[Any, Any]:
    """Pool allocators of our own for ``net``'s blobs and workspace (set before its model loads, so
    ncnn makes none of its own, which keep every buffer for the net's life); ``empty`` gives back
    what they hold. ``workspace_ratio``: the smallest share of a pooled buffer a request may take."""
    import ncnn

    pools = ncnn.PoolAllocator(), ncnn.PoolAllocator()
    pools[0].set_size_compare_ratio(0.0)  # as ncnn's own blob pool
    pools[1].set_size_compare_ratio(workspace_ratio)
    net.opt.blob_allocator, net.opt.workspace_allocator = pools
    return pools


def empty(pools: tuple[Any, ...]) -> None:
    """Free the buffers ``pools`` keep for reuse; buffers an inference holds now are not theirs to
    free (ncnn's ``PoolAllocator.clear`` frees only what was given back), so it may run beside one."""
    for pool in pools:
        pool.clear()


class NcnnNet:
    """One loaded ncnn network; ``infer(piece)`` maps a uint8 HxWx3 tile to its uint8 output,
    as the torch path does (clip to [0, 1], x255, round). One inference at a time. ``native``:
    how much it enlarges (measured on an 8x8 input at load)."""

    def __init__(self, param: Path, model: Path, threads: int | None = None, bf16: bool = False) -> None:
        import numpy as np

        self.net = new_net(bf16, threads or len(os.sched_getaffinity(0)))
        self._pools = own_pools(self.net, workspace_ratio=0.5)
        text = param.read_text(encoding="utf-8")
        self.net.load_param(str(param))
        self.net.load_model(str(model))
        self.input, self.output = blob_names(text)
        self.tail = TailPlan.of(text)
        self._lock = threading.Lock()
        self.native = self._extract(self._mat(np.zeros((8, 8, 3), np.uint8)), self.input, self.output).shape[1] // 8
        self.release()

    @staticmethod
    def _mat(piece: np.ndarray) -> Any:
        import ncnn
        import numpy as np

        rgb = np.ascontiguousarray(piece, dtype=np.uint8)
        mat = ncnn.Mat.from_pixels(rgb, ncnn.Mat.PixelType.PIXEL_RGB, rgb.shape[1], rgb.shape[0])
        mat.substract_mean_normalize([0.0, 0.0, 0.0], [1 / 255.0] * 3)
        return mat

    def _extract(self, mat: Any, source: str, target: str) -> np.ndarray:
        """``target`` (C x H x W float32, a copy) with ``mat`` fed at blob ``source``."""
        import numpy as np

        with self._lock:
            extractor = self.net.create_extractor()
            extractor.input(source, mat)
            status, out = extractor.extract(target)
            if status != 0:
                raise RuntimeError(f"ncnn extract failed with status {status}")
            return np.array(out)

    def infer(self, piece: np.ndarray) -> np.ndarray:
        import numpy as np

        mat = self._mat(piece)
        if self.tail is None:
            chw = self._extract(mat, self.input, self.output)
        else:
            chw = self._tail_in_strips(self._extract(mat, self.input, self.tail.blob))
        chw = np.clip(chw, 0.0, 1.0) * 255.0
        return np.round(chw).astype(np.uint8).transpose(1, 2, 0)

    def _tail_in_strips(self, body: np.ndarray) -> np.ndarray:
        """The tail (``self.tail``) over ``body`` (C x H x W), a strip of rows at a time, each with
        ``halo`` rows of context above and below (zeros at the edges, as the whole tail pads)."""
        import ncnn
        import numpy as np

        assert self.tail is not None
        _, height, width = body.shape
        scale, halo = self.tail.scale, self.tail.halo
        rows = max(2 * halo, STRIP_PIXELS // max(width, 1))
        out: np.ndarray | None = None
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            lo, hi = max(0, top - halo), min(height, bottom + halo)
            strip = np.ascontiguousarray(body[:, lo:hi])  # the Mat reads this memory: keep it alive
            part = self._extract(ncnn.Mat(strip), self.tail.blob, self.output)
            if out is None:
                out = np.empty((part.shape[0], height * scale, width * scale), np.float32)
            skip = (top - lo) * scale
            out[:, top * scale:bottom * scale] = part[:, skip:skip + (bottom - top) * scale]
        assert out is not None
        return out

    def release(self) -> None:
        """Give back the buffers the pools keep between inferences (``NcnnNets`` calls it once idle)."""
        with self._lock:
            empty(self._pools)


#: the upscaler's ncnn candidates -> whether each keeps bf16 storage
CANDIDATES = {"ncnn": False, "ncnn-bf16": True}


class NcnnNets:
    """``NcnnNet`` per model name and candidate (``CANDIDATES``), loaded on first use. A job runs
    inside ``idle.using()``: ``idle_release_s`` after the last one, with no job in between, every
    net's pools are emptied and the C heap trimmed (``core.heap.trim``)."""

    def __init__(self, idle_release_s: float = heap.IDLE_RELEASE_S) -> None:
        self._nets: dict[tuple[str, str], NcnnNet] = {}
        self.idle = heap.IdleRelease(self.release, idle_release_s)

    def net(self, name: str, candidate: str = "ncnn") -> NcnnNet:
        key = (name, candidate)
        if key not in self._nets:
            files = files_for(name)
            if files is None:
                raise RuntimeError(f"ncnn or the weights package of {name} is not installed")
            self._nets[key] = NcnnNet(*files, bf16=CANDIDATES[candidate])
        return self._nets[key]

    def keep(self, name: str, candidate: str | None) -> None:
        """After ``auto`` chose for model ``name``: its nets other than ``candidate``'s (None: all of
        them) go, weights and pools; one is loaded again if asked for."""
        self._nets = {key: net for key, net in self._nets.items() if key[0] != name or key[1] == candidate}

    def release(self) -> None:
        """Every loaded net's pooled buffers back (``NcnnNet.release``), then the C heap's free pages."""
        for net in list(self._nets.values()):
            net.release()
        heap.trim()


def ncnn_version() -> str:
    from importlib.metadata import version

    return version("ncnn")
