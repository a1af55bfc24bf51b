"""Which path background removal runs on this CPU: onnxruntime fp32, or torch on the same weights.

``precision: auto`` (``providers.image.rembg.precision``) measures, once per machine, model and
runtime versions (cached in ``<models_dir>/precision.json`` beside the upscaler's decisions),
the paths this CPU supports and runs the fastest whose masks stay within the floor against
onnxruntime fp32's: mask IoU >= ``IOU_FLOOR`` (alpha >= 128 is foreground) and mean alpha
difference <= ``ALPHA_DIFF_FLOOR`` levels, on a real photo (``probes/portrait_256.jpg``, the
public-domain Grace Hopper portrait: a salient-object model needs a subject, and on a synthetic
texture the reference mask is almost empty, so its IoU says nothing) and on the line-art image
of ``precision.py``. The choosing, timing and caching are ``precision.AutoPrecision``'s.

Paths (``PATHS``; the first is the reference):

* ``fp32``: onnxruntime fp32, the model as shipped; agrees with the rembg library within 1 level.
* ``torch-bf16``: the ONNX graph run by torch (``onnx_torch.py``) in bf16, where the CPU has
  AVX512-BF16 or AMX (oneDNN's bf16 convolutions).
* ``torch-fp16``: the same in fp16, where the CPU has AVX512-FP16 or AMX-FP16.
* ``torch-fp32``: torch in fp32; never faster than onnxruntime where measured, so pinned only.

torch runs one inference at a time on its own intra-op pool (a lock per model): batch workers
still overlap decode, resize and encode of their images with it.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers.image.onnx_torch import UnsupportedGraph
from providers.image.precision import CACHE_FILE, AutoPrecision, CpuInfo, Floor, Metric, probe_images

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

REFERENCE = "fp32"
#: path -> CPU flags any one of which makes it worth measuring under ``auto`` (empty: always)
PATHS: dict[str, frozenset[str]] = {
    REFERENCE: frozenset(),
    "torch-bf16": frozenset({"avx512_bf16", "amx_bf16"}),
    "torch-fp16": frozenset({"avx512_fp16", "amx_fp16"}),
}
#: every path config can pin
PINNABLE = (*PATHS, "torch-fp32")
_DTYPES = {"torch-fp32": None, "torch-bf16": "bfloat16", "torch-fp16": "float16"}
#: the floor against the reference's mask: IoU of the alpha >= 128 regions ...
IOU_FLOOR = 0.99
#: ... and the mean absolute alpha difference, in levels of 255
ALPHA_DIFF_FLOOR = 1.0
#: side of the probe images: the models' own input size is 320, masks come back at this size
PROBE_SIZE = 256

#: a model's forward on a float32 NCHW batch at its input size, returning (N, H, W) float32
MaskNet = Callable[["np.ndarray"], "np.ndarray"]
#: ``RembgRemover.predict_mask``: a net, an image and the model's settings -> the mask
Predict = Callable[[MaskNet, "Image.Image", dict[str, Any]], "Image.Image"]


def mask_scores(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """IoU of the foregrounds (alpha >= 128) and mean alpha difference of two uint8 masks."""
    import numpy as np

    ref, out = reference >= 128, output >= 128
    union = int(np.count_nonzero(ref | out))
    iou = 1.0 if union == 0 else int(np.count_nonzero(ref & out)) / union
    diff = float(np.mean(np.abs(reference.astype(np.int16) - output.astype(np.int16))))
    return {"iou": iou, "alpha_diff": diff}


def mask_floor() -> Floor:
    """The floor background removal's paths are held to (read from the module when called)."""
    return Floor(
        (Metric("iou", "IoU", "", IOU_FLOOR), Metric("alpha_diff", "alpha diff", " levels", ALPHA_DIFF_FLOOR, False)),
        mask_scores,
    )


def mask_probes() -> dict[str, np.ndarray]:
    """The probe images of background removal: the portrait photo and the line art."""
    import numpy as np
    from PIL import Image

    with Image.open(Path(__file__).parent / "probes" / "portrait_256.jpg") as photo:
        return {"photo": np.asarray(photo.convert("RGB")), "line_art": probe_images(PROBE_SIZE)["line_art"]}


def available_paths(table: dict[str, frozenset[str]] | None = None) -> dict[str, frozenset[str]]:
    """``table`` (default ``PATHS``) without the torch paths where torch is not installed."""
    table = PATHS if table is None else table
    has_torch = importlib.util.find_spec("torch") is not None
    return {name: needs for name, needs in table.items() if has_torch or not name.startswith("torch-")}


def versions() -> str:
    """The runtimes' versions, part of the decision's cache key."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("onnxruntime", "torch"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} absent")
    return " ".join(parts)


def describe_pinned(path: str, cpu: CpuInfo) -> str:
    """The trace text of a path set in config."""
    needs = PATHS.get(path, frozenset())
    if needs and not needs & cpu.flags:
        return f"{path} (pinned in config; this CPU lacks {'/'.join(sorted(needs))}: emulated, slow)"
    return f"{path} (pinned in config)"


def onnxruntime_net(session: Any) -> MaskNet:
    """The session's first output (the fused mask d0), channel dropped; side outputs not copied."""
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: batch})[0][:, 0]

    return run


class TorchNets:
    """One ``OnnxTorchNet`` per model file, built on first use; ``net(path)`` gives a path's
    ``MaskNet``. Inference is one at a time per model: torch's pool already uses every core."""

    def __init__(self, onnx_path: Path, input_size: int) -> None:
        self.onnx_path, self.input_size = onnx_path, input_size
        self._net: Any = None
        self._lock = threading.Lock()

    def net(self, path: str) -> MaskNet:
        import torch

        from providers.image.onnx_torch import OnnxTorchNet, read_graph

        dtype_name = _DTYPES[path]
        dtype = getattr(torch, dtype_name) if dtype_name else None
        with self._lock:
            if self._net is None:
                self._net = OnnxTorchNet(read_graph(self.onnx_path), (1, 3, self.input_size, self.input_size))

        def run(batch: np.ndarray) -> np.ndarray:
            with self._lock:
                (out,) = self._net(torch.from_numpy(batch), dtype)
            return out[:, 0].numpy()

        return run


class PathChooser:
    """Chooses and builds a model's path: ``precision`` pinned, or ``auto`` measured and cached.

    Args:
        precision: ``providers.image.rembg.precision``.
        models_dir: the models folder (the torch paths read the ``.onnx`` file from it).
        cpu_info: reads the CPU (tests pass a fake).
        auto_precision: the decision cache (default: ``<models_dir>/precision.json``).
        table: the candidates of ``auto`` (default ``PATHS``; tests force a set).
    """

    def __init__(self, precision: str, models_dir: str | None, cpu_info: Callable[[], CpuInfo],
                 auto_precision: AutoPrecision | None = None, table: dict[str, frozenset[str]] | None = None) -> None:
        from providers.image.weights import resolve_models_dir

        self.precision, self.models_dir, self.cpu_info, self.table = precision, models_dir, cpu_info, table
        self.auto = auto_precision or AutoPrecision(
            resolve_models_dir(models_dir) / CACHE_FILE, cpu_info, probe_size=PROBE_SIZE, rounds=2
        )
        self._torch: dict[str, TorchNets] = {}
        self._chosen: dict[str, tuple[str, str]] = {}

    def net(self, name: str, session: Any, extra: dict[str, Any], measure_session: Callable[[], Any],
            predict: Predict) -> tuple[MaskNet, str]:
        """``name``'s ``MaskNet`` on its path and ``device=... path=...`` for the trace.

        ``session`` is the onnxruntime session the reference path runs on; ``measure_session``
        gives the single-image one a measurement uses; ``predict(net, image, extra)`` makes a mask.
        """
        device = session.get_providers()[0].replace("ExecutionProvider", "").lower()
        path, why = self._path(name, device, extra, measure_session, predict)
        return self.build(name, path, session, extra), f"device={'cpu' if path != REFERENCE else device} path={why}"

    def build(self, name: str, path: str, session: Any, extra: dict[str, Any]) -> MaskNet:
        """The ``MaskNet`` of ``path`` (``session`` for the reference)."""
        if path == REFERENCE:
            return onnxruntime_net(session)
        if name not in self._torch:
            from providers.image import pull as weights_pull

            onnx_file = weights_pull.ensure(name, self.models_dir)
            self._torch[name] = TorchNets(onnx_file, int(extra.get("input_size", 320)))
        return self._torch[name].net(path)

    def _path(self, name: str, device: str, extra: dict[str, Any], measure_session: Callable[[], Any],
              predict: Predict) -> tuple[str, str]:
        if self.precision != "auto":
            if name not in self._chosen:  # /proc/cpuinfo once, not per image
                self._chosen[name] = self.precision, describe_pinned(self.precision, self.cpu_info())
            return self._chosen[name]
        if device != "cpu":
            return REFERENCE, f"{REFERENCE} (auto: onnxruntime on {device}, not measured)"
        if name not in self._chosen:
            import numpy as np
            from PIL import Image

            session = measure_session()

            def run(path: str, image: np.ndarray) -> np.ndarray:
                return np.asarray(predict(self.build(name, path, session, extra), Image.fromarray(image), extra))

            try:
                decision = self.auto.decide(name, versions(), run, table=available_paths(self.table),
                                            floor=mask_floor(), probes=mask_probes)
                self._chosen[name] = decision.precision, decision.describe()
            except (UnsupportedGraph, RuntimeError) as exc:  # torch cannot run it: onnxruntime, and the trace says why
                self._chosen[name] = REFERENCE, (
                    f"{REFERENCE} (auto: torch cannot run {name}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})")
        return self._chosen[name]
