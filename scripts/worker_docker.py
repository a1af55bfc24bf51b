"""What the worker-image scripts share: the project root, logging, and the Docker daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "runpod-swarm-worker"


def say(message: str) -> None:
    print(f"worker-image: {message}", flush=True)


def run(*cmd: str, check: bool = True, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, timeout=timeout)


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None) -> str:
    done = run("docker", *args, check=check, capture=capture, timeout=timeout)
    return (done.stdout or "").strip()


# --- the daemon and the base images -------------------------------------------------------


def ensure_daemon() -> None:
    """``docker info`` answers, or start ``dockerd`` (root only) and wait for it."""
    if shutil.which("docker") is None:
        sys.exit("worker-image: docker is not installed: apt-get install -y docker.io debootstrap")
    if run("docker", "info", check=False, capture=True).returncode == 0:
        return
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        sys.exit("worker-image: the Docker daemon does not answer; start it (as root: dockerd &)")
    log = ROOT / "build" / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"the Docker daemon does not answer; starting dockerd (log: {log})")
    subprocess.Popen(["dockerd"], stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(60):
        time.sleep(1)
        if run("docker", "info", check=False, capture=True).returncode == 0:
            return
    sys.exit(f"worker-image: dockerd did not come up in 60 s; see {log}")


def have_image(name: str) -> bool:
    return run("docker", "image", "inspect", name, check=False, capture=True).returncode == 0


def _human(size: float) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:.2f} GB"
    return f"{size / 1024**2:.0f} MB"
