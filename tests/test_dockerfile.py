"""The worker image, checked without Docker: the Dockerfile parses, what it copies and runs
exists, its entry point imports light, and the RunPod Hub files are well formed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTIONS = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "ADD", "RUN", "CMD", "ENTRYPOINT", "LABEL", "EXPOSE", "USER", "VOLUME", "SHELL", "HEALTHCHECK", "STOPSIGNAL", "ONBUILD"}
WHEELHOUSE = "build/wheels"
HEAVY = ("torch", "litellm", "langgraph", "onnxruntime", "rembg", "llama_cpp", "boto3", "PIL", "numpy", "runpod",
         "pypdf", "docx", "pptx", "lxml")


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    pairs = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_dockerfile_parses_with_known_instructions() -> None:
    pairs = instructions()
    unknown = [k for k, _ in pairs if k not in INSTRUCTIONS]
    assert not unknown, f"unknown instructions: {unknown}"
    first = next(k for k, _ in pairs if k != "ARG")
    assert first == "FROM"


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order (the global ARGs before the first FROM dropped)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def build_args() -> dict[str, str]:
    return dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)


def lock_pins(name: str) -> dict[str, str]:
    """package -> the whole pinned entry (version and hashes) of requirements/<name>.lock."""
    text = (ROOT / "requirements" / f"{name}.lock").read_text(encoding="utf-8")
    entries: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", block)
        if match:
            hashes = sorted(re.findall(r"--hash=(\S+)", block))
            entries[re.sub(r"\[.*\]", "", match.group(1)).lower()] = f"{match.group(2)} {' '.join(hashes)}"
    return entries


def installed_locks() -> set[str]:
    """The lock names the Dockerfile installs, with ${TORCH_VARIANT} expanded to every variant."""
    names = set()
    for line in _run_lines():
        for match in re.findall(r"-r \S*requirements/([\w${}-]+)\.lock", line):
            if "${TORCH_VARIANT}" in match:
                names |= {match.replace("${TORCH_VARIANT}", v) for v in TORCH_VARIANTS}
            else:
                names.add(match)
    return names


TORCH_VARIANTS = ("cpu", "cuda")


def test_the_image_is_multi_stage_and_the_runtime_has_no_compiler() -> None:
    builder, *_, runtime = stages()
    assert len(stages()) >= 2
    builder_runs = " ".join(a for k, a in builder if k == "RUN")
    # llama.cpp is built with the flags scripts/setup uses: not for the build machine's CPU only,
    # but one CPU module per instruction-set level, chosen where it runs
    assert "$(cat /wheels/llama-cmake-args)" in builder_runs
    flags = (ROOT / "requirements" / "llama-cmake-args").read_text(encoding="utf-8").split()
    assert {"-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"} <= set(flags)
    assert "requirements/llama-cmake-args" in (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    assert "worker.lock" in builder_runs  # llama-cpp-python compiles where the toolchain is
    runtime_runs = " ".join(a for k, a in runtime if k == "RUN")
    assert not re.search(r"build-essential|cmake|gcc|g\+\+", runtime_runs), runtime_runs
    assert any(k == "COPY" and a.startswith("--from=") and "/opt/venv" in a for k, a in runtime)


def test_torch_comes_from_the_locks_not_from_the_base_image() -> None:
    args = build_args()
    for name in ("BASE_IMAGE", "BUILDER_IMAGE"):
        assert "torch" not in args[name], f"{name}={args[name]}: torch must come from requirements/torch-<variant>.lock"
    assert args["TORCH_VARIANT"] in TORCH_VARIANTS
    for variant in TORCH_VARIANTS:
        torch = [p for p in lock_pins(f"torch-{variant}") if p == "torch"]
        assert torch, f"requirements/torch-{variant}.lock pins no torch"
    # the cpu image holds the very torch the tests ran with
    assert lock_pins("torch-cpu")["torch"] == lock_pins("main")["torch"]
    assert lock_pins("torch-cuda")["torch"].split()[0] == lock_pins("main")["torch"].split()[0].split("+")[0]


def test_the_dockerfile_and_the_locks_agree() -> None:
    """Every lock meant for the image is installed, hash-checked, and the locks it combines pin
    what they share identically (torch-<variant>.lock goes in with --no-deps after worker.lock)."""
    locks = {p.stem for p in (ROOT / "requirements").glob("*.lock")} - {"main"}  # main: the dev venv
    assert installed_locks() == locks, f"installed {sorted(installed_locks())}, locks {sorted(locks)}"
    for line in _run_lines():
        if "pip install" in line:
            for command in line.split("&&"):
                if "pip install" in command:
                    assert "-r " in command or command.rstrip().endswith(" ."), f"a package installed outside the locks: {command}"
    assert "torch" not in lock_pins("worker"), "torch comes from torch-<variant>.lock, not worker.lock"
    shared = {**lock_pins("build"), **lock_pins("worker")}
    for variant in TORCH_VARIANTS:
        for package, pin in lock_pins(f"torch-{variant}").items():
            if package in shared:
                assert pin.split()[0] == shared[package].split()[0], f"torch-{variant}.lock and worker/build.lock disagree on {package}"


def test_the_llama_layer_installs_exactly_worker_locks_entry() -> None:
    """llama-cpp-python compiles in a layer of its own from build/wheels/llama/llama.lock, which
    scripts/worker-image cuts out of worker.lock: same version, same hashes, nothing else."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from worker_image import llama_lock, pins
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    entry = llama_lock()
    assert list(pins(entry)) == ["llama_cpp_python"]
    version = pins(entry)["llama_cpp_python"][0]
    hashes = sorted(re.findall(r"--hash=(\S+)", entry))
    assert f"{version} {' '.join(hashes)}" == lock_pins("worker")["llama-cpp-python"]
    # built with setup's flags (a module per CPU level), which the wheelhouse copies beside the lock
    assert any("-r /wheels/llama.lock" in line and "$(cat /wheels/llama-cmake-args)" in line for line in _run_lines())
    assert "llama-cmake-args" in (ROOT / "scripts" / "worker_image.py").read_text(encoding="utf-8")
    # an ARG is in the cache key of every RUN after it: TORCH_VARIANT must come after the llama layer
    builder = stages()[0]
    llama_at = next(i for i, (k, a) in enumerate(builder) if k == "RUN" and "/wheels/llama.lock" in a)
    variant_at = next(i for i, (k, a) in enumerate(builder) if k == "ARG" and a.startswith("TORCH_VARIANT"))
    assert variant_at > llama_at, "ARG TORCH_VARIANT before the llama layer: each variant would compile it again"


def test_entry_point_is_the_handler() -> None:
    cmd = [a for k, a in instructions() if k == "CMD"]
    assert len(cmd) == 1 and json.loads(cmd[0]) == ["python", "-u", "handler.py"]
    assert not [a for k, a in instructions() if k == "ENTRYPOINT"]


def test_every_copy_source_exists() -> None:
    copies = [a for k, a in instructions() if k in {"COPY", "ADD"} and not a.startswith("--from=")]
    assert copies
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            if source.rstrip("/").startswith(WHEELHOUSE):  # made by scripts/worker-image before the build
                assert f"!{WHEELHOUSE}" in ignored, f".dockerignore must let {WHEELHOUSE} into the context"
                continue
            assert (ROOT / source).exists(), f"COPY source {source} does not exist"
            assert source.rstrip("/") not in ignored, f"COPY source {source} is excluded by .dockerignore"


def test_every_project_package_is_copied_into_the_image() -> None:
    """A package the project ships (pyproject's package list) but the image lacks fails at the
    first import in the container, far from the change that caused it."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = {pattern.rstrip("*") for pattern in include} - {"bench"}  # bench: a dev tool, not in the worker
    copied = set()
    for args in (a for k, a in instructions() if k in {"COPY", "ADD"}):
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        copied |= {source.rstrip("/") for source in parts[:-1]}
    assert shipped - copied == set()


def _run_lines() -> list[str]:
    return [a for k, a in instructions() if k == "RUN"]


def test_repo_files_named_by_run_exist() -> None:
    named = {m for line in _run_lines() for m in re.findall(r"(?:requirements|scripts)/[\w./${}-]+", line)}
    assert named, "RUN names no lock file: dependencies would not be pinned"
    expanded = {p.replace("${TORCH_VARIANT}", v) for p in named for v in TORCH_VARIANTS}
    missing = sorted(p for p in expanded if not (ROOT / p).exists())
    assert not missing, f"RUN names files the repo lacks: {missing}"
    for line in _run_lines():
        if "pip install" in line and "-r requirements/" in line:
            assert "--require-hashes" in line, f"unhashed install: {line}"


def test_worker_lock_exists() -> None:
    text = (ROOT / "requirements" / "worker.lock").read_text(encoding="utf-8")
    assert "runpod==" in text and "--hash=sha256:" in text
    assert not re.search(r"^torch==", text, re.M), "torch comes from requirements/torch-<variant>.lock"


def test_swarm_commands_run_by_the_image_exist() -> None:
    from swarm.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for line in _run_lines():
        for match in re.finditer(r"\bswarm (\w+)", line):
            assert match.group(1) in sub.choices, f"`swarm {match.group(1)}` is not a CLI command"  # type: ignore[attr-defined]


def test_handler_imports_without_heavy_modules() -> None:
    code = (
        "import sys, handler; "
        "assert callable(handler.handler); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"handler.py imports heavy modules at import time: {done.stdout}"


def test_hub_json_follows_the_runpod_hub_format() -> None:
    hub = json.loads((ROOT / ".runpod" / "hub.json").read_text(encoding="utf-8"))
    assert {"title", "description", "type", "category", "config"} <= set(hub)
    assert hub["type"] == "serverless"
    assert hub["category"] in {"audio", "embedding", "language", "video", "image"}
    config = hub["config"]
    assert config["runsOn"] in {"GPU", "CPU"} and config["containerDiskInGb"] > 0
    for entry in config["env"]:
        assert "key" in entry and ("value" in entry or {"name", "type", "description"} <= set(entry["input"]))
    keys = {e["key"] for e in config["env"]}
    assert "RUNPOD_API_KEY" not in keys  # the worker never needs the account key


def test_tests_json_jobs_are_valid_swarm_jobs() -> None:
    from graphs.actions import ACTIONS
    from swarm.dispatcher import JobRequest

    spec = json.loads((ROOT / ".runpod" / "tests.json").read_text(encoding="utf-8"))
    assert spec["tests"] and spec["config"]["gpuCount"] >= 1
    for test in spec["tests"]:
        job = JobRequest.model_validate(test["input"])
        assert job.action in ACTIONS[job.project]
        assert 0 < test["timeout"] <= 600_000


def test_the_hub_allows_only_hosts_whose_driver_runs_the_locked_cuda() -> None:
    """The cuda image's torch uses the CUDA runtime its lock pins (nvidia-cuda-runtime 13.x): a
    host whose driver tops out below that CUDA cannot run it, so RunPod must not schedule there."""
    runtime = lock_pins("torch-cuda")["nvidia-cuda-runtime"].split()[0]
    major_minor = tuple(int(x) for x in runtime.split(".")[:2])
    for name in ("hub.json", "tests.json"):
        spec = json.loads((ROOT / ".runpod" / name).read_text(encoding="utf-8"))
        allowed = spec["config"]["allowedCudaVersions"]
        assert allowed, f".runpod/{name}: allowedCudaVersions is empty"
        too_old = [v for v in allowed if tuple(int(x) for x in v.split(".")) < major_minor]
        assert not too_old, f".runpod/{name} allows CUDA {too_old}, older than the image's CUDA {runtime}"
