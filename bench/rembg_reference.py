"""The rembg references of bench_rembg: its CLI (folder and per-image modes) and its library in-process,
run from their own venv (``.bench-venvs/rembg``) so rembg's pins touch nothing of ours."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venvs" / "rembg"
REMBG_REQUIREMENT = "rembg[cpu,cli]"

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
