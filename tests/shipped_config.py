"""The shipped ``config.yaml``, changed the way the loopback tests of a worker or the CLI need it:
the local model answered by a fake OpenAI-compatible server (no llama.cpp server started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
