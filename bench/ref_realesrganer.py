"""Upstream ``realesrgan.RealESRGANer`` as the bench's anchor, in its own venv.

    python -m bench.ref_realesrganer --setup     # once (a few minutes): builds .bench-venvs/realesrgan
    python -m bench.ref_realesrganer --check     # is it usable? prints the versions

The venv holds torch 2.13.0+cpu (the local wheel), torchvision 0.28.0 (the matching release; the
mirror has only its CUDA-linked build, whose C++ ops do not load beside CPU torch: see the shim in
``realesrganer_runner.py``), basicsr 1.4.2 and realesrgan 0.3.0 installed ``--no-deps`` (their
declared requirements pull ``tb-nightly``, GUI ``opencv-python``, ``facexlib``/``gfpgan``), and the
few packages basicsr imports. ``bench.bench_image`` uses it when present and otherwise reports the
RealESRGANer rows as not measured; it never builds the venv itself (that takes minutes).

The weights are the model store's ``realesrgan-anime-6b`` safetensors, saved as the ``.pth`` layout
upstream loads (``{"params_ema": state_dict}``) after checking every key has upstream's name.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venvs" / "realesrgan"
RUNNER = Path(__file__).with_name("realesrganer_runner.py")
SETUP_HINT = "run python -m bench.ref_realesrganer --setup"

#: What goes into the venv, step by step (each a ``pip install`` argument list).
INSTALL_STEPS: tuple[tuple[str, ...], ...] = (
    ("torch==2.13.0+cpu", "torchvision==0.28.0"),
    ("numpy==2.4.6", "opencv-python-headless==5.0.0.93", "scipy==1.17.1", "scikit-image==0.26.0",
     "pillow", "pyyaml", "requests", "tqdm", "addict", "future", "lmdb", "yapf"),
    ("--no-deps", "basicsr==1.4.2", "realesrgan==0.3.0"),
)


#: a Python where ``RealESRGANer`` imports, instead of the venv: a GPU machine's own (CUDA torch),
#: with basicsr and realesrgan on its path
PYTHON_ENV = "SWARM_REALESRGANER_PYTHON"


def python_path() -> Path:
    return Path(os.environ[PYTHON_ENV]) if os.environ.get(PYTHON_ENV) else VENV / "bin" / "python"


def check(timeout_s: float = 120) -> dict[str, Any] | None:
    """The venv's versions when ``RealESRGANer`` imports there, else ``None``."""
    return _check()[0]


def _check(timeout_s: float = 120) -> tuple[dict[str, Any] | None, str]:
    if not python_path().exists():
        return None, f"{python_path()} does not exist"
    proc = subprocess.run([str(python_path()), str(RUNNER), "check"], capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        return None, " | ".join(proc.stderr.strip().splitlines()[-2:])
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def setup(force: bool = False, log: Any = print) -> dict[str, Any]:
    """Build the venv unless it already works; returns the versions. Raises ``RuntimeError``.
    Refused while ``SWARM_REALESRGANER_PYTHON`` points the bench at another Python."""
    if os.environ.get(PYTHON_ENV):
        raise RuntimeError(f"{PYTHON_ENV} is set: the bench runs RealESRGANer with that Python, not the venv; "
                           "unset it to build the venv")
    if not force and (versions := check()) is not None:
        return {"status": "ready", **versions}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    # the venv's own pip, never SWARM_REALESRGANER_PYTHON's: that is a machine's own Python (CUDA torch)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in INSTALL_STEPS:
        log(f"ref_realesrganer: pip install {' '.join(step)}")
        proc = subprocess.run([*pip, *step], capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if not line.startswith("WARNING")]
            raise RuntimeError(f"pip install {' '.join(step)} failed: {' | '.join(errors[-3:])}")
    versions, why = _check()
    if versions is None:
        raise RuntimeError(f"{VENV} was built but RealESRGANer does not import there: {why}")
    return {"status": "built", "seconds": round(time.perf_counter() - started), **versions}


def upstream_keys(num_block: int) -> list[str]:
    """Parameter names of basicsr's ``RRDBNet`` (the names ``RealESRGANer`` loads strictly)."""
    convs = ["conv_first"]
    convs += [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    convs += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    return [f"{conv}.{kind}" for conv in convs for kind in ("weight", "bias")]


def write_pth(models_dir: str, out_dir: Path) -> Path:
    """The store's anime-6B safetensors as upstream's ``{"params_ema": state_dict}`` ``.pth``."""
    import torch
    from safetensors.torch import load_file

    from providers.image import weights
    state = load_file(str(weights.path_for("realesrgan-anime-6b", models_dir)))
    expected = upstream_keys(6)
    if sorted(state) != sorted(expected):
        odd = sorted(set(state) ^ set(expected))[:5]
        raise ValueError(f"anime-6B weights do not have upstream RRDBNet's key names (differ: {odd})")
    path = out_dir / "RealESRGAN_x4plus_anime_6B.pth"
    torch.save({"params_ema": {key: state[key] for key in expected}}, path)
    return path


class Server:
    """The runner's ``serve`` mode: one loaded ``RealESRGANer``, timed one ``enhance`` at a time."""

    def __init__(self, model: Path, image: Path, out: Path, threads: int, timeout_s: float = 300,
                 device: str = "cpu", half: bool = False, ieee: bool = False) -> None:
        self.out = out
        #: seconds of the network alone in each timed ``enhance`` (``realesrganer_runner._model_only``)
        self.model_seconds: list[float] = []
        self.proc = subprocess.Popen(
            [str(python_path()), str(RUNNER), "serve", "--model", str(model), "--image", str(image),
             "--out", str(out), "--threads", str(threads), "--device", device, *(["--half"] if half else []),
             *(["--ieee"] if ieee else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ready = self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.proc.wait(timeout=10)
        tail = (self.proc.stderr.read() if self.proc.stderr else "").strip().splitlines()[-1:]
        raise RuntimeError(f"RealESRGANer runner exited {self.proc.returncode}: {tail}")

    def time_once(self) -> float:
        """Seconds of one ``enhance(img, outscale=4)`` (measured inside the runner)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        reply = self._reply()
        if "model_seconds" in reply:
            self.model_seconds.append(float(reply["model_seconds"]))
        return float(reply["seconds"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rss_run(model: Path, size: int, tile: int, threads: int, cap_gb: float = 0.0, one_tile: bool = False,
            timeout_s: float = 300) -> dict[str, Any]:
    """Peak RSS of a fresh process upscaling ``size``x``size`` x4 with ``RealESRGANer(tile=...)``."""
    cmd = [str(python_path()), str(RUNNER), "rss", "--model", str(model), "--size", str(size),
           "--tile", str(tile), "--threads", str(threads), "--cap-gb", str(cap_gb)]
    try:
        proc = subprocess.run([*cmd, *(["--one-tile"] if one_tile else [])], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"input": f"{size}x{size}", "tile": tile, "error": f"took longer than {timeout_s:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:  # killed without a word (the kernel's OOM killer) or crashed
        tail = proc.stderr.strip().splitlines()[-1:]
        return {"input": f"{size}x{size}", "tile": tile, "cap_gb": cap_gb,
                "failed": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


#: (size, tile, cap_gb, one_tile): tile=0 at two sizes to show the scaling, tile=0 at 2048 under an
#: address-space cap (it needs tens of GB), and the tiled mode at 2048 (one real tile: see the runner).
RSS_PLAN_FULL = ((256, 0, 0.0, False), (512, 0, 0.0, False), (2048, 0, 8.0, False), (2048, 400, 0.0, True))
RSS_PLAN_QUICK = ((256, 0, 0.0, False),)


def measure_rss(models_dir: str, threads: int, quick: bool,
                seconds_left: Callable[[], float] = lambda: float("inf")) -> dict[str, Any]:
    """RealESRGANer's peak-RSS rows, or ``{"error": ...}`` when its venv is missing.

    Each run gets the time ``seconds_left()`` still allows (at most 300 s); a run with under 20 s
    left is not started and says so, so the rows before it are kept.
    """
    import tempfile

    if check() is None:
        return {"error": f"not measured: the RealESRGANer venv is missing ({SETUP_HINT})"}
    runs = []
    with tempfile.TemporaryDirectory(prefix="realesrganer-") as tmp:
        model = write_pth(models_dir, Path(tmp))
        for size, tile, cap, one in (RSS_PLAN_QUICK if quick else RSS_PLAN_FULL):
            left = seconds_left() - 5
            if left < 20:
                runs.append({"input": f"{size}x{size}", "tile": tile,
                             "error": "not run: the suite's time budget was spent"})
                continue
            runs.append(rss_run(model, size, tile, threads, cap, one, timeout_s=min(300.0, left)))
    return {"runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help=f"build {VENV.relative_to(ROOT)} unless it works")
    parser.add_argument("--force", action="store_true", help="with --setup: rebuild even if it works")
    parser.add_argument("--check", action="store_true", help="exit 1 unless RealESRGANer imports in the venv")
    args = parser.parse_args(argv)
    if args.setup:
        try:
            print(json.dumps(setup(force=args.force, log=lambda line: print(line, file=sys.stderr))))
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"ref_realesrganer: setup failed: {exc}", file=sys.stderr)
            return 1
        return 0
    versions = check()
    print(json.dumps(versions if versions is not None else {"error": f"venv missing or broken: {SETUP_HINT}"}))
    return 0 if versions is not None else 1


if __name__ == "__main__":
    sys.exit(main())
