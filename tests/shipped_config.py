"""The shipped ``config.yaml``, changed the way the loopback tests of a worker or the CLI need it
(the local model answered by a fake OpenAI-compatible server, no llama.cpp server started), and a
loopback RunPod endpoint with a real worker over such a config."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from swarm.endpoint.server import EndpointServer

ROOT = Path(__file__).resolve().parents[1]


def with_local_model_at(url: str, *, warm: list[str] | None = None) -> dict[str, Any]:
    """The shipped config with model ``local`` at ``url`` (``http://host:port``, ``/v1`` added) and
    ``worker.warm`` set to ``warm`` (nothing warmed by default)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    local = config["models"]["local"]
    local["api_base"] = f"{url}/v1"
    local.pop("local_server", None)
    config["worker"]["warm"] = list(warm or [])
    return config


def write(folder: Path, config: dict[str, Any]) -> Path:
    """``config`` as ``folder/config.yaml``; returns its path."""
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def worker_endpoint(home: Path, config_path: Path, endpoint_id: str, **env: str) -> Iterator[EndpointServer]:
    """A loopback RunPod endpoint (``swarm.endpoint``) with one real worker (``handler.py``) on
    ``config_path``, its ``SWARM_HOME`` ``home`` (the docs corpus copied in, for research), short
    holds; ``env`` adds to or overrides the worker's environment (``RUNPOD_LOG_LEVEL``: INFO)."""
    from swarm.endpoint.server import EndpointServer
    from swarm.endpoint.state import Settings

    if (ROOT / "docs").is_dir():
        shutil.copytree(ROOT / "docs", home / "docs", dirs_exist_ok=True)
    worker_env = {"SWARM_CONFIG": str(config_path), "SWARM_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                  "RUNPOD_LOG_LEVEL": "INFO", **env}
    server = EndpointServer(Settings(endpoint_id=endpoint_id, take_hold_s=2, stop_hold_s=2), workers=1,
                            log_dir=home / "logs", worker_env_extra=worker_env)
    with server:
        yield server
