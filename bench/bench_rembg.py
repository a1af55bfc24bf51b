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
  * the rembg library in-process, session warm (reference: no startup in it).

``--setup`` makes ``.bench-venvs/rembg`` (git-ignored) with ``pip install "rembg[cpu,cli]"``.
Without that venv the rembg rows read "not measured". ``--quick``: 2 images, 1 round, no
``rembg i`` and no CLI startup row.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "fixtures" / "grace_hopper_256.jpg"
VENV = ROOT / ".bench-venvs" / "rembg"
REMBG_REQUIREMENT = "rembg[cpu,cli]"
NOT_MEASURED = "not measured: run python -m bench.bench_rembg --setup"

#: rembg's in-process loop, run by the venv's python: session loaded once, then timed.
_LIBRARY_SCRIPT = """
import json, sys, time
from pathlib import Path
from rembg import new_session, remove
files = sorted(Path(sys.argv[1]).iterdir())
session = new_session("u2netp")
remove(files[0].read_bytes(), session=session)
started = time.perf_counter()
for path in files:
    remove(path.read_bytes(), session=session)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def setup() -> dict[str, Any]:
    """Create the rembg venv (idempotent): its own interpreter, so rembg's pins touch nothing of ours."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", REMBG_REQUIREMENT],
        check=True,
    )
    version = subprocess.run([str(VENV / "bin" / "rembg"), "--version"], capture_output=True, text=True)
    return {"venv": str(VENV.relative_to(ROOT)), "rembg": version.stdout.strip()}


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


def make_remover(models_dir: str) -> Any:
    from providers.image.rembg_backend import RembgRemover, RembgSettings

    return RembgRemover(RembgSettings(model="u2netp", fallback_models=(), models_dir=models_dir))


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


# --- rembg -------------------------------------------------------------------------------------


def _rembg_env(models_dir: str) -> dict[str, str]:
    """U2NET_HOME holds u2netp.onnx with rembg's own md5, so rembg uses it and downloads nothing;
    OMP_NUM_THREADS would change rembg's thread count only (ours ignores it): left out."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return {**env, "U2NET_HOME": models_dir}


def cli_folder(in_dir: Path, out_dir: Path, models_dir: str) -> float:
    """Seconds of the whole ``rembg p`` command; every input must come out."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [str(VENV / "bin" / "rembg"), "p", str(in_dir), str(out_dir), "-m", "u2netp"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_rembg_env(models_dir), timeout=900)
    seconds = time.perf_counter() - started
    made = sorted(out_dir.glob("*.png")) if out_dir.exists() else []
    # rembg p prints per-image exceptions and carries on: a missing output is a failed run
    if proc.returncode != 0 or len(made) != len(list(in_dir.iterdir())):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise RuntimeError(f"rembg p made {len(made)} outputs, rc={proc.returncode}: {tail}")
    return seconds


def cli_single(files: list[Path], out_dir: Path, models_dir: str) -> float:
    """Seconds of one ``rembg i`` command per file, in turn."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _rembg_env(models_dir)
    started = time.perf_counter()
    for path in files:
        target = out_dir / f"{path.stem}.png"
        cmd = [str(VENV / "bin" / "rembg"), "i", "-m", "u2netp", str(path), str(target)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode != 0 or not target.exists():
            raise RuntimeError(f"rembg i failed rc={proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - started


def library(in_dir: Path, models_dir: str) -> float:
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", _LIBRARY_SCRIPT, str(in_dir)],
        capture_output=True, text=True, env=_rembg_env(models_dir), timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rembg library run failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def max_diff(ours: bytes, theirs: bytes, channels: slice) -> int:
    """Largest per-pixel difference over ``channels`` of RGBA, in 1/255 levels."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(ours)).convert("RGBA"))[..., channels].astype(int)
    b = np.asarray(Image.open(io.BytesIO(theirs)).convert("RGBA"))[..., channels].astype(int)
    return int(np.abs(a - b).max())


# --- the run -----------------------------------------------------------------------------------


def run(count: int, rounds: int, quick: bool, models_dir: str) -> dict[str, Any]:
    data = images(count)
    remover = make_remover(models_dir)
    ours_sequential(remover, data[:1])  # warm-up: both sessions loaded, first-use imports done
    ours_batch(remover, data[:2])
    have_venv = (VENV / "bin" / "rembg").exists()
    best: dict[str, float] = {}
    outputs: dict[str, list[bytes]] = {}

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
        for _ in range(rounds):
            seconds, outputs["sequential"] = ours_sequential(remover, data)
            keep("sequential", seconds)
            if have_venv:
                keep("cli_folder", cli_folder(in_dir, Path(tmp) / "out", models_dir))
            seconds, outputs["batch"] = ours_batch(remover, data)
            keep("batch", seconds)
            keep("dispatch", ours_dispatch(models_dir, data, Path(tmp) / "store"))
            if have_venv and not quick:
                keep("cli_startup", cli_folder(one_dir, Path(tmp) / "out1", models_dir))
                keep("cli_i", cli_single(files[:4], Path(tmp) / "outi", models_dir))
                keep("library", library(in_dir, models_dir))
        cli_out = [(Path(tmp) / "out" / p.name).read_bytes() for p in files] if have_venv else []

    result: dict[str, Any] = {
        "model": "u2netp",
        "input": "512x512",
        "images": count,
        "rounds": rounds,
        "cpu_threads": len(os.sched_getaffinity(0)),
        "load_average": round(os.getloadavg()[0], 2),
        "ours_sequential": _rate(count, best["sequential"]),
        "ours_batch": _rate(count, best["batch"], workers=min(count, len(os.sched_getaffinity(0)))),
        "ours_batch_dispatch": _rate(count, best["dispatch"], path="dispatch(remove_background, images=[base64...])"),
        "batch_identical_to_sequential": outputs["batch"] == outputs["sequential"],
    }
    if not have_venv:
        for name in ("rembg_cli_folder", "rembg_cli_startup_1_image", "rembg_cli_i", "rembg_library_in_process"):
            result[name] = NOT_MEASURED
        return result
    result["rembg_cli_folder"] = _rate(count, best["cli_folder"], command="rembg p <in> <out> -m u2netp")
    pairs = list(zip(outputs["sequential"], cli_out, strict=True))
    result["alpha_max_diff_vs_rembg_cli_levels"] = max(max_diff(a, b, slice(3, 4)) for a, b in pairs)
    result["rgba_max_diff_vs_rembg_cli_levels"] = max(max_diff(a, b, slice(0, 4)) for a, b in pairs)
    ratios = {
        "sequential_vs_cli_folder": best["cli_folder"] / best["sequential"],
        "batch_vs_cli_folder": best["cli_folder"] / best["batch"],
        "batch_vs_sequential": best["sequential"] / best["batch"],
        "batch_dispatch_vs_cli_folder": best["cli_folder"] / best["dispatch"],
    }
    if quick:
        result["rembg_cli_startup_1_image"] = result["rembg_cli_i"] = result["rembg_library_in_process"] = "skipped (--quick)"
    else:
        result["rembg_cli_startup_1_image"] = {"seconds": round(best["cli_startup"], 3), "command": "rembg p <dir with 1 image> <out> -m u2netp"}
        result["rembg_cli_i"] = _rate(4, best["cli_i"], command="rembg i -m u2netp <in> <out>, once per image")
        result["rembg_library_in_process"] = _rate(count, best["library"], command="rembg.remove(data, session=new_session('u2netp')), warm")
        ratios["sequential_vs_cli_i"] = (best["cli_i"] / 4) / (best["sequential"] / count)
        ratios["sequential_vs_rembg_library"] = best["library"] / best["sequential"]
        ratios["batch_vs_rembg_library"] = best["library"] / best["batch"]
        # the CLI's cost of one more image (its startup left out): where the ratio tends for large N
        if count > 1:
            marginal = max(best["cli_folder"] - best["cli_startup"], 1e-9) / (count - 1)
            ratios["batch_vs_cli_marginal_image"] = marginal / (best["batch"] / count)
    result["ratios"] = {name: round(value, 3) for name, value in ratios.items()}
    result["goals"] = {
        "sequential >= 1x rembg CLI folder": ratios["sequential_vs_cli_folder"] >= 1.0,
        "batch >= 2x rembg CLI folder": ratios["batch_vs_cli_folder"] >= 2.0,
    }
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
