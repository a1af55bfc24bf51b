"""Start the loopback llama-cpp-python server of a ``local_server`` model on demand.

The local model is reached through litellm like any other (``openai/<alias>`` at
``http://127.0.0.1:PORT/v1``); this module only makes sure a working server answers on that
port before the first call. "Working" means a canary chat completion with a multi-token prompt
answered: ``GET /models`` alone is answered by a server that then crashes on its first decode.

* A server already on the port is adopted only after the canary; so is one that accepts the
  connection but is too busy generating to answer ``GET /models`` at once (another process's).
  A new server is started only when the connection is refused; another program answering HTTP
  there is a clear ``PortInUse`` error ("port N is used by another program: ...").
* Otherwise ``llama_launch.py`` (``llama_cpp.server`` with llama.cpp's extra buffer types off)
  is spawned in its own process group; its output goes to ``<state_dir>/logs/local-llm-<port>.log``.
* Every process that uses the server holds a shared lock on ``local-llm-<port>.users``
  (``local_sharing.UsersLock``) until ``stop_all``. The last one to leave stops the server if it
  started it; otherwise the server's launcher sees nobody holds the lock and exits within half
  a second. So a server outlives the process that started it while another one uses it, and dies
  with its last user, SIGKILLed or not.
* A server that exits is a clear fault: ``crash_report`` says "local model server exited
  (SIGSEGV) after N s; last log lines: ...; log: <path>"; the call that met it starts it again
  and asks once more (``LiteLLMModel.complete``), and a second crash fails that call.

One start at a time: an asyncio lock inside the process, a file lock across processes.

What the model's config names (weights, port, alias) is resolved in ``local_server_config``;
one server's process, its log and its exit report live in ``local_server_process``; the command
that starts one and the wait until it serves, in ``local_server_launch``.
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.errors import ProviderUnavailable
from providers.attempts import said_as_shared, shared_work
from providers.llm.local_server_config import LLAMA_CPP_INSTALL, local_port, resolve_gguf, server_alias
from providers.llm.local_server_launch import launch_command, wait_ready
from providers.llm.local_server_process import (
    EXIT_GRACE_S,
    LocalServer,
    ServerSettings,
    cpu_module,
    read_log,
    rotate_log,
    terminate,
)
from providers.llm.local_sharing import CANARY_PROMPT as CANARY_PROMPT  # the name fake servers look for
from providers.llm.local_sharing import (
    PortInUse,
    Probe,
    UsersLock,
    canary,
    lock_start,
    port_lock_dir,
    port_open,
    probe,
)

if TYPE_CHECKING:
    from core.config import ModelSpec

log = logging.getLogger("swarm.llm.local")

USERS_FILE_ENV = "SWARM_LLAMA_USERS_FILE"  # read by llama_launch.py, which imports nothing of ours


class LocalServerManager:
    """Ensures each ``local_server`` model has a server; at ``stop_all`` stops the ones it started
    that no other process uses any more.

    Args:
        log_dir: where server logs go; default ``<state_dir>/logs`` (the port's lock files are
            machine-wide, ``port_lock_dir``: the port is, whatever SWARM_HOME each process has).
        python: interpreter that runs ``llama_cpp.server`` (default: this one).
    """

    def __init__(self, *, log_dir: Path | None = None, python: str = sys.executable) -> None:
        self._log_dir = log_dir
        self.python = python
        self._servers: dict[str, LocalServer] = {}
        #: model -> port -> a server an edit of api_base's port moved away from (kept for the jobs
        #: still running with the old config; stopped by ``stop_all``)
        self._retired: dict[str, dict[int, LocalServer]] = {}
        self._told: set[tuple[str, ServerSettings]] = set()  # same-port edits said in the log
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[int, UsersLock] = {}  # port -> this manager's share of its server
        #: model -> (the server whose exit was last reported, the report): for the other calls it was serving
        self._last_crash: dict[str, tuple[LocalServer, str]] = {}
        self._atexit_registered = False

    @property
    def log_dir(self) -> Path:
        if self._log_dir is None:
            from core.config import state_dir

            self._log_dir = state_dir() / "logs"
        return self._log_dir

    def serving(self, name: str) -> LocalServer | None:
        """The server the model's calls go to now (what a call names to ``crash_report``)."""
        return self._servers.get(name)

    async def crash_report(self, name: str, used: LocalServer | None = None) -> str | None:
        """After a failed call: if the server this manager started has exited, say how (and
        forget it, so the next call starts it again); ``None`` when it still runs. A server
        another process started is forgotten too (probed again next call); if its port now
        refuses connections, that is said. ``used``: the server the call went to (``serving``
        when it began): when another call in flight on it reported its exit first, the same
        report (each call that met the crash can start it again and ask once more).

        A process killed mid-request is seen by the client first, so wait a moment for its exit.
        """
        server = self._servers.get(name)
        last = self._last_crash.get(name)
        if used is not None and server is not used and last is not None and last[0] is used:
            return last[1]
        if server is None or server.process is None:
            self._servers.pop(name, None)
            if server is not None and not await port_open(_host(server.base_url), server.port):
                return (f"the local model server on port {server.port}, started by another process, is gone "
                        "(connection refused); the next call starts a new one")
            return None
        deadline = time.monotonic() + EXIT_GRACE_S
        while server.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        report = server.exit_report()
        if report is not None:  # the shared server's exit: the calls that met it each carry the report
            said_as_shared(log.warning, "%s", report)
            self._servers.pop(name, None)
            self._last_crash[name] = (server, report)
        return report

    async def ensure(self, name: str, spec: ModelSpec) -> str:
        """Make sure the model's server answers; return its base URL.

        Raises:
            ProviderUnavailable: llama_cpp or the weights are missing (with the pip command),
                autostart is off and nothing answers, or the server did not come up in time.
            PortInUse: another program holds the port.
        """
        if spec.local_server is None or not spec.api_base:
            return spec.api_base or ""
        wanted = _settings(name, spec)
        server = self._servers.get(name)
        if server and server.ready and server.settings == wanted and await _usable(server):
            return server.base_url
        # the server's own work, not the asking job's: its records reach no job's MCP client
        return await shared_work(self._ensure_started(name, spec, wanted))

    async def _ensure_started(self, name: str, spec: ModelSpec, wanted: ServerSettings) -> str:
        lock = self._locks.setdefault(name, asyncio.Lock())  # a call while it starts waits here for the start
        async with lock:
            server = self._settled(name, wanted)
            if server and await _usable(server):
                return server.base_url
            if server is not None:  # it exited while idle: say so, then start (or find) one once
                gone = server.exit_report() or f"the server on port {server.port} (another process's) is gone"
                log.warning("%s; starting it again", gone)
                self._servers.pop(name, None)
            await self._join(local_port(spec, name))
            self._servers[name] = await self._start(name, spec)
            return self._servers[name].base_url

    def _settled(self, name: str, wanted: ServerSettings) -> LocalServer | None:
        """The server a call with ``wanted`` settings goes to, after an edit of the config while
        this process runs (each job keeps the config it started with, so calls of both may come).
        Another port: the server on the old one stays for the jobs that still run with it (until
        ``stop_all``), and the one on the new port is found or started. The same port with other
        weights, context or threads: two servers cannot share it, so the one running keeps
        serving, said once in the log; a restart of this process applies the edit. Nothing is
        stopped here: a call in flight on either server finishes."""
        server = self._servers.get(name)
        if server is None or server.settings == wanted:
            return server
        port = wanted.port
        if server.port != port:
            retired = self._retired.setdefault(name, {})
            retired[server.port] = server
            back = retired.pop(port, None)
            if back is None:
                self._servers.pop(name, None)
            else:
                self._servers[name] = back
            return back
        if (name, wanted) not in self._told:
            self._told.add((name, wanted))
            log.warning("local model %s: local_server was edited (weights, context or threads) while the server on"
                        " port %d runs; it keeps its settings until this process restarts (or give api_base"
                        " another port)", name, port)
        return server

    async def _join(self, port: int) -> None:
        """Count this process among the users of the port's server (once): while it is, the
        server is not stopped by another process leaving, nor by its launcher."""
        if port in self._users:
            return
        users = self._users[port] = UsersLock(port_lock_dir() / f"local-llm-{port}.users")
        await asyncio.to_thread(users.join)  # waits while a last user stops the server

    async def _start(self, name: str, spec: ModelSpec) -> LocalServer:
        assert spec.local_server is not None and spec.api_base
        base = spec.api_base.rstrip("/")
        port = local_port(spec, name)
        adopted = await self._adopt(name, spec, base, port, await probe(base))
        if adopted is not None:
            return adopted
        if not spec.local_server.autostart:
            raise ProviderUnavailable(
                "local", f"nothing answers at {base} and autostart is off; set models.{name}.local_server.autostart:"
                " true, or start the server yourself", model=name
            )
        if importlib.util.find_spec("llama_cpp") is None:
            raise ProviderUnavailable("local", f"llama-cpp-python is not installed; run: {LLAMA_CPP_INSTALL}", model=name)
        gguf = resolve_gguf(spec.local_server.gguf)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lock_file = await asyncio.to_thread(lock_start, port_lock_dir() / f"local-llm-{port}.lock")
        try:  # another process may have started it while we waited
            adopted = await self._adopt(name, spec, base, port, await probe(base))
            return adopted if adopted is not None else await self._spawn(name, spec, base, port, gguf)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()

    async def _adopt(self, name: str, spec: ModelSpec, base: str, port: int, found: Probe) -> LocalServer | None:
        """Reuse the server found on the port once it answers the canary (a busy one is waited
        for, up to ``startup_timeout_s``); ``None`` when nothing is there (start one)."""
        assert spec.local_server is not None
        if found.state == "refused":
            return None
        if found.state == "foreign":
            raise PortInUse(port, found.detail, model=name)
        timeout_s = spec.local_server.startup_timeout_s
        failure = await canary(base, server_alias(spec), timeout_s)
        if failure is None:
            busy = "" if found.state == "answers" else " (busy: it took over a second to answer)"
            log.info("local model %s: reusing the server already on port %d%s (canary answered)", name, port, busy)
            return LocalServer(port, None, None, base, settings=_settings(name, spec))
        if not await port_open(_host(base), port):  # it went away (its last user left) meanwhile
            log.info("local model %s: the server on port %d went away before its canary", name, port)
            return None
        if found.state == "answers":
            raise ProviderUnavailable(
                "local",
                f"a server on port {port} answers /models but not a completion ({failure.text}); it is not "
                "adopted: stop it, or set SWARM_LOCAL_LLM_PORT to a free port",
                model=name,
            )
        if failure.timed_out:
            raise ProviderUnavailable(
                "local",
                f"the server on port {port} is busy: it answered neither /models within a second nor a completion "
                f"within {timeout_s:g} s; try again when it is done, or set SWARM_LOCAL_LLM_PORT to a free port",
                model=name,
            )
        raise PortInUse(port, f"the program there accepts connections but answered no completion: {failure.text}",
                        model=name)

    async def _spawn(self, name: str, spec: ModelSpec, base: str, port: int, gguf: Path) -> LocalServer:
        assert spec.local_server is not None
        log_path = self.log_dir / f"local-llm-{port}.log"
        log.info("starting local model %s on port %d (log: %s)", name, port, log_path)
        # the launcher lives while some process holds a shared lock on this file (we do, from _join)
        env = {**os.environ, USERS_FILE_ENV: str(self._users[port].path)}
        rotate_log(log_path)
        with open(log_path, "ab") as log_file:
            offset = log_file.tell()
            process = subprocess.Popen(
                launch_command(self.python, spec, port, gguf), stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=env,
            )
        self._register_atexit()
        server = LocalServer(port, process, log_path, base, started_at=time.monotonic(), log_offset=offset,
                             settings=_settings(name, spec), ready=False)
        self._servers[name] = server
        try:
            await wait_ready(name, spec, server)
        except BaseException:
            terminate(process)
            self._servers.pop(name, None)
            raise
        server.cpu_module = cpu_module(read_log(log_path, offset))
        server.ready = True
        cpu = f" (llama.cpp CPU module {server.cpu_module})" if server.cpu_module else ""
        log.info("local model %s ready on port %d%s", name, port, cpu)
        return server

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.stop_all)
            self._atexit_registered = True

    def stop_all(self) -> None:
        """Stop using every server: terminate each one this manager started that no other process
        uses any more. One another process still uses keeps running; its launcher exits when its
        last user leaves (as it does for a server this manager found running)."""
        every = [*self._servers.values(), *(server for ports in self._retired.values() for server in ports.values())]
        started = {server.port: server.process for server in every if server.process is not None}
        self._servers.clear()
        self._retired.clear()
        for port in set(started) | set(self._users):
            users = self._users.pop(port, None)
            last = users.leave() if users is not None else True  # alone: nobody joins until release
            try:
                process = started.get(port)
                if process is not None and last:
                    terminate(process)
                elif process is not None:
                    log.info("local model server on port %d left running: another process uses it", port)
            finally:
                if users is not None:
                    users.release()

    def status(self) -> dict[str, dict[str, Any]]:
        """What each known local server is doing, for a health resource."""
        return {
            name: {
                "url": server.base_url,
                "owned": server.process is not None,
                "pid": server.process.pid if server.process else None,
                "running": server.process is None or server.process.poll() is None,
                "log": str(server.log_path) if server.log_path else None,
                "cpu_module": server.cpu_module,
            }
            for name, server in self._servers.items()
        }


async def _usable(server: LocalServer) -> bool:
    """Whether a known server is still there: ours still runs, another process's still accepts."""
    if server.process is not None:
        return server.process.poll() is None
    return await port_open(_host(server.base_url), server.port)


def _host(base: str) -> str:
    return urlsplit(base).hostname or "127.0.0.1"


_default: LocalServerManager | None = None


def default_local_servers() -> LocalServerManager:
    """The process-wide manager, so routers rebuilt on config reload share one server."""
    global _default
    if _default is None:
        _default = LocalServerManager()
    return _default


def _settings(name: str, spec: ModelSpec) -> ServerSettings:
    """What a model's server is started with (``LocalServer.settings``)."""
    local = spec.local_server
    assert local is not None
    return ServerSettings(local_port(spec, name), local.gguf, local.n_ctx, local.n_threads, server_alias(spec))
