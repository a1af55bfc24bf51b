"""Starting one local model server: the command that runs it (``llama_launch.py``, which runs
``llama_cpp.server``), and the wait until a new server serves: ``/models`` answers, then a canary
completion does. A server that exits while loading is said with llama.cpp's reason (a port taken,
weights it cannot load), not its traceback; one that never answers is given up on in time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ProviderUnavailable
from providers.llm.local_server_config import server_alias
from providers.llm.local_server_process import EXIT_GRACE_S, LocalServer, load_failure, read_log, wait_exit
from providers.llm.local_sharing import PortInUse, bind_failed, canary, probe

if TYPE_CHECKING:
    from core.config import ModelSpec

LAUNCHER = Path(__file__).with_name("llama_launch.py")
_POLL_INTERVAL_S = 0.25


def launch_command(python: str, spec: ModelSpec, port: int, gguf: Path) -> list[str]:
    """The command that starts ``spec``'s server on ``port`` with the weights ``gguf``, run by ``python``."""
    assert spec.local_server is not None
    local = spec.local_server
    command = [
        python, str(LAUNCHER), "--model", str(gguf), "--model_alias", server_alias(spec),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(local.n_ctx),
        # by default the server ends a streamed answer early whenever another request
        # arrives (``interrupt_requests``); answers wait their turn instead
        "--interrupt_requests", "false",
    ]
    if local.n_threads:
        command += ["--n_threads", str(local.n_threads)]
    return command


async def wait_ready(name: str, spec: ModelSpec, server: LocalServer) -> None:
    """Poll ``/models`` until it answers, then require the canary completion."""
    assert spec.local_server is not None and server.process is not None
    timeout_s = spec.local_server.startup_timeout_s
    deadline = server.started_at + timeout_s
    while (await probe(server.base_url)).state != "answers":
        report = server.exit_report("while loading")
        if report is not None:
            said = read_log(server.log_path, server.log_offset) if server.log_path else ""
            if bind_failed(said):
                raise PortInUse(server.port, report, model=name)
            if failed := load_failure(said, spec.local_server.gguf, server.log_path):  # not its traceback
                raise ProviderUnavailable("local", failed, model=name)
            raise ProviderUnavailable("local", report, model=name)
        if time.monotonic() >= deadline:
            raise ProviderUnavailable(
                "local", f"local model server did not answer within {timeout_s:g} s; log: {server.log_path}",
                model=name,
            )
        await asyncio.sleep(_POLL_INTERVAL_S)
    failure = await canary(server.base_url, server_alias(spec), max(deadline - time.monotonic(), 5.0))
    if failure is None:
        return
    await asyncio.to_thread(wait_exit, server.process, EXIT_GRACE_S)
    report = server.exit_report("on its canary completion")
    raise ProviderUnavailable(
        "local",
        report or f"local model server failed its canary completion ({failure.text}); log: {server.log_path}",
        model=name,
    )
