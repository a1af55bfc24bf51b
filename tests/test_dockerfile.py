"""The worker image, checked without Docker: the Dockerfile parses, what it copies and runs
exists, its entry point imports light, and the RunPod Hub files are well formed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTIONS = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "ADD", "RUN", "CMD", "ENTRYPOINT", "LABEL", "EXPOSE", "USER", "VOLUME", "SHELL", "HEALTHCHECK", "STOPSIGNAL", "ONBUILD"}
HEAVY = ("torch", "litellm", "langgraph", "onnxruntime", "rembg", "llama_cpp", "boto3", "PIL", "numpy", "runpod")


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


def test_base_image_carries_cuda_torch() -> None:
    pairs = instructions()
    args = dict(a.split("=", 1) for k, a in pairs if k == "ARG" and "=" in a)
    image = next(a for k, a in pairs if k == "FROM")
    image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
    assert "torch" in image and "cuda" in image, image


def test_entry_point_is_the_handler() -> None:
    cmd = [a for k, a in instructions() if k == "CMD"]
    assert len(cmd) == 1 and json.loads(cmd[0]) == ["python", "-u", "handler.py"]
    assert not [a for k, a in instructions() if k == "ENTRYPOINT"]


def test_every_copy_source_exists() -> None:
    copies = [a for k, a in instructions() if k in {"COPY", "ADD"}]
    assert copies
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
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
    named = {m for line in _run_lines() for m in re.findall(r"(?:requirements|scripts)/[\w./-]+", line)}
    assert named, "RUN names no lock file: dependencies would not be pinned"
    missing = sorted(p for p in named if not (ROOT / p).exists() and p != "requirements/worker.lock")
    assert not missing, f"RUN names files the repo lacks: {missing}"
    for line in _run_lines():
        if "pip install" in line and "-r requirements/" in line:
            assert "--require-hashes" in line, f"unhashed install: {line}"


def test_worker_lock_exists() -> None:
    if not (ROOT / "requirements" / "worker.lock").exists():
        pytest.skip("requirements/worker.lock (the lead's lock for the worker image) is not written yet")
    text = (ROOT / "requirements" / "worker.lock").read_text(encoding="utf-8")
    assert "runpod==" in text and "--hash=sha256:" in text
    assert not re.search(r"^torch==", text, re.M), "torch comes from the CUDA base image, not the lock"


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
