"""The upscaler's CUDA path end to end, on a machine with a GPU: what ``precision: auto`` chooses
there and why, what a job's trace says, and how tile size and cuDNN's autotuner move its speed.

Run: ``python -m bench.gpu_check [--models-dir DIR]`` (a GPU machine; prints one JSON object per
part as it finishes, then the whole). Not a goal row: ``bench_image --device cuda`` has those.

Parts:
  * ``auto``: a fresh ``precision: auto`` decision on this GPU (its own cache in a temp folder):
    the choice, the why-text, every candidate's speed-up and PSNR on the two probes, seconds taken;
  * ``job``: a 512x512 upscale through ``process_traced`` at the default config (device auto,
    precision auto, tile 256): the trace step's detail, and seconds cold (first) and warm;
  * ``tf32``: what torch's default TF32 convolutions do to "fp32" output (max and mean levels,
    PSNR against IEEE fp32) and to its speed: why ``fp32`` turns TF32 off;
  * ``tiles``: output MP/s of the provider's tiled inference on a 1024x1024 input (decode and
    encode left out) at each precision and tile 256, 512 and 0 (whole image), with cuDNN's
    autotuner off and on.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit_part


def _photo(size: int) -> bytes:
    from bench.bench_image import _image, _png

    return _png(_image(size))


def part_auto(models_dir: str, name: str) -> dict[str, Any]:
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings, cuda_auto_precision

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "precision.json"
        upscaler = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir), cuda_precision=cuda_auto_precision(cache))
        started = time.perf_counter()
        chosen, why = upscaler.precision(name, "cuda")
        took = time.perf_counter() - started
        entry = next(iter(json.loads(cache.read_text())["decisions"].values()), {}) if cache.exists() else {}
    return {"precision": chosen, "why": why, "seconds": round(took, 2), "measured": entry.get("measured")}


async def part_job(models_dir: str) -> dict[str, Any]:
    from providers.base import ImageAction, ImageConfig
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

    provider = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir))  # the defaults: auto, auto, tile 256
    data, out = _photo(512), {}
    for label in ("cold_s", "warm_s"):
        started = time.perf_counter()
        png, (step,) = await provider.process_traced(data, ImageAction.UPSCALE, ImageConfig(output_format="png"))
        out[label] = round(time.perf_counter() - started, 3)
    return {**out, "provider": step.provider, "detail": step.detail, "output_bytes": len(png)}


def part_tf32(models_dir: str, name: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from bench.bench_image import _image, interleaved_best
    from providers.image.precision_probes import psnr
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

    upscaler = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir, precision="fp32"))
    network = upscaler._model(name, "cuda", "fp32")[0]
    strict = upscaler._infer_fn(network, "cuda", "fp32")
    loose = upscaler._infer_fn(network, "cuda", "tf32-default")  # no precision of ours: torch's defaults
    img = np.asarray(_image(512))
    a, b = strict(img), loose(img)
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    best = interleaved_best({"ieee": lambda: strict(img), "tf32": lambda: loose(img)}, 3)
    return {"torch_default_tf32": bool(torch.backends.cudnn.allow_tf32), "max_levels": int(diff.max()),
            "mean_levels": round(float(diff.mean()), 4), "psnr_db": round(psnr(a, b), 2),
            "ieee_s": round(best["ieee"], 4), "tf32_s": round(best["tf32"], 4)}


def part_tiles(models_dir: str, name: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from bench.bench_image import _image
    from providers.image.gpu import CUDA_CANDIDATES, read_gpu_info
    from providers.image.precision import candidates_for
    from providers.image.tiling import run_tiled
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

    img, out_mp = np.asarray(_image(1024)), (1024 * 4) ** 2 / 1e6
    rows: dict[str, Any] = {}
    torch.cuda.reset_peak_memory_stats()  # this part's peak, not the earlier parts'

    for benchmark in (False, True):
        torch.backends.cudnn.benchmark = benchmark
        for precision in candidates_for(read_gpu_info(torch), CUDA_CANDIDATES):
            provider = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir, precision=precision))
            network = provider._model(name, "cuda", "fp16" if precision == "fp16" else "fp32")[0]
            infer = provider._infer_fn(network, "cuda", precision)
            for tile in (256, 512, 0):
                run_tiled(img, infer, scale=4, tile=tile, pad=16)  # warm: kernels, the autotuner
                best = float("inf")
                for _ in range(2):
                    started = time.perf_counter()
                    run_tiled(img, infer, scale=4, tile=tile, pad=16)
                    best = min(best, time.perf_counter() - started)
                rows[f"{precision} tile={tile} benchmark={'on' if benchmark else 'off'}"] = round(out_mp / best, 2)
            del provider, network, infer
            torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = False
    return {"out_mp_s_1024_input_tiles_only": rows, "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20)}


def main(argv: list[str] | None = None) -> None:
    import anyio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=None)
    args = parser.parse_args(argv)
    import torch

    from providers.image import pull as weights_pull
    from providers.image import weights

    models_dir = str(weights.resolve_models_dir(args.models_dir))
    assert weights_pull.pull(["realesrgan-anime-6b"], models_dir)["ok"]
    name = weights.entry("realesrgan-anime-6b").name
    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "cuda": torch.version.cuda}
    for key, run in (("auto", lambda: part_auto(models_dir, name)),
                     ("job", lambda: anyio.run(part_job, models_dir)),
                     ("tf32", lambda: part_tf32(models_dir, name)),
                     ("tiles", lambda: part_tiles(models_dir, name))):
        try:
            result[key] = run()
        except Exception as exc:  # one part failing keeps the others
            result[key] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        emit_part(key, result[key])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
