"""Shared fixtures: an isolated SWARM_HOME, config files, and a context factory with fakes."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Keys of a developer's shell must not leak into tests that assume "no keys".
for _name in ("DEEPSEEK_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY", "TAVILY_API_KEY", "SEARXNG_URL",
              "RUNPOD_API_KEY", "RUNPOD_ENDPOINT_ID", "SWARM_CONFIG", "SWARM_RUNNER"):
    os.environ.pop(_name, None)


#: what RunPod gives a serverless worker (and only a worker) to take jobs from: a test that
#: plays a worker sets ``RUNPOD_WEBHOOK_GET_JOB`` to it (``swarm.executors.runpod_worker``)
WORKER_QUEUE = "https://api.runpod.ai/v2/ep-1/job-take/$ID?gpu=$RUNPOD_GPU_TYPE_ID"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def swarm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "swarm-home"
    monkeypatch.setenv("SWARM_HOME", str(home))
    return home


#: the secret key the S3 tests' fake AWS credentials carry (``aws_env``): never in an error or a log
MOTO_SECRET = "moto-secret-key-value-123456"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials for boto3 against moto's server (no profile of the developer's)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOTO_SECRET)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def moto_url() -> Any:
    """moto's S3 server over real HTTP on loopback, one per test module."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A copy of the project's config.yaml that a test may edit."""
    path = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config.yaml", path)
    return path


@pytest.fixture
def make_context() -> Any:
    """``make_context(llm, **providers)`` -> an async job-context factory for ``dispatch``."""
    from langgraph.checkpoint.memory import InMemorySaver

    from core.config import load_config
    from graphs.context import JobContext, Providers

    saver = InMemorySaver()

    def factory(llm: Any, config: Any = None, **others: Any) -> Any:
        cfg = config or load_config(ROOT / "config.yaml")
        factories = {"llm": lambda: llm, **{k: (lambda v=v: v) for k, v in others.items()}}

        async def make(job_id: str) -> JobContext:
            return JobContext(job_id=job_id, config=cfg, providers=Providers(cfg, factories), checkpointer=saver)

        return make

    return factory


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two small Markdown sources the research tests search, read and cite."""
    root = tmp_path / "corpus"
    root.mkdir(parents=True)
    (root / "checkpoints.md").write_text(
        "# LangGraph checkpoints\n\nA checkpointer saves graph state after every step.\n\n"
        "With durability sync a resumed run re-runs only the interrupted node.\n", encoding="utf-8")
    (root / "runpod.md").write_text(
        "# RunPod job states\n\nJobs go IN_QUEUE, IN_PROGRESS, then COMPLETED or FAILED.\n", encoding="utf-8")
    return root
