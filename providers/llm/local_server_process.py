"""One local model server as the manager knows it (``LocalServer``): the process it started, if
any, what its log says (the llama.cpp CPU module it loaded, why it exited) and how to stop it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from core.redact import redact
from providers.llm.local_server_config import gguf_fix

_SIGNALS = {int(s) for s in signal.Signals}


class ServerSettings(NamedTuple):
    """What a model's server is started with, from its config (``LocalServer.settings``)."""

    port: int
    gguf: str
    n_ctx: int
    n_threads: int | None
    alias: str


@dataclass
class LocalServer:
    port: int
    process: subprocess.Popen[bytes] | None  # None: it was already running, not ours
    log_path: Path | None
    base_url: str
    started_at: float = 0.0  # time.monotonic() at spawn
    log_offset: int = 0  # where this run's lines begin in the log (earlier runs append to it too)
    cpu_module: str | None = None  # the llama.cpp CPU module it chose (llama_launch.py's log line)
    #: what the config asked of it (port, weights, context, threads, alias): an edit of any of them
    #: while the process runs lets this server go and starts (or finds) one as now configured
    settings: ServerSettings | None = None
    #: it answered its canary: a call may go to it (one still loading is known, for crash reports,
    #: but a second call that came meanwhile waited for no start and failed "Connection error")
    ready: bool = True

    def exit_report(self, during: str = "") -> str | None:
        """What happened to an owned server that has exited, or ``None`` while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        how = f"({signal.Signals(-code).name})" if code < 0 and -code in _SIGNALS else f"with code {code}"
        after = time.monotonic() - self.started_at
        where = f" {during}" if during else ""
        log_text = log_tail(self.log_path, offset=self.log_offset) if self.log_path else "(no log)"
        return (
            f"local model server exited {how}{where} after {after:.1f} s; "
            f"last log lines: {log_text}; log: {self.log_path}"
        )


#: How long a failed call waits for the server's exit to be seen before blaming the network.
EXIT_GRACE_S = 1.0


def wait_exit(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout_s)


def terminate(process: subprocess.Popen[bytes]) -> None:
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


_CPU_LINE = re.compile(r"^swarm: llama\.cpp CPU (?:module (?P<module>.+)|code linked in)", re.MULTILINE)


def cpu_module(log_text: str) -> str | None:
    """What ``llama_launch.py`` said it loaded: the module's description, "linked in" for a build
    without modules, None when the log does not say (another launcher)."""
    found = _CPU_LINE.search(log_text)
    if found is None:
        return None
    return found["module"] or "linked in (built for the compiling machine's CPU)"


#: llama.cpp's reason for not loading the weights ("tensor 'token_embd.weight' data is not within
#: the file bounds, model is corrupted or incomplete"), before the Python traceback the server prints
_LOAD_ERROR = re.compile(r"^llama_model_load: error loading model: (?P<why>.+)$", re.MULTILINE)


def load_failure(log_text: str, gguf: str, log_path: Path | None) -> str | None:
    """What to say of a server that could not load its model file ``gguf`` (config's), as its log
    tells: llama.cpp's reason and the fix; ``None`` when the log says no such thing."""
    found = _LOAD_ERROR.search(log_text)
    if found is None:
        return None
    why = redact(found["why"].strip()[:300])
    return f"the local model server could not load {gguf} ({why}); {gguf_fix(gguf)}; log: {log_path}"


def read_log(path: Path, offset: int = 0) -> str:
    """The log's text from ``offset`` on (one run's lines: every run appends to the same log)."""
    try:
        with open(path, "rb") as log_file:
            log_file.seek(offset)
            return log_file.read().decode(errors="replace")
    except OSError:
        return ""


def log_tail(path: Path, lines: int = 3, *, offset: int = 0) -> str:
    """The last ``lines`` lines of the log from ``offset`` on, after the last line before them that
    names an error (``[Errno 98] address already in use`` comes before uvicorn's three lines of
    shutdown)."""
    if not path.is_file():
        return "(no log)"
    every = read_log(path, offset).strip().splitlines()
    last = every[-lines:]
    cause = next((line for line in reversed(every[:-lines]) if _CAUSE.search(line)), None)
    shown = " | ".join(last) if cause is None else f"{cause[:300]} | ... | " + " | ".join(last)
    return redact(shown)[-900:]
#: a server log past this size at a start is kept as ``<name>.1`` (the one before it dropped), and the
#: new server writes a fresh one: each start adds ~200 KB (llama.cpp's load messages), every CLI run starts one
LOG_MAX_BYTES = 2_000_000


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Keep ``path`` under ``max_bytes``: past it, it becomes ``<path>.1`` (replacing an older one)."""
    try:
        if path.stat().st_size > max_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass
