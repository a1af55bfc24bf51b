"""Background removal images/s: our provider (sequential and batch) vs the ``rembg`` CLI.

Run: ``python -m bench.bench_rembg [--setup] [--quick] [--images N] [--rounds R]``.
Prints one JSON object.

Contenders, all on the same N images (512x512 variants of tests/fixtures/grace_hopper_256.jpg,
resized as bench/bench_image.py does) and the same u2netp file (the model store's, verified by
sha256; rembg finds it through ``U2NET_HOME`` and never downloads), run interleaved round by
round, best round kept:

  * ours, sequential: ``RembgRemover.process`` once per image, in-process, session warm;
  * ours, batch: one ``RembgRemover.process_batch`` call on all N images;
  * ours, batch through the door: one ``remove_background`` job with ``images`` (base64) through
    ``swarm.dispatcher.dispatch``: input checks, storage writes (local) and the graph included;
  * the rembg CLI, folder mode: ``rembg p <in> <out> -m u2netp`` on the N images: the whole
    command is timed (interpreter start, imports and model load included: that is what a user
    of the CLI pays), nothing subtracted; its startup alone is the same command on 1 image;
  * the rembg CLI, one image per command: ``rembg i <in> <out> -m u2netp`` (reference);
  * the rembg library in-process, session warm (reference: no startup in it);
  * ours with ``precision: auto``: the path chosen on this machine (measured afresh, its cache in
    a temp dir: onnxruntime fp32, ncnn fp32/bf16 storage or torch bf16/fp16 within the mask
    floor), batch, against fp32 and against the rembg library (goal: batch >= 2x the library
    warm in-process); its alpha against the fp32 batch's, worst image (``vs_fp32_batch_worst``:
    IoU, mean levels).

Every figure is printed as a ``bench-part`` the moment it is measured (again after each round,
best so far), so a cut run keeps them; the slow rows (the CLI per image, the CLI startup, the
library, the auto decision, further rounds) run only when ``BENCH_DEADLINE`` leaves them time,
estimated from this machine's first round, else they say why they were skipped.

``--setup`` makes ``.bench-venvs/rembg`` (git-ignored) with ``pip install "rembg[cpu,cli]"``.
Without that venv the rembg rows read "not measured". ``--quick``: 2 images, 1 round, no
``rembg i`` and no CLI startup row.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit_part, seconds_left
from bench.rembg_reference import VENV, cli_folder, cli_single, library, max_diff, setup

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "fixtures" / "grace_hopper_256.jpg"
NOT_MEASURED = "not measured: run python -m bench.bench_rembg --setup"
#: seconds kept free at the end for the summary and the harness
RESERVE_S = 10.0

def images(count: int, size: int = 512) -> list[bytes]:
    """``count`` distinct PNGs: the photo at ``size``x``size``, mirrored and brightened in turn."""
    from PIL import Image, ImageEnhance, ImageOps

    base = Image.open(PHOTO).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    out = []
    for index in range(count):
        img = ImageOps.mirror(base) if index % 2 else base
        img = ImageEnhance.Brightness(img).enhance(1.0 + 0.02 * (index // 2))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _rate(count: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"images_per_s": round(count / seconds, 3), "seconds": round(seconds, 3), "images": count, **extra}


# --- ours ------------------------------------------------------------------------------------


def make_remover(models_dir: str, precision: str = "fp32", cache: Path | None = None) -> Any:
    """Our remover on u2netp; ``precision: auto`` with its decision cache at ``cache``."""
    from providers.image.precision import AutoPrecision, read_cpu_info
    from providers.image.rembg_backend import RembgRemover, RembgSettings
    from providers.image.rembg_paths import PROBE_SIZE

    settings = RembgSettings(model="u2netp", fallback_models=(), models_dir=models_dir, precision=precision)
    auto = AutoPrecision(cache, read_cpu_info, probe_size=PROBE_SIZE, rounds=2) if cache else None
    return RembgRemover(settings, auto_precision=auto)


def auto_decision(models_dir: str, cache: Path) -> tuple[Any, dict[str, Any]]:
    """A ``precision: auto`` remover, warmed (its decision measured now), and what it chose."""
    from providers.base import ImageAction, ImageConfig

    remover = make_remover(models_dir, "auto", cache)
    started = time.perf_counter()
    _, (step,) = anyio_run(remover.process_traced, PHOTO.read_bytes(), ImageAction.REMOVE_BACKGROUND, ImageConfig())
    decided_s = time.perf_counter() - started
    (decision,) = json.loads(cache.read_text())["decisions"].values() if cache.exists() else [None]
    path = step.detail.split("path=", 1)[1].split(" (", 1)[0]
    why = step.detail.split(" (", 1)[1].split(") size=", 1)[0]
    return remover, {"path": path, "why": why, "decided_s": round(decided_s, 2),
                     "measured": decision["measured"] if decision else {}}


def anyio_run(fn: Any, *args: Any) -> Any:
    import anyio

    return anyio.run(fn, *args)


def ours_sequential(remover: Any, data: list[bytes]) -> tuple[float, list[bytes]]:
    import anyio

    from providers.base import ImageAction, ImageConfig

    async def run() -> list[bytes]:
        return [await remover.process(one, ImageAction.REMOVE_BACKGROUND, ImageConfig()) for one in data]

    started = time.perf_counter()
    out = anyio.run(run)
    return time.perf_counter() - started, out


def ours_batch(remover: Any, data: list[bytes]) -> tuple[float, list[bytes]]:
    import anyio

    from providers.base import ImageAction, ImageConfig

    started = time.perf_counter()
    outcome = anyio.run(remover.process_batch, data, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    seconds = time.perf_counter() - started
    failed = [item.error for item in outcome.items if item.error]
    if failed:
        raise RuntimeError(f"batch had failures: {failed[:2]}")
    return seconds, [item.data for item in outcome.items]


def ours_dispatch(models_dir: str, data: list[bytes], storage_dir: Path) -> float:
    """Seconds of one remove_background job with ``images`` through the dispatcher."""
    import base64

    import anyio

    from core.config import load_config
    from graphs.context import JobContext, Providers
    from providers.image.imageio import ImageLimits
    from providers.image.rembg_backend import RembgRemover
    from providers.storage.local import LocalStorage
    from swarm.dispatcher import dispatch

    config = load_config(ROOT / "config.yaml")
    remover = RembgRemover.from_config("remove_background", config.providers.image.rembg, models_dir=models_dir,
                                       limits=ImageLimits.from_config(config))
    storage = LocalStorage(storage_dir)
    providers = Providers(config, {"storage": lambda: storage, "remove_background": lambda: remover})

    async def make(job_id: str) -> JobContext:
        return JobContext(job_id=job_id, config=config, providers=providers)

    images = [{"image": base64.b64encode(one).decode()} for one in data]

    async def run(job_id: str) -> None:
        job = {"project": "image_tools", "action": "remove_background", "job_id": job_id,
               "input": {"images": images, "model": "u2netp"}}
        result = await dispatch(job, make)
        if result["status"] != "COMPLETED" or result["output"]["failed"]:
            raise RuntimeError(f"dispatch batch failed: {result['error'] or result['output']['results'][:1]}")

    anyio.run(run, "warm-up")
    started = time.perf_counter()
    anyio.run(run, "timed")
    return time.perf_counter() - started


# --- the run -----------------------------------------------------------------------------------


def _fits(seconds: float, what: str, skipped: dict[str, str]) -> bool:
    """Whether ``seconds`` of work fit before the deadline; if not, say so in ``skipped``."""
    left = seconds_left() - RESERVE_S
    if seconds <= left:
        return True
    skipped[what] = f"skipped: needs ~{seconds:.0f} s on this machine, {max(left, 0):.0f} s of the budget left"
    return False


def run(count: int, rounds: int, quick: bool, models_dir: str) -> dict[str, Any]:
    data = images(count)
    remover = make_remover(models_dir)
    ours_sequential(remover, data[:1])  # warm-up: both sessions loaded, first-use imports done
    ours_batch(remover, data[:2])
    have_venv = (VENV / "bin" / "rembg").exists()
    best: dict[str, float] = {}
    outputs: dict[str, list[bytes]] = {}
    skipped: dict[str, str] = {}
    auto: dict[str, Any] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(seconds, best.get(name, float("inf")))

    with tempfile.TemporaryDirectory() as tmp:
        in_dir, one_dir = Path(tmp) / "in", Path(tmp) / "one"
        in_dir.mkdir()
        one_dir.mkdir()
        for index, blob in enumerate(data):
            (in_dir / f"img{index:03d}.png").write_bytes(blob)
        (one_dir / "img000.png").write_bytes(data[0])
        files = sorted(in_dir.iterdir())
        auto_remover = None
        for round_number in range(rounds):
            # a round costs about what the first one did; later rounds only sharpen the figures
            if round_number and not _fits(best["round"], f"round {round_number + 1}", skipped):
                break
            started = time.perf_counter()
            seconds, outputs["sequential"] = ours_sequential(remover, data)
            keep("sequential", seconds)
            per_image = best["sequential"] / count
            if have_venv and _fits(count * per_image * 2 + 15, "rembg_cli_folder", skipped):
                keep("cli_folder", cli_folder(in_dir, Path(tmp) / "out", models_dir))
            seconds, outputs["batch"] = ours_batch(remover, data)
            keep("batch", seconds)
            keep("dispatch", ours_dispatch(models_dir, data, Path(tmp) / "store"))
            if not auto and _fits(60 + count * per_image, "auto", skipped):
                auto_remover, auto = auto_decision(models_dir, Path(tmp) / "precision.json")
                ours_batch(auto_remover, data[:2])  # warm-up: its batch sessions
                started += auto["decided_s"]  # once only: not part of what a further round costs
            if auto_remover is not None and auto["path"] != "fp32":
                seconds, outputs["auto"] = ours_batch(auto_remover, data)
                keep("auto", seconds)
            if have_venv and not quick:
                _rembg_slow_rows(keep, skipped, per_image, count, Path(tmp), models_dir)
            keep("round", time.perf_counter() - started)
            cli_out = [(Path(tmp) / "out" / p.name).read_bytes() for p in files] if "cli_folder" in best else []
            for key, value in summarize(count, rounds, quick, best, outputs, cli_out, auto, skipped).items():
                emit_part(key, value)  # the figures so far, on the harness's side now
        return summarize(count, rounds, quick, best, outputs, cli_out, auto, skipped)


def _rembg_slow_rows(keep: Any, skipped: dict[str, str], per_image: float, count: int, tmp: Path,
                     models_dir: str) -> None:
    """The rembg CLI's startup, ``rembg i`` per image and the library in-process, where time allows."""
    if _fits(20, "cli_startup", skipped):
        keep("cli_startup", cli_folder(tmp / "one", tmp / "out1", models_dir))
    if _fits(4 * (per_image * 2 + 12), "cli_i", skipped):
        keep("cli_i", cli_single(sorted((tmp / "in").iterdir())[:4], tmp / "outi", models_dir))
    if _fits(count * per_image * 2 + 20, "library", skipped):
        keep("library", library(tmp / "in", models_dir))


def _auto_summary(count: int, workers: int, best: dict[str, float], auto: dict[str, Any],
                  skipped: dict[str, str], ratios: dict[str, float], outputs: dict[str, list[bytes]]) -> Any:
    """``precision: auto``'s part: what it chose, why, its batch images/s; its ratios into ``ratios``."""
    if not auto:
        return skipped.get("auto", "not measured yet")
    same = auto["path"] == "fp32"  # auto runs exactly the fp32 rows' path: their figure is its figure
    seconds = best["batch"] if same else best.get("auto")
    if seconds:
        ratios["auto_batch_vs_fp32_batch"] = best["batch"] / seconds
        if "library" in best:
            ratios["auto_batch_vs_rembg_library"] = best["library"] / seconds
    floor = {} if same or "auto" not in outputs else {"vs_fp32_batch_worst": _worst_mask_scores(outputs)}
    return {**auto, **(_rate(count, seconds, workers=workers) if seconds else {}), **floor,
            "timed": "the fp32 batch (same path)" if same else "batch, interleaved with fp32"}


def _worst_mask_scores(outputs: dict[str, list[bytes]]) -> dict[str, float]:
    """The auto batch's alpha against the fp32 batch's, image by image: lowest IoU, highest mean diff."""
    import numpy as np
    from PIL import Image

    from providers.image.rembg_paths import mask_scores

    def alpha(data: bytes) -> Any:
        return np.asarray(Image.open(io.BytesIO(data)))[..., 3]

    scores = [mask_scores(alpha(ref), alpha(out)) for ref, out in zip(outputs["batch"], outputs["auto"], strict=True)]
    return {"iou": round(min(s["iou"] for s in scores), 4), "alpha_diff": round(max(s["alpha_diff"] for s in scores), 3)}


def summarize(count: int, rounds: int, quick: bool, best: dict[str, float], outputs: dict[str, list[bytes]],
              cli_out: list[bytes], auto: dict[str, Any], skipped: dict[str, str]) -> dict[str, Any]:
    """The suite's summary object from the best times so far (what ``adapters.rembg`` reads)."""
    workers = min(count, len(os.sched_getaffinity(0)))
    result: dict[str, Any] = {
        "model": "u2netp",
        "input": "512x512",
        "images": count,
        "rounds": rounds,
        "cpu_threads": len(os.sched_getaffinity(0)),
        "load_average": round(os.getloadavg()[0], 2),
        "ours_sequential": _rate(count, best["sequential"], precision="fp32"),
        "ours_batch": _rate(count, best["batch"], workers=workers, precision="fp32"),
        "ours_batch_dispatch": _rate(count, best["dispatch"], path="dispatch(remove_background, images=[base64...])"),
        "batch_identical_to_sequential": outputs["batch"] == outputs["sequential"],
    }
    ratios: dict[str, float] = {}
    result["auto"] = _auto_summary(count, workers, best, auto, skipped, ratios, outputs)
    if skipped:
        result["skipped"] = dict(skipped)
    if "cli_folder" not in best:
        for name in ("rembg_cli_folder", "rembg_cli_startup_1_image", "rembg_cli_i", "rembg_library_in_process"):
            result[name] = NOT_MEASURED if not (VENV / "bin" / "rembg").exists() else skipped.get("rembg_cli_folder", "")
        result["ratios"] = {name: round(value, 3) for name, value in ratios.items()}
        return result
    result["rembg_cli_folder"] = _rate(count, best["cli_folder"], command="rembg p <in> <out> -m u2netp")
    if cli_out:
        pairs = list(zip(outputs["sequential"], cli_out, strict=True))
        result["alpha_max_diff_vs_rembg_cli_levels"] = max(max_diff(a, b, slice(3, 4)) for a, b in pairs)
        result["rgba_max_diff_vs_rembg_cli_levels"] = max(max_diff(a, b, slice(0, 4)) for a, b in pairs)
    ratios.update({
        "sequential_vs_cli_folder": best["cli_folder"] / best["sequential"],
        "batch_vs_cli_folder": best["cli_folder"] / best["batch"],
        "batch_vs_sequential": best["sequential"] / best["batch"],
        "batch_dispatch_vs_cli_folder": best["cli_folder"] / best["dispatch"],
    })
    if quick:
        result["rembg_cli_startup_1_image"] = result["rembg_cli_i"] = result["rembg_library_in_process"] = "skipped (--quick)"
    else:
        result["rembg_cli_startup_1_image"] = ({"seconds": round(best["cli_startup"], 3), "command": "rembg p <dir with 1 image> <out> -m u2netp"}
                                               if "cli_startup" in best else skipped.get("cli_startup"))
        result["rembg_cli_i"] = (_rate(4, best["cli_i"], command="rembg i -m u2netp <in> <out>, once per image")
                                 if "cli_i" in best else skipped.get("cli_i"))
        result["rembg_library_in_process"] = (_rate(count, best["library"], command="rembg.remove(data, session=new_session('u2netp')), warm")
                                              if "library" in best else skipped.get("library"))
        if "cli_i" in best:
            ratios["sequential_vs_cli_i"] = (best["cli_i"] / 4) / (best["sequential"] / count)
        if "library" in best:
            ratios["sequential_vs_rembg_library"] = best["library"] / best["sequential"]
            ratios["batch_vs_rembg_library"] = best["library"] / best["batch"]
        # the CLI's cost of one more image (its startup left out): where the ratio tends for large N
        if count > 1 and "cli_startup" in best:
            marginal = max(best["cli_folder"] - best["cli_startup"], 1e-9) / (count - 1)
            ratios["batch_vs_cli_marginal_image"] = marginal / (best["batch"] / count)
    result["ratios"] = {name: round(value, 3) for name, value in ratios.items()}
    result["goals"] = {
        "sequential >= 1x rembg CLI folder": ratios["sequential_vs_cli_folder"] >= 1.0,
        "batch >= 2x rembg CLI folder": ratios["batch_vs_cli_folder"] >= 2.0,
    }
    if "auto_batch_vs_rembg_library" in ratios:
        result["goals"]["auto batch >= 2x rembg library in-process"] = ratios["auto_batch_vs_rembg_library"] >= 2.0
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help=f"create {VENV.relative_to(ROOT)} with rembg's CLI first")
    parser.add_argument("--quick", action="store_true", help="2 images, 1 round (smoke run)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models-dir", default=None)
    args = parser.parse_args(argv)
    from providers.image import pull as weights_pull
    from providers.image import weights
    models_dir = str(weights.resolve_models_dir(args.models_dir))
    report = weights_pull.pull(["u2netp"], models_dir)
    if not report["ok"]:
        print(json.dumps({"error": "model pull failed", "report": report}))
        sys.exit(1)
    installed = setup() if args.setup else None
    count, rounds = (2, 1) if args.quick else (args.images, args.rounds)
    result = run(count, rounds, args.quick, models_dir)
    if installed:
        result["setup"] = installed
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
