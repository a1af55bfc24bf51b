"""``scripts/worker-image``: build the RunPod worker image and check it against a local endpoint.

``build --variant cpu|cuda`` makes the wheelhouse from the hash-checked locks (``pip download
--require-hashes``), makes the base images locally when the defaults cannot be pulled (Debian
bookworm via debootstrap, and says so), runs ``docker build`` and prints the image size and the
build time. ``check`` serves RunPod's API on the host (``swarm endpoint serve``), runs the image
as two real RunPod workers attached to it, submits every action through the public API and
requires each job to COMPLETE with its trace; it prints the cold start of a container next to
``python handler.py`` started on the host (the anchor).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm.endpoint.workers import worker_env  # noqa: E402  (the project root is on sys.path only now)

IMAGE = "runpod-swarm-worker"
DEFAULT_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "runpod-swarm-base:bookworm"
LOCAL_BUILDER = "runpod-swarm-base:bookworm-build"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
BUILDER_PACKAGES = BASE_PACKAGES + ",build-essential,cmake"
IMAGE_LOCKS = ("build", "worker", "weights")  # plus torch-<variant>
CACHE = ROOT / "build" / "wheel-cache"
WHEELS = ROOT / "build" / "wheels"
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


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


def wheelhouse(variant: str) -> None:
    """build/wheels/ = every file of the image's locks, downloaded with their hashes checked.

    Each lock has its own cache folder, so switching variant reuses downloads, and build/wheels/
    (the part of build/ the Docker context sees) holds only this variant's torch.
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
    WHEELS.mkdir(parents=True)
    for lock in locks:
        for file in (CACHE / lock).iterdir():
            if not (WHEELS / file.name).exists():
                os.link(file, WHEELS / file.name)
    say(f"wheelhouse: {WHEELS.relative_to(ROOT)} holds {sum(1 for _ in WHEELS.iterdir())} files, {_size(WHEELS)}")


def _size(folder: Path) -> str:
    return _human(sum(f.stat().st_size for f in folder.iterdir() if f.is_file()))


def _human(size: float) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:.2f} GB"
    return f"{size / 1024**2:.0f} MB"


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


# --- check --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: where containers reach the endpoint."""
    gateway = docker("network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}")
    return gateway or "172.17.0.1"


class Endpoint:
    """``swarm endpoint serve`` on the host, and a client of its public API."""

    def __init__(self, host: str, logs: Path) -> None:
        self.host, self.port = host, free_port()
        self.endpoint_id, self.api_key = "ep-image-check", secrets.token_hex(16)
        self.base_url = f"http://{host}:{self.port}"
        self.api = f"{self.base_url}/v2/{self.endpoint_id}"
        self.client = httpx.Client(headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)
        self.log = (logs / "endpoint.log").open("wb")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "swarm"), "endpoint", "serve", "--host", host, "--port", str(self.port),
             "--endpoint-id", self.endpoint_id, "--api-key", self.api_key, "--worker-lost-s", "30"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.client.get(f"{self.api}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"worker-image: the endpoint did not answer on {self.base_url}; see {self.log.name}")

    def submit(self, job: dict[str, Any]) -> str:
        reply = self.client.post(f"{self.api}/run", json={"input": job, "policy": {"executionTimeout": 600_000}})
        reply.raise_for_status()
        return str(reply.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        reply = self.client.get(f"{self.api}/status/{job_id}")
        reply.raise_for_status()
        return dict(reply.json())

    def wait(self, job_ids: list[str], timeout_s: float) -> dict[str, tuple[dict[str, Any], float]]:
        """Poll until every job is final: id -> (status body, when it was seen final)."""
        done: dict[str, tuple[dict[str, Any], float]] = {}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(job_ids) and time.monotonic() < deadline:
            for job_id in job_ids:
                if job_id not in done:
                    body = self.status(job_id)
                    if body["status"] in FINAL:
                        done[job_id] = (body, time.monotonic())
            time.sleep(0.1)
        for job_id in job_ids:
            done.setdefault(job_id, (self.status(job_id), time.monotonic()))
        return done

    def close(self) -> None:
        self.client.close()
        with _quiet():
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with _quiet():
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


def check_jobs() -> list[tuple[str, dict[str, Any]]]:
    """Every action, plus the jobs RunPod's Hub runs (.runpod/tests.json)."""
    photo = base64.b64encode((ROOT / "tests" / "fixtures" / "grace_hopper_256.jpg").read_bytes()).decode()
    jobs: list[tuple[str, dict[str, Any]]] = [
        (f"tests.json:{t['name']}", t["input"])
        for t in json.loads((ROOT / ".runpod" / "tests.json").read_text(encoding="utf-8"))["tests"]
    ]
    jobs += [
        ("delegate", {"project": "swarm", "action": "delegate", "input": {"task": "Say hello in three words.", "kind": "critical"}}),
        ("research", {"project": "swarm", "action": "research",
                      "input": {"question": "How does runpod-swarm checkpoint LangGraph jobs?", "depth": "quick", "max_sources": 3}}),
        ("upscale", {"project": "image_tools", "action": "upscale", "input": {"image": photo, "scale": 2}}),
        ("remove_background", {"project": "image_tools", "action": "remove_background", "input": {"image": photo}}),
        ("pipeline", {"project": "image_tools", "action": "pipeline", "input": {"image": photo, "scale": 2}}),
    ]
    return jobs


def trace_summary(output: Any) -> str:
    trace = output.get("trace") if isinstance(output, dict) else None
    if not trace:
        return "(no trace)"
    parts = [f"{s.get('step')}:{s.get('model') or s.get('provider') or '-'}:{s.get('outcome')}" for s in trace]
    return ", ".join(parts[:6]) + (f", ... ({len(parts)} steps)" if len(parts) > 6 else "")


def job_passed(body: dict[str, Any]) -> bool:
    output = body.get("output")
    return (body["status"] == "COMPLETED" and isinstance(output, dict) and output.get("status") == "COMPLETED"
            and bool(output.get("trace")))


def first_job_cold_start(endpoint: Endpoint, start: Any, job: dict[str, Any], timeout_s: float) -> tuple[float, dict[str, Any]]:
    """Seconds from ``start()`` (workers starting) to the first job COMPLETED, and its status."""
    started = time.monotonic()
    start()
    job_id = endpoint.submit(job)
    body, finished = endpoint.wait([job_id], timeout_s)[job_id]
    return finished - started, body


def host_anchor(endpoint: Endpoint, logs: Path, job: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``python handler.py`` on the host as a RunPod worker: its cold start on the same job."""
    home = Path(tempfile.mkdtemp(prefix="worker-anchor-"))
    env = {**os.environ, "RUNPOD_LOG_LEVEL": "INFO", "SWARM_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "SWARM_LOCAL_LLM_PORT": str(free_port()),
           **worker_env(endpoint.base_url, endpoint.endpoint_id, endpoint.api_key, "host-anchor")}
    log = (logs / "host-anchor.log").open("wb")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen([sys.executable, "-u", "handler.py"], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))

    try:
        return first_job_cold_start(endpoint, start, job, 300)
    finally:
        for proc in procs:
            with _quiet():
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            with _quiet():
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def container_env(endpoint: Endpoint, worker_id: str) -> list[str]:
    env = worker_env(endpoint.base_url, endpoint.endpoint_id, endpoint.api_key, worker_id)
    env["RUNPOD_LOG_LEVEL"] = "INFO"
    return [item for key, value in env.items() for item in ("-e", f"{key}={value}")]


def cmd_check(args: argparse.Namespace) -> int:
    ensure_daemon()
    if not have_image(args.image):
        sys.exit(f"worker-image: {args.image} does not exist; run scripts/worker-image build --variant cpu first")
    logs = ROOT / "build" / "check-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    endpoint = Endpoint(bridge_gateway(), logs)
    names = [f"swarm-check-{os.getpid()}-{i}" for i in (1, 2)]
    try:
        return _check(args, endpoint, names, logs)
    finally:
        for name in names:
            with (logs / f"{name}.log").open("w", encoding="utf-8") as handle:
                subprocess.run(["docker", "logs", name], stdout=handle, stderr=subprocess.STDOUT, check=False)
            docker("rm", "-f", name, check=False)
        endpoint.close()
        say(f"logs: {logs.relative_to(ROOT)}/")


def _check(args: argparse.Namespace, endpoint: Endpoint, names: list[str], logs: Path) -> int:
    jobs = check_jobs()
    first = jobs[0][1]
    say(f"endpoint {endpoint.api} (swarm endpoint serve on the host)")
    anchor_s, anchor = host_anchor(endpoint, logs, first)
    say(f"anchor: python handler.py on the host, start to first job done: {anchor_s:.1f} s ({anchor['status']})")

    def start_containers() -> None:
        for name in names:
            docker("run", "-d", "--name", name, *container_env(endpoint, name), args.image)

    cold_s, cold = first_job_cold_start(endpoint, start_containers, first, 600)
    say(f"cold start: 2 containers of {args.image}, docker run to first job done: {cold_s:.1f} s ({cold['status']})")
    submitted = {endpoint.submit(job): name for name, job in jobs}
    results = endpoint.wait(list(submitted), args.timeout_s)
    failures = 0
    print(f"\n{'job':48} {'status':10} {'worker':28} {'run s':>6}  trace")
    for job_id, name in submitted.items():
        body, _ = results[job_id]
        ok = job_passed(body)
        failures += not ok
        output = body.get("output")
        status = body["status"] if ok or not isinstance(output, dict) else f"{body['status']}/{output.get('status')}"
        print(f"{name:48} {status:10} {str(body.get('workerId')):28} {body.get('executionTime', 0) / 1000:6.1f}  {trace_summary(output)}")
        if not ok:
            print(f"    {json.dumps(output.get('error') if isinstance(output, dict) else body.get('error'))[:400]}")
    print()
    doctor = subprocess.run(["docker", "exec", names[0], "swarm", "doctor", "--quick"], capture_output=True, text=True, check=False)
    say("swarm doctor --quick in the container:")
    print(doctor.stdout.rstrip() or doctor.stderr.rstrip())
    summary(args.image, anchor_s, cold_s)
    if failures or not (job_passed(cold) and job_passed(anchor)):
        say(f"FAILED: {failures} of {len(submitted)} jobs did not COMPLETE with a trace")
        return 1
    say(f"passed: {len(submitted)} jobs COMPLETED with their traces on {len({results[j][0].get('workerId') for j in submitted})} workers")
    return 0


def summary(image: str, anchor_s: float, cold_s: float) -> None:
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image))
    record_file = ROOT / "build" / f"worker-image-{image.rsplit(':', 1)[-1]}.json"
    build_s = json.loads(record_file.read_text(encoding="utf-8"))["build_s"] if record_file.exists() else None
    say(f"image {image}: size {_human(size)}, last build time " + (f"{build_s:.0f} s" if build_s else "unknown"))
    say(f"cold start (start to first job done): container {cold_s:.1f} s, host handler.py {anchor_s:.1f} s "
        f"(ratio {cold_s / anchor_s:.2f})")


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
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
