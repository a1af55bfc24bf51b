"""How swarm-mcp ends when its client goes away (stdin closes) in the middle of a job, over real
stdio: exit code 0 and no abort, even with an upscale running in native code, and the job let go
(not cancelled) is resumed by the next server."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_openai import Behaviour, FakeOpenAI
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
LOCAL_MODEL = "smollm2-135m-instruct"
#: what a native abort at exit prints (a std::thread or a forced unwind in torch/ncnn under finalization)
ABORTS = ("terminate called", "Fatal Python error")


class StdioServer:
    """``swarm-mcp`` on pipes, spoken to one JSON-RPC line at a time, as Claude Desktop runs it. The
    SDK's client cannot stand in: it cancels what is pending when it closes (a cancel, not a client
    going away) and hides the exit code."""

    def __init__(self, config: Path, stderr: Path, **env: str) -> None:
        self._stderr = stderr
        with stderr.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mcp_server.server", "--config", str(config)], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env={**os.environ, **env})
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next_id = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "shutdown-test", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._messages.put(json.loads(line))
        self._messages.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def call(self, tool: str, arguments: dict[str, Any]) -> int:
        """Send a tools/call (asking for progress) without waiting; its request id."""
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments, "_meta": {"progressToken": self._next_id}}})
        return self._next_id

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return self.next(lambda m: m.get("id") == request_id)["result"]

    def next(self, wanted: Callable[[dict[str, Any]], bool], timeout_s: float = 120.0) -> dict[str, Any]:
        """The next message ``wanted`` accepts (the others are dropped)."""
        while True:
            message = self._messages.get(timeout=timeout_s)
            if message is None:
                raise AssertionError(f"the server closed its stdout: {self.stderr()[-2000:]}")
            if wanted(message):
                return message

    def progress(self, text: str) -> dict[str, Any]:
        """The first progress notification whose message holds ``text``."""
        return self.next(lambda m: m.get("method") == "notifications/progress"
                         and text in (m["params"].get("message") or ""))

    def client_goes_away(self, timeout_s: float = 30.0) -> int:
        """Close stdin, as a client that quits does; the exit code."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=timeout_s)

    def stderr(self) -> str:
        return self._stderr.read_text(errors="replace")


def server_params(config: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(config)],
                                 env={**os.environ, **env}, cwd=str(ROOT))


def job_ids(home: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(home / "jobs.sqlite") as db:
        return [row[0] for row in db.execute("SELECT job_id FROM jobs WHERE status = 'IN_PROGRESS'")]


async def test_a_client_that_goes_away_mid_job_ends_the_server_with_0_and_the_next_one_finishes_the_job(
    tmp_path: Path,
) -> None:
    """Going away is not a cancel: the job is let go, and the next server resumes it."""
    config = write_config(tmp_path, wait_budget_s=40)
    home = tmp_path / "home"
    with FakeOpenAI() as models:
        models.script(LOCAL_MODEL, Behaviour.answer("finished after all", delay_s=8))
        env = {"SWARM_LOCAL_LLM_PORT": str(models.port), "SWARM_HOME": str(home)}
        first = StdioServer(config, tmp_path / "stderr.log", **env)
        first.call("delegate", {"task": "take your time", "kind": "critical"})
        first.progress("route:")
        assert first.client_goes_away() == 0, first.stderr()[-3000:]
        assert not any(text in first.stderr() for text in ABORTS)
        [job_id] = job_ids(home)  # left IN_PROGRESS, not CANCELLED

        models.script(LOCAL_MODEL, Behaviour.answer("finished after all"))
        async with Client(server_params(config, **env)) as client:
            done = (await client.call_tool("job_result", {"job_id": job_id, "wait_s": 40})).structured_content
    assert done["status"] == "COMPLETED" and done["output"]["text"] == "finished after all", done


@pytest.fixture(scope="module")
def pulled() -> None:
    from providers.image import pull as weights_pull

    assert weights_pull.pull(["realesrgan-anime-6b"], SHARED)["ok"]


def image_config(tmp_path: Path) -> Path:
    """Upscale on torch fp32 (no per-machine measuring), in 128 px tiles: seconds of native work each."""
    config = write_config(tmp_path, wait_budget_s=40)
    data = yaml.safe_load(config.read_text())
    data["providers"]["image"]["upscale"].update(precision="fp32", tile=128)
    config.write_text(yaml.safe_dump(data))
    return config


def noise_png(width: int, height: int) -> str:
    import base64

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.mark.slow
def test_going_away_during_a_native_upscale_exits_0_without_an_abort_and_the_job_resumes(
    pulled: None, tmp_path: Path,
) -> None:
    """It aborted (exit 134, "terminate called without an active exception"): the interpreter
    finalized while torch still ran the job's tile on a worker thread. Claude Desktop reports a crash."""
    config = image_config(tmp_path)
    home = tmp_path / "home"
    env = {"SWARM_HOME": str(home), "SWARM_MODELS_DIR": str(SHARED), "PYTHONFAULTHANDLER": "1"}
    first = StdioServer(config, tmp_path / "stderr.log", **env)
    first.call("upscale_image", {"image": noise_png(256, 256)})
    first.progress(": tile 0/")  # the model is loaded and the first tile runs, in native code
    assert first.client_goes_away() == 0, first.stderr()[-3000:]
    assert not any(text in first.stderr() for text in ABORTS), first.stderr()[-3000:]
    [job_id] = job_ids(home)

    second = StdioServer(config, tmp_path / "stderr2.log", **env)  # resumes the job at its start
    status = second.request("tools/call", {"name": "job_status", "arguments": {"job_id": job_id}})
    assert status["structuredContent"]["running_here"] is True, status
    assert second.client_goes_away() == 0, second.stderr()[-3000:]
    assert not any(text in second.stderr() for text in ABORTS), second.stderr()[-3000:]
    assert job_ids(home) == [job_id]


@pytest.mark.parametrize(("ending", "code"), [("return", 0), ("raise SystemExit(3)", 3), ("raise KeyboardInterrupt", 130)])
def test_the_exit_code_and_the_last_output_survive_a_thread_left_running(ending: str, code: int) -> None:
    """With a thread still running the process ends by ``os._exit``: with the code of the way the
    server stopped, its stdout flushed, and without waiting for that thread."""
    probe = f"""
import threading, time
from mcp_server.server import _serve_then_exit

def serve():
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    print("last words")
    {ending}

_serve_then_exit(serve)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == code, out.stderr
    assert out.stdout == "last words\n"
