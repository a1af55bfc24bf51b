"""Where our fp32 upscale's lead over RealESRGANer comes from: memory layout and grad mode.

    python -m bench.upscale_layout [--size 192] [--rounds 4]

Times, interleaved (best of ``--rounds`` after a warm-up each), our anime-6B network as the
provider runs it (channels_last, ``inference_mode``), the same network NCHW under
``inference_mode`` and under ``no_grad``, and upstream ``RealESRGANer.enhance`` (its own venv:
``python -m bench.ref_realesrganer --setup``). Prints seconds, GFLOP/s and the fraction of the
measured matmul peak for each. A diagnostic for bench/README.md, not a harness figure.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
from collections.abc import Callable
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--models-dir", default=None)
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from bench import bench_image
    from providers.image import archs, weights
    models_dir = str(weights.resolve_models_dir(args.models_dir))
    nchw, _ = archs.load(str(weights.path_for("realesrgan-anime-6b", models_dir)))
    channels_last = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    img = np.asarray(bench_image._image(args.size))
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float().div(255).contiguous()
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def ours(model: Any, inputs: Any, mode: Callable[[], Any]) -> None:
        with mode():
            model(inputs).float().clamp(0, 1).mul(255).round()

    contenders: dict[str, Callable[[], Any]] = {
        "ours channels_last inference_mode": lambda: ours(channels_last, x_cl, torch.inference_mode),
        "ours NCHW inference_mode": lambda: ours(nchw, x, torch.inference_mode),
        "ours NCHW no_grad": lambda: ours(nchw, x, torch.no_grad),
    }
    result: dict[str, Any] = {"input": f"{args.size}x{args.size}", "threads": torch.get_num_threads()}
    with contextlib.ExitStack() as stack:
        anchor = bench_image._realesrganer(stack, models_dir, args.size, torch.get_num_threads(), True)
        if isinstance(anchor, str):
            result["RealESRGANer"] = anchor
        else:
            contenders["RealESRGANer enhance"] = anchor.time_once
        best = bench_image.interleaved_best(contenders, args.rounds)
    flops = bench_image.conv_flops(nchw, args.size)
    peak = bench_image.matmul_peak("cpu")
    result |= {"conv_gflop": round(flops / 1e9, 1), "matmul_peak_gflop_s": round(peak / 1e9, 1)}
    for name, seconds in best.items():
        result[name] = {"seconds": round(seconds, 3), "gflop_s": round(flops / seconds / 1e9, 1),
                        "of_matmul_peak": round(flops / seconds / peak, 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
