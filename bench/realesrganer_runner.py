"""Runs upstream ``realesrgan.RealESRGANer`` inside its own venv (``.bench-venvs/realesrgan``).

Executed as a script by that venv's python (``bench/ref_realesrganer.py`` drives it); it imports
nothing from this project, so it runs where only torch, torchvision, basicsr and realesrgan are.

    python realesrganer_runner.py check
    python realesrganer_runner.py serve --model W.pth --image IN.png --out OUT.png --threads N
    python realesrganer_runner.py rss --model W.pth --size S --tile T [--cap-gb G] [--one-tile]

``serve`` loads the model, upscales once (written to ``--out``, for the pixel comparison), prints
``{"ready": ...}`` and then times one ``enhance`` per ``run`` line on stdin, so the caller can
interleave it with its own contenders. ``rss`` upscales one ``S``x``S`` image in this fresh process
and prints its peak RSS (VmHWM), under an address-space cap when ``--cap-gb`` is given.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

# torchvision 0.28 from PyPI is built against CUDA torch: its C++ ops fail to load beside the CPU
# torch, and it then registers fake kernels for two of them unconditionally. Declaring their
# schemas first lets it import; nothing on the upscale path calls them.
_TORCHVISION_OPS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _import_realesrgan() -> tuple[Any, Any, Any]:
    """``(torch, RealESRGANer, RRDBNet)`` with the two compatibility shims installed first."""
    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for op, schema in _TORCHVISION_OPS.items():
            torch.library.define(f"torchvision::{op}", schema)
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
    import torchvision.transforms.functional as functional

    # basicsr 1.4.2 imports a module torchvision removed in 0.17; the functions it uses live on here
    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan import RealESRGANer

    return torch, RealESRGANer, RRDBNet


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _upsampler(model_path: str, tile: int, threads: int, device: str = "cpu", half: bool = False,
               ieee: bool = False) -> Any:
    torch, realesrganer, rrdbnet = _import_realesrgan()
    torch.set_num_threads(threads)
    if ieee:  # fp32 as IEEE fp32 on a GPU: torch's default lets cuDNN use TF32 there
        conv = getattr(torch.backends.cudnn, "conv", None)
        if getattr(conv, "fp32_precision", None) is not None:
            conv.fp32_precision = torch.backends.cudnn.rnn.fp32_precision = "ieee"
        else:
            torch.backends.cudnn.allow_tf32 = False
    net = rrdbnet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=6, num_grow_ch=32, scale=4)
    # pre_pad=0 as upstream's inference_realesrgan.py passes (the class default pads 10 px);
    # half=True on a GPU as its CLI does by default (--fp32 turns it off)
    return realesrganer(scale=4, model_path=model_path, model=net, tile=tile, tile_pad=10, pre_pad=0,
                        half=half, device=torch.device(device))


def check() -> None:
    """Import everything the bench needs and say which versions."""
    from importlib.metadata import version

    _import_realesrgan()
    print(json.dumps({name: version(name) for name in ("torch", "torchvision", "basicsr", "realesrgan")}))


def serve(args: argparse.Namespace) -> None:
    """Load once, write the first output, then time one ``enhance`` per ``run`` line on stdin."""
    import cv2

    upsampler = _upsampler(args.model, 0, args.threads, args.device, args.half, args.ieee)
    img = cv2.imread(args.image, cv2.IMREAD_UNCHANGED)  # BGR, as upstream's CLI reads it
    output, _ = upsampler.enhance(img, outscale=4)  # also the warm-up
    cv2.imwrite(args.out, output)
    torch = sys.modules["torch"]
    print(json.dumps({"ready": True, "threads": torch.get_num_threads(), "out_shape": list(output.shape),
                      "device": args.device, "half": args.half}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        started = time.perf_counter()
        upsampler.enhance(img, outscale=4)  # returns a numpy array: the GPU's work is done
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "model_seconds": _model_only(torch, upsampler)}), flush=True)


def _model_only(torch: Any, upsampler: Any) -> float:
    """Seconds of the network alone on the input ``enhance`` just prepared (``upsampler.img``,
    fp16 under ``half``), the device synchronised: how much of ``enhance`` is the model's."""
    sync = torch.cuda.synchronize if upsampler.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        sync()
        started = time.perf_counter()
        upsampler.model(upsampler.img)
        sync()
    return time.perf_counter() - started


def _one_real_tile(upsampler: Any, tile: int, pad: int) -> int:
    """Run the network on the first full-size tile only; the others get a same-shape stand-in.

    A tiled run frees each tile's activations before the next, so its peak is one full-size tile
    plus the whole-image buffers (input, output, post-processing copies), which every tile shares.
    """
    from torch.nn import functional as F  # noqa: N812

    network, full, calls = upsampler.model, tile + 2 * pad, {"real": 0}

    def forward(x: Any) -> Any:
        if calls["real"] == 0 and tuple(x.shape[-2:]) == (full, full):
            calls["real"] += 1
            return network(x)
        return F.interpolate(x, scale_factor=4, mode="nearest")

    upsampler.model = forward
    return full


def rss(args: argparse.Namespace) -> None:
    """One upscale in this fresh process; prints peak RSS, or where it failed under the cap."""
    if args.cap_gb:
        cap = int(args.cap_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    result: dict[str, Any] = {"input": f"{args.size}x{args.size}", "tile": args.tile, "cap_gb": args.cap_gb}
    started = time.perf_counter()
    try:
        import numpy as np

        upsampler = _upsampler(args.model, args.tile, args.threads)
        if args.one_tile:
            result["real_tile"] = _one_real_tile(upsampler, args.tile, upsampler.tile_pad)
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        output, _ = upsampler.enhance(img, outscale=4)
        result["out_shape"] = list(output.shape)
    except (RuntimeError, MemoryError) as exc:
        result["failed"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("check")
    serve_p = sub.add_parser("serve")
    serve_p.add_argument("--model", required=True)
    serve_p.add_argument("--image", required=True)
    serve_p.add_argument("--out", required=True)
    serve_p.add_argument("--threads", type=int, required=True)
    serve_p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    serve_p.add_argument("--half", action="store_true", help="fp16 weights and activations (GPU)")
    serve_p.add_argument("--ieee", action="store_true", help="fp32 without TF32 (GPU)")
    rss_p = sub.add_parser("rss")
    rss_p.add_argument("--model", required=True)
    rss_p.add_argument("--size", type=int, required=True)
    rss_p.add_argument("--tile", type=int, default=0)
    rss_p.add_argument("--threads", type=int, default=1)
    rss_p.add_argument("--cap-gb", type=float, default=0.0)
    rss_p.add_argument("--one-tile", action="store_true")
    args = parser.parse_args()
    {"check": lambda: check(), "serve": lambda: serve(args), "rss": lambda: rss(args)}[args.mode]()


if __name__ == "__main__":
    main()
