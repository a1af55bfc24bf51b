"""How several processes share the one loopback port of the local model server.

Several clients (Claude Desktop and Claude Code, the CLI and ``swarm-mcp``) may run at once over
the same state folder, so they meet on the same port:

* **What is on the port** (``probe``): a server that answers ``GET /models``, one that accepts
  the connection but is too busy generating to answer within a second (llama-cpp-python's
  server took 8-9 s while it decoded a long answer), nothing at all (connection refused: the
  only case in which a new server is started), or another program answering HTTP.
* **Who uses the server** (``UsersLock``): each process that uses it holds a shared ``flock`` on
  ``<port_lock_dir>/local-llm-<port>.users`` until it stops using it (the kernel drops the lock when the
  process dies, SIGKILL included). The server's launcher exits as soon as nobody holds it, so a
  server outlives the process that started it while others use it, and is never orphaned.
* **A port taken by another program** (``PortInUse``): the error says what to do.
* **Whose work a start is** (``providers.attempts.shared_work``): the server serves every job; the
  job that happens to need it first only waits for its start, which is the server's own work.
"""

from __future__ import annotations

import asyncio
import fcntl
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from core.errors import ProviderUnavailable

#: How long ``GET /models`` may take before a server that accepted the connection counts as busy.
PROBE_TIMEOUT_S = 1.0
#: How long a TCP connect may take before the port counts as held by a (busy) server.
CONNECT_TIMEOUT_S = 1.0
#: What a server that could not bind its port writes (uvicorn: "[Errno 98] error while attempting
#: to bind on address (...): address already in use"; Python: "[Errno 98] Address already in use").
_BIND_FAILED = re.compile(r"errno 98\b|address already in use", re.IGNORECASE)

#: A multi-token prompt: the AMX fault hit only multi-token batches, one token decoded fine.
CANARY_PROMPT = "Reply with one short greeting for the swarm."

State = Literal["answers", "busy", "refused", "foreign"]


@dataclass(frozen=True)
class Probe:
    """What answered on the port: ``state``, and for a foreign program, what it said."""

    state: State
    detail: str = ""


async def probe(base: str) -> Probe:
    """``GET {base}/models`` once: ``answers`` (HTTP 200), ``busy`` (accepted, no answer in
    time), ``refused`` (nothing listens) or ``foreign`` (another HTTP status)."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            reply = await client.get(f"{base}/models")
    except httpx.ConnectError:
        return Probe("refused")
    except httpx.TransportError:
        # timed out (a server busy with a long answer, or a full accept queue), or the connection
        # broke off (a server going away): something holds the port; the canary tells which
        return Probe("busy")
    if reply.status_code == 200:
        return Probe("answers")
    return Probe("foreign", f"GET {base}/models answered HTTP {reply.status_code}")


async def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on the port (a connect that times out counts:
    a server too busy to accept at once is still there)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
    except TimeoutError:
        return True
    except OSError:
        return False
    writer.close()
    return True


@dataclass(frozen=True)
class CanaryFailure:
    """Why the canary completion failed; ``timed_out``: no answer in time (a busy server)."""

    text: str
    timed_out: bool = False


async def canary(base: str, alias: str, timeout_s: float) -> CanaryFailure | None:
    """One short chat completion with a multi-token prompt; ``None`` if it answered, else why not."""
    import httpx

    body = {
        "model": alias,
        "messages": [{"role": "user", "content": CANARY_PROMPT}],
        "max_tokens": 4,
        "temperature": 0.0,
    }
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            reply = await client.post(f"{base}/chat/completions", json=body)
    except httpx.TimeoutException as exc:
        return CanaryFailure(f"canary request failed: {type(exc).__name__}", timed_out=True)
    except httpx.HTTPError as exc:
        return CanaryFailure(f"canary request failed: {type(exc).__name__}")
    if reply.status_code != 200:
        return CanaryFailure(f"canary answered HTTP {reply.status_code}")
    try:
        choices = reply.json()["choices"]
        choices[0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return CanaryFailure("canary answer is not a chat completion")
    return None


def port_lock_dir() -> Path:
    """Where the port's start lock and users file live: one folder per user for the machine
    (``$XDG_RUNTIME_DIR``, else the temp folder), not under ``SWARM_HOME``: two processes with
    different state folders still meet on the same port, and each must count the other."""
    import os
    import tempfile

    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"runpod-swarm-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def port_in_use_fix(port: int) -> str:
    """The one sentence that says what to do about a port another program holds."""
    return f"port {port} is used by another program: stop it, or set SWARM_LOCAL_LLM_PORT to a free port"


class PortInUse(ProviderUnavailable):
    """The local model's port is held by a program that is not a model server we can use.

    Args:
        port: the port.
        why: what showed it (the HTTP status it answered, the server's bind error and log).
        model: the model's name in config.
    """

    def __init__(self, port: int, why: str, *, model: str | None = None) -> None:
        self.port = port
        self.fix = port_in_use_fix(port)
        super().__init__("local", f"{self.fix} ({why})", model=model)


def bind_failed(log_text: str) -> bool:
    """Whether a server's log says it could not bind its port (another program holds it)."""
    return _BIND_FAILED.search(log_text) is not None


class UsersLock:
    """This process's shared lock on ``local-llm-<port>.users``: held while it uses the server.

    Args:
        path: the users file (created if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None

    def join(self) -> None:
        """Take the shared lock (blocks while a last user or an exiting server holds it alone)."""
        if self._handle is None:
            handle = open(self.path, "ab")  # noqa: SIM115 - kept open: the lock lives with it
            fcntl.flock(handle, fcntl.LOCK_SH)
            self._handle = handle

    def leave(self) -> bool:
        """Drop the shared lock; ``True`` (holding the lock alone until ``release``) when no other
        process uses the server, so the caller may stop it without anyone joining meanwhile."""
        if self._handle is None:
            return False
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            return False
        return True

    def release(self) -> None:
        """Let go of whatever lock is held."""
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


def lock_start(path: Path) -> IO[bytes]:
    """Hold the port's start lock (one process starts a server at a time); the caller unlocks."""
    handle = open(path, "ab")  # noqa: SIM115 - closed by the caller after unlocking
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle
