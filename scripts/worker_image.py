"""``scripts/worker-image``: build the RunPod worker image and check it against a local endpoint.

``build --variant cpu|cuda`` makes the wheelhouse from the hash-checked locks (``pip download
--require-hashes``), makes the base images locally when the defaults cannot be pulled (Debian
bookworm via debootstrap, and says so), runs ``docker build`` and prints the image size and the
build time. ``check`` serves RunPod's API on the host (``swarm endpoint serve``), runs the image
as two real RunPod workers attached to it, submits every action through the public API and
requires each job to COMPLETE with its trace; it prints the cold start of a container next to
``python handler.py`` started on the host (the anchor). ``check --chaos`` SIGKILLs the worker
running a job after its draft and shows the other worker resume it from PostgreSQL
(scripts/worker_chaos.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker_docker import IMAGE, ROOT, _human, docker, ensure_daemon, have_image, run, say

DEFAULT_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "runpod-swarm-base:bookworm"
LOCAL_BUILDER = "runpod-swarm-base:bookworm-build"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
BUILDER_PACKAGES = BASE_PACKAGES + ",build-essential,cmake"
IMAGE_LOCKS = ("build", "worker", "weights")  # plus torch-<variant>
CACHE = ROOT / "build" / "wheel-cache"
WHEELS = ROOT / "build" / "wheels"
LLAMA = "llama-cpp-python"


def debian_mirror() -> str:
    """The first Debian archive this machine's apt uses (deb822 or one-line format)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split()
            urls = words[1:] if words[:1] == ["URIs:"] else words[1:2] if words[:1] == ["deb"] else []
            for url in urls:
                if url.rstrip("/").endswith("/debian"):
                    return url
    return "http://deb.debian.org/debian"


def debootstrap_image(name: str, packages: str) -> None:
    """A Debian bookworm image made from the distribution's packages (no registry needed)."""
    if shutil.which("debootstrap") is None:
        sys.exit("worker-image: debootstrap is missing: apt-get install -y debootstrap")
    cache = ROOT / "build" / "debootstrap-cache"  # the .debs, shared by the two images
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="worker-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        started = time.monotonic()
        run("debootstrap", "--variant=minbase", f"--include={packages}", f"--cache-dir={cache}",
            "bookworm", str(rootfs), debian_mirror(), capture=True)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "-c", "ENV LANG=C.UTF-8", "-", name],
            stdin=tar.stdout, check=True, capture_output=True,
        )
        tar.wait()
    say(f"made {name} from Debian bookworm ({packages}) in {time.monotonic() - started:.0f} s")


def base_images(base: str | None, builder: str | None) -> tuple[str, str]:
    """(runtime base, builder base): the ones asked for, else the default if it can be pulled,
    else Debian images made here."""
    if base:
        return base, builder or base
    if have_image(DEFAULT_BASE) or run("docker", "pull", DEFAULT_BASE, check=False, capture=True, timeout=120).returncode == 0:
        return DEFAULT_BASE, DEFAULT_BASE
    say(f"cannot pull {DEFAULT_BASE} (no registry reachable from here); "
        f"using local Debian bookworm bases instead: {LOCAL_BASE} and {LOCAL_BUILDER}")
    for name, packages in ((LOCAL_BASE, BASE_PACKAGES), (LOCAL_BUILDER, BUILDER_PACKAGES)):
        if have_image(name):
            say(f"{name} exists; reusing it (docker rmi it to remake it)")
        else:
            debootstrap_image(name, packages)
    return LOCAL_BASE, LOCAL_BUILDER


# --- the wheelhouse -----------------------------------------------------------------------


def pins(lock_text: str) -> dict[str, tuple[str, str]]:
    """normalized name -> (version, the lock's whole entry: pin line, hashes and comments)."""
    entries: dict[str, tuple[str, str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock_text):
        match = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", block)
        if match:
            entries[normalized(match.group(1))] = (match.group(2), block.rstrip() + "\n")
    return entries


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def pinned_files(folder: Path, lock_text: str) -> list[Path]:
    """The files of ``folder`` that the lock pins (name and version), not older downloads."""
    wanted = {(name, version) for name, (version, _) in pins(lock_text).items()}
    chosen = []
    for file in sorted(folder.iterdir()):
        stem = file.name.removesuffix(".tar.gz").removesuffix(".zip").removesuffix(".whl")
        name, _, rest = stem.partition("-")
        if (normalized(name), rest.split("-")[0]) in wanted:
            chosen.append(file)
    return chosen


def llama_lock() -> str:
    """worker.lock's llama-cpp-python entry alone: the builder compiles it in its own layer."""
    return pins((ROOT / "requirements" / "worker.lock").read_text(encoding="utf-8"))[normalized(LLAMA)][1]


def wheelhouse(variant: str) -> None:
    """build/wheels/{llama,deps,torch}/ = every file of the image's locks, hash-checked.

    Each lock has its own cache folder, so switching variant reuses downloads. The Dockerfile
    copies the three folders in separate layers: ``llama`` (build.lock and the llama-cpp-python
    sdist, with ``llama.lock``, its entry from worker.lock) compiles for minutes and stays cached
    when other pins or the torch variant change; ``deps`` is the rest of worker.lock and
    weights.lock; ``torch`` is this variant's torch-<variant>.lock, last.
    """
    locks = [*IMAGE_LOCKS, f"torch-{variant}"]
    for lock in locks:
        target = CACHE / lock
        target.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        done = run(sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps",
                   "-r", str(ROOT / "requirements" / f"{lock}.lock"), "-d", str(target), check=False, capture=True)
        if done.returncode != 0:  # pip's own lines, minus the warnings this machine's find-links cause
            noise = "WARNING: Location "
            print("\n".join(line for line in done.stderr.splitlines() if not line.startswith(noise)), file=sys.stderr)
            sys.exit(f"worker-image: pip download of requirements/{lock}.lock failed")
        say(f"wheelhouse: requirements/{lock}.lock ready ({_size(target)}, {time.monotonic() - started:.0f} s)")
    shutil.rmtree(WHEELS, ignore_errors=True)
    parts = {"llama": ["build"], "deps": ["worker", "weights"], "torch": [f"torch-{variant}"]}
    placed: set[str] = set()
    for part, part_locks in parts.items():
        folder = WHEELS / part
        folder.mkdir(parents=True)
        for lock in part_locks:
            for file in pinned_files(CACHE / lock, (ROOT / "requirements" / f"{lock}.lock").read_text(encoding="utf-8")):
                if file.name in placed:
                    continue  # a pin two locks share (torch-<variant>.lock is compiled with -c worker.lock)
                is_llama = normalized(file.name.partition("-")[0]) == normalized(LLAMA)
                os.link(file, WHEELS / ("llama" if is_llama else part) / file.name)
                placed.add(file.name)
    (WHEELS / "llama" / "llama.lock").write_text(llama_lock(), encoding="utf-8")
    # the same build flags as scripts/setup: one CPU module per instruction-set level, the best
    # loaded at run time on whatever CPU RunPod gives the worker
    shutil.copyfile(ROOT / "requirements" / "llama-cmake-args", WHEELS / "llama" / "llama-cmake-args")
    for part in parts:
        folder = WHEELS / part
        say(f"wheelhouse: {folder.relative_to(ROOT)} holds {sum(1 for _ in folder.iterdir())} files, {_size(folder)}")


def _size(folder: Path) -> str:
    return _human(sum(f.stat().st_size for f in folder.iterdir() if f.is_file()))


# --- build --------------------------------------------------------------------------------


def tag_for(variant: str, bake_weights: bool) -> str:
    return f"{IMAGE}:{variant}" if bake_weights else f"{IMAGE}:{variant}-volume"


def cmd_build(args: argparse.Namespace) -> int:
    ensure_daemon()
    base, builder = base_images(args.base_image, args.builder_image)
    wheelhouse(args.variant)
    tag = tag_for(args.variant, args.bake_weights == "1")
    say(f"building {tag} (base {base}, builder {builder}, TORCH_VARIANT={args.variant}, BAKE_WEIGHTS={args.bake_weights})")
    started = time.monotonic()
    done = subprocess.run(
        ["docker", "build", "-t", tag, "--build-arg", f"TORCH_VARIANT={args.variant}",
         "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"BUILDER_IMAGE={builder}",
         "--build-arg", f"BAKE_WEIGHTS={args.bake_weights}", str(ROOT)],
        check=False,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        say(f"docker build failed after {elapsed:.0f} s (exit status {done.returncode})")
        return 1
    size = int(docker("image", "inspect", "-f", "{{.Size}}", tag))
    record = {"tag": tag, "variant": args.variant, "bake_weights": args.bake_weights, "base": base,
              "builder": builder, "size_bytes": size, "build_s": round(elapsed, 1), "built_at": time.time()}
    (ROOT / "build" / f"worker-image-{tag.split(':')[1]}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    say(f"built {tag}: image size {_human(size)}, build time {elapsed:.0f} s")
    return 0


# --- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/worker-image", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="wheelhouse, base images, docker build, size and build time")
    build.add_argument("--variant", choices=("cpu", "cuda"), default="cpu")
    build.add_argument("--bake-weights", choices=("0", "1"), default="1")
    build.add_argument("--base-image", help=f"runtime base (default {DEFAULT_BASE}, else a local Debian one)")
    build.add_argument("--builder-image", help="builder base with a C/C++ toolchain and CMake (default: the base)")
    wheels = sub.add_parser("wheels", help="only the wheelhouse for a variant (build/wheels/)")
    wheels.add_argument("--variant", choices=("cpu", "cuda"), default="cpu")
    sub.add_parser("base", help="only the base images")
    check = sub.add_parser("check", help="run the image as two RunPod workers against a local endpoint")
    check.add_argument("--image", default=f"{IMAGE}:cpu")
    check.add_argument("--timeout-s", type=float, default=900.0, help="for all the jobs together")
    check.add_argument("--chaos", action="store_true",
                       help="instead: SIGKILL the worker running a job after its draft, /retry it, resume on the other (PostgreSQL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.chdir(ROOT)
    if args.command == "build":
        return cmd_build(args)
    if args.command == "wheels":
        wheelhouse(args.variant)
        return 0
    if args.command == "base":
        ensure_daemon()
        base, builder = base_images(None, None)
        say(f"bases: runtime {base}, builder {builder}")
        return 0
    from worker_check import cmd_check

    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
