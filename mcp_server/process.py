"""The ``swarm-mcp`` process around its server: the state files it needs, checked before it serves
(``check_state_files``: said in a line, not as a traceback), and its end (``serve_then_exit``: the
exit code of the way it stopped, without finalizing the interpreter under a worker thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from core.errors import ConfigError

log = logging.getLogger("swarm.mcp")


def check_state_files(config: Any) -> None:
    """``ConfigError`` for a damaged or unwritable job or thread store (both small): said at start, in a line,
    not as a traceback from the lifespan (jobs) or an internal error on every call (threads)."""
    from core.config import state_dir
    from core.state_files import Unwritable, access_fix, damaged, integrity_problem
    from swarm.threads import sqlite_threads_path

    files = [(state_dir() / "jobs.sqlite", "the job store", "the jobs")]
    if config.checkpointer.kind == "sqlite":
        files.append((sqlite_threads_path(config.checkpointer), "the thread store", "the conversations"))
    for path, what, lost in files:
        if isinstance(problem := integrity_problem(path), Unwritable):
            raise ConfigError(f"{what} {path} cannot be written ({problem}): {access_fix(path)}")
        if problem is not None:
            raise damaged(path, what, lost, problem)


#: how long an ending server waits for its jobs' worker threads (an upscale stops between two tiles)
#: before it exits without them: well under the 2 s the MCP SDK's stdio client waits before SIGTERM,
#: and paid at every exit where an idle library thread lives on (pycares' resolver, after a model call)
WORKER_GRACE_S = 0.5


def serve_then_exit(serve: Callable[[], None]) -> NoReturn:
    """Serve until the client goes (stdin closes, Ctrl-C), then end the process, exit code 0 for a
    client that went away, without finalizing the interpreter under a running worker thread.

    The lifespan has let the jobs go by then (still IN_PROGRESS in the store: the next server
    resumes them), but a job's worker thread inside torch or ncnn cannot be stopped mid-call, and
    finalizing the interpreter under it aborts the process ("terminate called without an active
    exception", exit 134: a crash to the client). So the threads get ``WORKER_GRACE_S`` to stop;
    any still running then are ended with the process by ``os._exit``, after the logs and the
    protocol's stdout are flushed.
    """
    try:
        serve()
    except BaseException as exc:  # every way out ends the same, with its own code
        code = _exit_code(exc)
    else:
        code = 0
    running = _threads_left(WORKER_GRACE_S)
    if not running:
        sys.exit(code)  # nothing runs under the interpreter's finalization: the usual exit
    log.info("exiting without the interpreter's finalization: %d thread(s) still run (%s)",
             len(running), ", ".join(sorted(set(running))))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a pipe the client already closed
            stream.flush()
    os._exit(code)


def _threads_left(grace_s: float) -> list[str]:
    """The names of the threads besides this one still running after waiting up to ``grace_s`` for
    them (one native code started and Python only saw, a dummy, cannot be waited for: it counts)."""
    deadline = time.monotonic() + grace_s
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    for thread in others:
        if not isinstance(thread, threading._DummyThread):
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in others if isinstance(t, threading._DummyThread) or t.is_alive()]


def _exit_code(exc: BaseException) -> int:
    """The exit code a stop by ``exc`` gives (a traceback or message printed as Python would)."""
    if isinstance(exc, KeyboardInterrupt):
        return 130  # 128 + SIGINT, as a shell reports Ctrl-C
    if isinstance(exc, SystemExit):
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    traceback.print_exception(exc)
    return 1
