"""Run the local RunPod endpoint: in the foreground (``serve``) or on a thread (``EndpointServer``).

Either way it can start N real worker processes (``python handler.py`` with the
``RUNPOD_WEBHOOK_*`` environment pointing here), starts another in place of one that exits
(``workers.RestartPolicy``), and stops them again on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from swarm.endpoint.state import JobStore, Settings
from swarm.endpoint.workers import RESTART, RestartPolicy, WorkerPool, shell_exports, worker_env


def new_api_key() -> str:
    """A throwaway key shaped like RunPod's (so ``core.redact`` masks it in logs)."""
    return "rpa_" + secrets.token_hex(20).upper()


class EndpointServer:
    """The endpoint on a loopback port, served by uvicorn on a background thread.

    Use as a context manager. ``url`` is ``http://host:port``; ``api_base`` is what
    ``RunPodExecutor`` takes as ``base_url``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int = 0,
        worker_command: list[str] | None = None,
        worker_cwd: str | Path | None = None,
        worker_env_extra: dict[str, str] | None = None,
        log_dir: str | Path | None = None,
        restart: RestartPolicy | None = RESTART,
    ) -> None:
        settings = settings or Settings()
        if not settings.api_key:
            settings = replace(settings, api_key=new_api_key())
        self.settings = settings
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        self.worker_count = workers
        self.pool = WorkerPool(worker_command, cwd=worker_cwd, log_dir=log_dir, extra_env=worker_env_extra,
                               restart=restart, on_exit=self._worker_exited)
        self.store: JobStore | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v2"

    def worker_env(self, worker_id: str | None = None) -> dict[str, str]:
        """The environment a hand-started ``python handler.py`` needs to attach here."""
        return worker_env(self.url, self.settings.endpoint_id, self.settings.api_key, worker_id)

    def _worker_exited(self, worker_id: str, how: str) -> None:
        """From the pool's thread: a worker it started is gone; its jobs fail now, on the loop."""
        loop, store = self._loop, self.store
        if loop is None or store is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the server is gone, no job to fail
            loop.call_soon_threadsafe(store.worker_exited, worker_id, how)

    def _uvicorn(self) -> Any:
        import uvicorn

        from swarm.endpoint.api import build_app

        app, self.store = build_app(self.settings)
        store = self.store
        # a worker started here is alive while its process runs, however long its loop is busy
        store.process_alive = self.pool.running
        outer = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                # Release held long-polls at once, or shutdown waits out every hold.
                if outer._loop is not None:
                    outer._loop.call_soon_threadsafe(store.closing.set)
                # the workers go now, not after the graceful shutdown: meanwhile they polled the
                # closed port and logged thousands of "Failed to get job" lines in its 3 s
                if outer.worker_count and not self.should_exit:
                    threading.Thread(target=outer.pool.stop, name="swarm-endpoint-stop", daemon=True).start()
                super().handle_exit(sig, frame)

        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
        return Server(config)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock.listen(128)
        await self._server.serve(sockets=[self._sock])

    def start(self) -> EndpointServer:
        """Serve on a thread; return once it accepts connections and the workers are started."""
        self._server = self._uvicorn()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="swarm-endpoint", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the endpoint server failed to start; see the log above")
            threading.Event().wait(0.02)
        if self.worker_count:
            self.pool.start(self.worker_count, self.url, self.settings.endpoint_id, self.settings.api_key)
        return self

    def stop(self) -> None:
        """Stop the workers (SIGTERM, then SIGKILL of each process group), then the server."""
        if self._loop is not None and self.store is not None:
            self._loop.call_soon_threadsafe(self.store.closing.set)
        self.pool.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def call(self, fn: Any) -> Any:
        """Run ``fn(store)`` on the server's loop and return its result (tests peek at state)."""
        assert self._loop is not None and self.store is not None
        store = self.store

        async def go() -> Any:
            return fn(store)

        return asyncio.run_coroutine_threadsafe(go(), self._loop).result(timeout=10)

    def __enter__(self) -> EndpointServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: what the banner writes for a key the person gave (it is theirs: never printed back)
GIVEN_KEY = "<the key you gave: --api-key or $SWARM_ENDPOINT_API_KEY>"


def banner(server: EndpointServer, key_given: bool = False) -> str:
    """What ``serve`` prints: the client settings and the environment for a hand-started worker.
    A key made here (random, for this endpoint alone) is printed: nobody has it otherwise; one
    the person gave (``key_given``) is not, and the exports name where it is."""
    s = server.settings
    key = GIVEN_KEY if key_given else s.api_key
    env = server.worker_env("local-worker-1")
    shown = {name: (key if value == s.api_key else value) for name, value in env.items()}
    lines = [
        f"local RunPod endpoint {s.endpoint_id!r} at {server.api_base}/{s.endpoint_id}",
        "",
        "# clients (swarm with runner: runpod, or the runpod SDK with runpod.endpoint_url_base):",
        f"export RUNPOD_API_BASE='{server.api_base}'",
        f"export RUNPOD_ENDPOINT_ID='{s.endpoint_id}'",
        f"export RUNPOD_API_KEY='{key}'",
        "",
        "# a hand-started worker (give each one its own RUNPOD_POD_ID), then: python -u handler.py",
        shell_exports(shown),
    ]
    if server.worker_count:
        lines += ["", f"# started {server.worker_count} worker(s): {', '.join(server.pool.procs)}"]
    return "\n".join(lines)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    endpoint_id: str = "local",
    api_key: str | None = None,
    workers: int = 0,
    *,
    worker_command: list[str] | None = None,
    settings: Settings | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Serve in the foreground until interrupted (Ctrl-C or SIGTERM), with ``workers`` worker processes."""
    base = settings or Settings()
    settings = replace(base, endpoint_id=endpoint_id, api_key=api_key or base.api_key or new_api_key())
    server = EndpointServer(settings, host=host, port=port, workers=workers, worker_command=worker_command)
    server._server = server._uvicorn()

    async def main() -> None:
        server._loop = asyncio.get_running_loop()
        server._sock.listen(128)
        task = asyncio.create_task(server._server.serve(sockets=[server._sock]))
        while not server._server.started and not task.done():
            await asyncio.sleep(0.02)
        if workers:
            server.pool.start(workers, server.url, settings.endpoint_id, settings.api_key)
        print(banner(server, key_given=bool(api_key or base.api_key)), file=out, flush=True)
        try:
            await task
        finally:
            await asyncio.to_thread(server.pool.stop)

    # uvicorn shuts down gracefully on SIGTERM, then raises it again under the handler it found:
    # the default one ended the process before ``finally`` stopped the workers (they went on
    # polling a closed port). Under this one SIGTERM ends the serve as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if _main_thread() else None
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        server.pool.stop()
        server._sock.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    """Signal handlers can be set only from the main thread (a test may call ``serve`` on another)."""
    return threading.current_thread() is threading.main_thread()
