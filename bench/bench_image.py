"""Image benchmarks: upscale throughput vs RealESRGANer and ncnn, and peak RSS (rembg: bench/bench_rembg.py).

Run: ``python -m bench.bench_image [--quick] [--device cpu|cuda] [--models-dir DIR] [--no-realesrganer]``.
Prints one JSON object. Same weights (the model store's realesrgan-anime-6b, converted from
the ncnn files the ``ncnn`` reference runs) and the same image for every contender.

Measured quantities:
  * upscale output megapixels/s for torch fp32, torch bf16 autocast (CPU) or fp16 (CUDA), ncnn
    fp32 and upstream ``RealESRGANer`` fp32 on CPU (its own venv: ``python -m
    bench.ref_realesrganer --setup``; without it those rows say "not measured"), timed in
    interleaved rounds; the ratios torch/RealESRGANer and torch/ncnn;
  * the fraction of the CPU's (or GPU's) measured matmul FLOP/s each contender reaches;
  * max per-channel difference of bf16/fp16, ncnn and RealESRGANer output vs our fp32, in 1/255
    levels;
  * peak RSS of a fresh process upscaling a 2048x2048 input x4 with tiling (default tile), and of
    ``RealESRGANer``: tile=0 at 256 and 512, tile=0 at 2048 under an 8 GB address-space cap, and
    tile=400 at 2048.

Each part is printed as it finishes (``bench.common.emit_part``): upscale speed first (the headline),
then our peak RSS (a goal row), then RealESRGANer's; the harness keeps the finished parts if the
suite is cut. The 2048x2048 peak-RSS run sizes itself to the time the harness gave the suite: all
tiles through the network when the fp32 speed just measured says it fits (~300 s on 2 cores),
else only the largest tile shapes, the other tiles a same-shape nearest-neighbour stand-in (the
peak is one tile's activations plus the whole-image buffers, the same either way: see
``stand_in_after_largest``). The row's name says which ran.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import emit_part, seconds_left
from bench.upscale_contenders import ncnn_runner, provider_ncnn_runner, upscale_auto

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "fixtures" / "grace_hopper_256.jpg"


def _image(size: int) -> Any:
    from PIL import Image

    return Image.open(PHOTO).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _timeit(fn: Any, repeat: int) -> float:
    fn()  # warm-up (allocator, kernels, first-use imports)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def conv_flops(model: Any, size: int) -> float:
    """FLOPs (2 x MACs) of the model's convolutions on a ``size`` x ``size`` input."""
    import torch

    total = 0.0

    def hook(module: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += 2.0 * output.numel() * module.in_channels // module.groups * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def matmul_peak(device: str) -> float:
    """Measured FLOP/s of a large fp32 matmul: the practical peak the convolutions compare to.

    4096: at 2048 MKL stays ~40% below its plateau on this CPU (111 vs 180 GFLOP/s on 2 cores).
    """
    import torch

    n = 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def run() -> None:
        (a @ b).sum().item()

    return 2 * n**3 / _timeit(run, 3)


def interleaved_best(contenders: dict[str, Callable[[], Any]], rounds: int, keep_s: float | None = None,
                     done: dict[str, int] | None = None) -> dict[str, float]:
    """Best seconds of each contender over ``rounds`` rounds that run each once, in turn.

    Interleaving spreads the load of the other processes on this machine over every contender
    alike; one warm-up call each comes first (allocator, kernels, first-use imports). A contender
    that returns a float reports its own seconds (the RealESRGANer runner times ``enhance`` in
    its process, so the pipe to it is not counted). With ``keep_s``, a round is not started
    when the last one's time would eat into the ``keep_s`` seconds the suite's later parts need
    (``seconds_left``): at least one round always runs, and ``done["rounds"]`` says how many did.
    """
    for fn in contenders.values():
        fn()
    best = dict.fromkeys(contenders, float("inf"))
    for index in range(rounds):
        started_round = time.perf_counter()
        for name, fn in contenders.items():
            started = time.perf_counter()
            reported = fn()
            took = reported if isinstance(reported, float) else time.perf_counter() - started
            best[name] = min(best[name], took)
        if done is not None:
            done["rounds"] = index + 1
        if keep_s is not None and seconds_left() - keep_s < time.perf_counter() - started_round:
            break
    return best


def bench_upscale(models_dir: str, device: str, size: int, rounds: int, realesrganer: bool) -> dict[str, Any]:
    """Output MP/s of our torch fp32 and bf16/fp16, ncnn fp32 and bf16 storage, and RealESRGANer
    fp32, interleaved."""
    import numpy as np
    import torch

    from providers.image import archs, weights
    path = weights.path_for("realesrgan-anime-6b", models_dir)
    model, _ = archs.load(str(path), device=device)
    model = model.to(memory_format=torch.channels_last)  # as the provider runs it
    img = np.asarray(_image(size))
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float().div(255).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    out_mp = (size * 4) ** 2 / 1e6

    half_model = copy.deepcopy(model).half() if device == "cuda" else None

    def run(precision: str) -> Any:
        with torch.inference_mode():
            if precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = model(x)
            elif precision == "fp16":
                y = half_model(x.half().contiguous(memory_format=torch.channels_last))
            else:
                y = model(x)
            return y.float().clamp(0, 1).mul(255).round().cpu()

    low = "fp16" if device == "cuda" else "bf16"
    result: dict[str, Any] = {"model": "realesrgan-anime-6b", "device": device, "input": f"{size}x{size}",
                              "threads": torch.get_num_threads(), "rounds": rounds}
    reference = run("fp32")
    contenders: dict[str, Callable[[], Any]] = {"torch_fp32": lambda: run("fp32")}
    missing = low_precision_missing(device)
    if missing:  # emulated bf16 runs ~10x slower than fp32: minutes of the suite's budget for nothing
        result[f"torch_{low}"] = missing
    else:
        lowp = run(low)
        result[f"torch_{low}_max_diff_levels"] = int((lowp - reference).abs().max())
        result[f"torch_{low}_mean_diff_levels"] = round(float((lowp - reference).abs().mean()), 4)
        contenders[f"torch_{low}"] = lambda: run(low)
    with contextlib.ExitStack() as stack:
        if device == "cpu":
            ncnn_run = ncnn_runner(img)
            if isinstance(ncnn_run, str):
                result["ncnn"] = ncnn_run
            else:
                contenders["ncnn_fp32"] = ncnn_run  # the anchor: ncnn as its users run it, whole image
                result["ncnn_vs_torch_fp32_max_diff_levels"] = int(np.abs(ncnn_run() - reference.numpy()[0]).max())
                # auto's ncnn candidates as the provider runs them (tail in strips, pools emptied)
                for name, bf16 in (("ncnn_ours_fp32", False), ("ncnn_bf16", True)):
                    contenders[name] = provider_ncnn_runner(img, bf16=bf16)
                    result[f"{name}_vs_torch_fp32_max_diff_levels"] = int(
                        np.abs(contenders[name]() - reference.numpy()[0]).max())
            anchor = _realesrganer(stack, models_dir, size, torch.get_num_threads(), realesrganer)
            if isinstance(anchor, str):
                result["realesrganer"] = anchor
            else:
                contenders["realesrganer_fp32"] = anchor.time_once
                result.update(_realesrganer_diff(anchor.out, reference.numpy()[0]))
        done: dict[str, int] = {}
        best = interleaved_best(contenders, rounds, keep_s=SPEED_KEEP_S, done=done)
    if done.get("rounds", rounds) < rounds:  # fewer rounds, not a lost row: the figures say so
        result["rounds"] = f"{done['rounds']} of {rounds}: the suite's time left kept for its goal rows"
    for name, seconds in best.items():
        result[f"{name}_out_mp_s"] = round(out_mp / seconds, 4)
    flops = conv_flops(model.float().cpu(), size)
    model.to(device)
    peak = matmul_peak(device)
    result["conv_gflop_per_image"] = round(flops / 1e9, 2)
    result["matmul_peak_gflop_s"] = round(peak / 1e9, 1)
    for name, seconds in best.items():
        result[f"{name}_fraction_of_matmul_peak"] = round(flops / seconds / peak, 3)
    return {**result, **_ratios(best, ("torch_fp32", f"torch_{low}", "ncnn_bf16"))}


def bench_upscale_cuda(models_dir: str, size: int, rounds: int, realesrganer: bool) -> dict[str, Any]:
    """On a CUDA GPU: output MP/s end to end (uint8 image in, uint8 image out, the copies to and
    from the GPU included) of the provider's own inference at each precision the GPU offers,
    against upstream ``RealESRGANer.enhance`` on the same GPU, fp16 (its CLI's default there) and
    IEEE fp32 (TF32 off, as ours), interleaved. Whole image, no tiles, for every contender
    (RealESRGANer ``tile=0``). ``enhance`` does its pre- and post-processing in float32 numpy on
    the CPU; its network alone (synchronised) is reported beside it (``..._model_out_mp_s``), so
    the row shows how much of the gap is the GPU's work."""
    import numpy as np
    import torch

    from providers.image import weights
    from providers.image.gpu import CUDA_CANDIDATES, read_gpu_info
    from providers.image.precision import candidates_for
    from providers.image.precision_probes import psnr
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

    name = weights.entry("realesrgan-anime-6b").name
    gpu = read_gpu_info(torch)
    upscaler = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir, device="cuda", precision="fp32"))
    img = np.asarray(_image(size))
    out_mp = (size * 4) ** 2 / 1e6
    result: dict[str, Any] = {"model": name, "device": "cuda", "gpu": f"{gpu.model} ({gpu.ident})",
                              "input": f"{size}x{size}", "rounds": rounds}
    runs: dict[str, Callable[[], Any]] = {}
    for precision in candidates_for(gpu, CUDA_CANDIDATES):
        network = upscaler._model(name, "cuda", "fp16" if precision == "fp16" else "fp32")[0]
        infer = upscaler._infer_fn(network, "cuda", precision)
        runs[f"torch_{precision}"] = lambda infer=infer: infer(img)
    reference = runs["torch_fp32"]()
    for label, run in runs.items():
        if label != "torch_fp32":
            out = run()
            diff = np.abs(out.astype(np.int16) - reference.astype(np.int16))
            result[f"{label}_max_diff_levels"] = int(diff.max())
            result[f"{label}_mean_diff_levels"] = round(float(diff.mean()), 4)
            result[f"{label}_psnr_db"] = round(psnr(reference, out), 2)
    torch.cuda.reset_peak_memory_stats()
    contenders: dict[str, Callable[[], Any]] = dict(runs)
    with contextlib.ExitStack() as stack:
        anchors = {}
        for half in (True, False):
            anchor = _realesrganer(stack, models_dir, size, torch.get_num_threads(), realesrganer, "cuda", half,
                                   ieee=not half)
            label = "realesrganer_fp16" if half else "realesrganer_fp32"
            if isinstance(anchor, str):
                result[label] = anchor
            else:
                contenders[label], anchors[label] = anchor.time_once, anchor
                result.update(_realesrganer_diff(anchor.out, reference.transpose(2, 0, 1), label))
        best = interleaved_best(contenders, rounds)
        for label, anchor in anchors.items():
            if anchor.model_seconds:
                result[f"{label}_model_out_mp_s"] = round(out_mp / min(anchor.model_seconds), 4)
    result["torch_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    for label, seconds in best.items():
        result[f"{label}_out_mp_s"] = round(out_mp / seconds, 4)
    for mine in runs:
        for anchor in ("realesrganer_fp16", "realesrganer_fp32"):
            if anchor in best:
                result[f"ratio_{mine}_vs_{anchor}"] = round(best[anchor] / best[mine], 3)
    return result


def _ratios(best: dict[str, float], ours: tuple[str, ...]) -> dict[str, float]:
    """``ratio_<ours>_vs_<anchor>``: the anchor's seconds over ours, for each pair timed."""
    return {f"ratio_{mine}_vs_{anchor.removesuffix('_fp32')}": round(best[anchor] / best[mine], 3)
            for anchor in ("ncnn_fp32", "realesrganer_fp32") if anchor in best for mine in ours if mine in best}


def low_precision_missing(device: str, cpu: Any = None) -> str | None:
    """Why the bench does not time torch bf16 on this CPU (none of the instructions that run it
    natively: it would be emulated, ~10x slower than fp32 on an AVX2-only AMD EPYC), or None."""
    from providers.image.cpu import named_flags
    from providers.image.precision import CPU_CANDIDATES, candidates_for, read_cpu_info

    if device != "cpu":
        return None
    cpu = cpu or read_cpu_info()
    if "bf16" in candidates_for(cpu):
        return None
    return f"not measured: this CPU has none of {', '.join(named_flags(cpu, CPU_CANDIDATES['bf16']))} (bf16 would run emulated)"


def _realesrganer(stack: contextlib.ExitStack, models_dir: str, size: int, threads: int,
                  wanted: bool, device: str = "cpu", half: bool = False, ieee: bool = False) -> Any:
    """A running ``ref_realesrganer.Server`` on the bench image (``device``; fp16 with ``half``),
    or why there is none."""
    from bench import ref_realesrganer

    if not wanted:
        return "not measured: --no-realesrganer"
    if ref_realesrganer.check() is None:
        return f"not measured: the RealESRGANer venv is missing ({ref_realesrganer.SETUP_HINT})"
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="realesrganer-")))
    _image(size).save(tmp / "in.png")
    weights = ref_realesrganer.write_pth(models_dir, tmp)
    try:
        return stack.enter_context(ref_realesrganer.Server(weights, tmp / "in.png", tmp / "out.png", threads,
                                                           device=device, half=half, ieee=ieee))
    except RuntimeError as exc:  # the runner failed to start (no CUDA in its torch, say): the row says why
        return f"not measured: {exc}"[:300]


def _realesrganer_diff(out_png: Path, reference_chw: Any, label: str = "realesrganer") -> dict[str, Any]:
    """RealESRGANer's output (BGR from cv2, written as a PNG, read back as RGB) vs our fp32, under
    ``<label>_vs_torch_fp32_...`` keys."""
    import numpy as np
    from PIL import Image

    theirs = np.asarray(Image.open(out_png).convert("RGB"), dtype=np.float32)
    ours = np.transpose(reference_chw, (1, 2, 0))
    diff = np.abs(theirs - ours)
    return {f"{label}_vs_torch_fp32_max_diff_levels": int(diff.max()),
            f"{label}_vs_torch_fp32_mean_diff_levels": round(float(diff.mean()), 4)}


def _peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM belongs to the process's own memory map; ru_maxrss would
    carry over the high-water mark of the parent that forked it (Linux keeps it across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def stand_in_after_largest(infer: Callable[[Any], Any], scale: int, counts: dict[str, int]) -> Callable[[Any], Any]:
    """``infer`` for the first tile of each shape; a nearest-neighbour stand-in of the same output
    shape (uint8) for every later tile of a shape already run.

    Tiled memory is the whole-image buffers plus one tile's activations, freed before the next
    tile, so running the network on every tile *shape* (corner, top and left edges, interior: the
    largest) reaches the same peak as running it on all of them, in a few tiles' time; each new
    shape also gets its own oneDNN primitives and scratch, which is why shapes of equal area count
    apart. ``counts`` tallies both kinds.
    """
    import numpy as np

    shapes: set[tuple[int, int]] = set()

    def run(piece: Any) -> Any:
        shape = (int(piece.shape[0]), int(piece.shape[1]))
        if shape not in shapes:
            shapes.add(shape)
            counts["real"] = counts.get("real", 0) + 1
            return infer(piece)
        counts["stand_in"] = counts.get("stand_in", 0) + 1
        return np.repeat(np.repeat(piece, scale, axis=0), scale, axis=1)

    return run


def rss_child(models_dir: str, size: int, device: str, stand_in: bool = False, precision: str = "fp32") -> None:
    """Run in a fresh process: upscale ``size``x``size`` x4 through the provider at ``precision``
    (the path ``precision: auto`` chose in this run), print peak RSS."""
    import anyio

    from providers.base import ImageAction, ImageConfig
    from providers.image.imageio import ImageLimits
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

    data = _png(_image(size))
    settings = UpscaleSettings(models_dir=models_dir, device=device, precision=precision)
    provider = RealESRGANUpscaler(settings, ImageLimits(max_output_pixels=1 << 30))
    counts: dict[str, int] = {}
    if stand_in:  # the provider's own tiling and buffers; only most tiles skip the network
        infer_fn = provider._infer_fn
        provider._infer_fn = lambda *a: stand_in_after_largest(infer_fn(*a), 4, counts)  # type: ignore[method-assign]
    started = time.perf_counter()
    out, steps = anyio.run(provider.process_traced, data, ImageAction.UPSCALE, ImageConfig())
    peak_kib = _peak_rss_kib()
    report = {"input": f"{size}x{size}", "precision": precision, "seconds": round(time.perf_counter() - started, 1),
              "peak_rss_mb": round(peak_kib / 1024, 1), "output_bytes": len(out), "detail": steps[0].detail}
    if stand_in:
        report.update(tiles_real=counts.get("real", 0), tiles_stand_in=counts.get("stand_in", 0))
    print(json.dumps(report))


def full_rss_fits(size: int, out_mp_s: float | None, seconds_left: float) -> bool:
    """Whether every tile of a ``size`` x4 upscale can go through the network in ``seconds_left``:
    the output megapixels at the speed just measured for that path, +60% and 30 s for start, decode, encode."""
    if not out_mp_s:
        return False
    # x1.6: the 2048 tiles ran slower than the 192x192 speed says (a full run at 0.41 MP/s measured
    # went past 233 s on the AMX Xeon, losing the row); the stand-in's time is kept back too
    return (4 * size) ** 2 / 1e6 / out_mp_s * 1.6 + 30 + STAND_IN_RESERVE_S <= seconds_left


def bench_rss(models_dir: str, size: int, device: str, timeout: float, stand_in: bool = False,
              precision: str = "fp32") -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.bench_image", "--rss-child", str(size), "--models-dir", models_dir,
           "--device", device, "--rss-precision", precision, *(["--rss-stand-in"] if stand_in else [])]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"input": f"{size}x{size}", "error": f"took longer than {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"input": f"{size}x{size}", "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: Seconds the speed part's rounds leave to the suite's later goal parts: auto's choice (30 s),
#: our 2048x2048 peak RSS on the stand-in (60 s)
SPEED_KEEP_S = 90.0
#: Seconds kept for RealESRGANer's peak-RSS rows (256 and 512 tile=0, 2048 capped, 2048 one tile).
REALESRGANER_RSS_RESERVE_S = 150.0
#: Seconds a full peak-RSS run leaves for the stand-in run, should it run out of time
STAND_IN_RESERVE_S = 45.0


def our_rss(models_dir: str, size: int, device: str, path: tuple[str, float | None], reserve_s: float) -> dict[str, Any]:
    """Our peak RSS at ``size`` on ``path`` (the precision auto chose and its output MP/s): all
    tiles when the budget allows, else the stand-in run."""
    precision, out_mp_s = path
    left = seconds_left(default=3600.0) - reserve_s
    full = full_rss_fits(size, out_mp_s, left)
    timeout = max(60.0, min(1800.0, left - STAND_IN_RESERVE_S if full else left))
    result = bench_rss(models_dir, size, device, timeout=timeout, stand_in=not full, precision=precision)
    if not full and "peak_rss_mb" in result:
        result["why_stand_in"] = (f"all tiles at {out_mp_s or 0:.2f} MP/s would not fit the "
                                  f"{max(left, 0):.0f} s left to the suite")
    elif full and "peak_rss_mb" not in result:  # all tiles ran out of time: the stand-in keeps the row
        failed = result.get("error")
        result = bench_rss(models_dir, size, device, timeout=max(30.0, seconds_left(default=3600.0) - reserve_s),
                           stand_in=True, precision=precision)
        if "peak_rss_mb" in result:
            result["why_stand_in"] = f"the run of all tiles failed ({failed}); the stand-in measured it"
    return result


def rss_realesrganer(models_dir: str, device: str, quick: bool, wanted: bool) -> dict[str, Any]:
    """Peak RSS of upstream RealESRGANer: tile=0 at growing sizes (and at 2048 under a cap), tiled."""
    from bench import ref_realesrganer

    if not wanted or device != "cpu":
        return {"error": "not measured: --no-realesrganer" if not wanted else "not measured: CPU rows only"}
    import torch

    return ref_realesrganer.measure_rss(models_dir, torch.get_num_threads(), quick, seconds_left)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    parser.add_argument("--rss-size", type=int, default=2048)
    parser.add_argument("--speed-only", action="store_true",
                        help="the upscale speed part only (the GPU suite: peak RSS is the CPU suite's)")
    parser.add_argument("--realesrganer", action=argparse.BooleanOptionalAction, default=True,
                        help="measure upstream RealESRGANer as the anchor when its venv exists "
                             "(python -m bench.ref_realesrganer --setup builds it)")
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-stand-in", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from providers.image import pull as weights_pull
    from providers.image import weights
    models_dir = str(weights.resolve_models_dir(args.models_dir))
    if args.rss_child:
        rss_child(models_dir, args.rss_child, args.device, args.rss_stand_in, args.rss_precision)
        return
    report = weights_pull.pull(["realesrgan-anime-6b", "u2netp"], models_dir)
    if not report["ok"]:
        print(json.dumps({"error": "model pull failed", "report": report}))
        sys.exit(1)
    size, repeat = (64, 1) if args.quick else (192, 3)
    result: dict[str, Any] = {"cpu_threads": len(os.sched_getaffinity(0))}

    def part(key: str, value: Any) -> None:  # on stdout at once: a cut or a crash later keeps it
        result[key] = value
        emit_part(key, value)

    if args.device == "cuda":  # a GPU: a larger image (192x192 is launch overhead there), and the auto choice
        part("upscale", bench_upscale_cuda(models_dir, 128 if args.quick else 512, 2 if args.quick else 5,
                                           args.realesrganer))
        part("upscale_auto", upscale_auto(models_dir, "cuda", result["upscale"]))
        print(json.dumps(result, indent=2))
        return
    part("upscale", bench_upscale(models_dir, args.device, size, repeat, args.realesrganer))
    if args.speed_only:
        print(json.dumps(result, indent=2))
        return
    # what a user gets by default carries the goals: measured before the peak-RSS rows. The choice
    # times each candidate on two 64x64 probes: 10.2 s on a 2-core AMD EPYC (AVX2); the threshold
    # was 120 s, which a suite with 115 s left skipped silently, leaving the goals on pinned fp32.
    # Skipped, its rows still say why (adapters.image)
    left = seconds_left()
    part("upscale_auto", upscale_auto(models_dir, args.device, result["upscale"]) if left > 30 else
         {"error": f"not measured: {left:.0f} s left to the suite, under the 30 s the choice needs"})
    reserve = REALESRGANER_RSS_RESERVE_S if args.realesrganer and not args.quick else 0.0
    # the peak of what a user gets by default: the path auto chose (fp32 where it chose none)
    auto = result["upscale_auto"]
    path = ((auto["precision"], auto.get("out_mp_s")) if auto.get("precision") else
            ("fp32", result["upscale"].get("torch_fp32_out_mp_s")))
    part("peak_rss_upscale", our_rss(models_dir, 256 if args.quick else args.rss_size, args.device, path, reserve))
    part("peak_rss_realesrganer", rss_realesrganer(models_dir, args.device, args.quick, args.realesrganer))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
