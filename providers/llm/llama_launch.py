"""Run ``llama_cpp.server`` portably, for as long as some process uses it.

Started by ``LocalServerManager`` as ``python llama_launch.py <llama_cpp.server args>`` (by file
path: this module imports nothing from the project). Two things happen before the server runs:

* **No extra buffer types.** llama.cpp repacks the weights into "extra" CPU buffer types
  where the CPU has them; on Intel CPUs with AMX that is the AMX buffer, and llama-cpp-python
  0.3.36 then dies with SIGSEGV on the first decode of a multi-token prompt (llama.cpp issue
  20824, ``ggml_backend_amx_mul_mat``). ``llama_cpp.server`` has no flag for the model
  parameter ``use_extra_bufts``, so the model's default parameters are wrapped here to turn it
  off. This runs on every CPU, AMD included, so every machine serves the model the same way
  and the tests on any machine exercise the fix (README, "The local model, on every CPU").
* **Lives while someone uses it.** The server runs in its own process group (so a terminal's
  Ctrl-C does not hit it first) and is not tied to the process that started it: several processes
  (Claude Desktop and Claude Code, the CLI and ``swarm-mcp``) share it over the same state folder,
  and the one that started it may end first. Each process that uses it holds a shared ``flock``
  on the file named in ``SWARM_LLAMA_USERS_FILE`` (the kernel drops it when that process dies,
  SIGKILL included); a watchdog thread exits the server as soon as it can take that lock alone,
  so it never outlives its last user by more than half a second. No process holding it at start
  (the one that started it is already gone) means exit at once.
"""

from __future__ import annotations

import fcntl
import os
import runpy
import sys
import threading
import time
from typing import Any

USERS_ENV = "SWARM_LLAMA_USERS_FILE"
_WATCH_INTERVAL_S = 0.5


def _exit_with_last_user(users_file: str) -> None:
    """Exit once no process holds a shared lock on ``users_file``, holding it alone on the way out
    so that a process joining meanwhile waits, then finds the port free and starts a new server."""
    handle = open(users_file, "ab")  # noqa: SIM115 - open (and, at the end, locked) for life

    def unused() -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    if unused():  # whoever started it is gone already
        os._exit(70)

    def watch() -> None:
        while not unused():
            time.sleep(_WATCH_INTERVAL_S)
        print("swarm: no process uses the server any more; exiting", flush=True)
        os._exit(0)

    threading.Thread(target=watch, name="users-watch", daemon=True).start()


def _no_extra_buffer_types() -> None:
    import llama_cpp.llama_cpp as low

    default_params = low.llama_model_default_params

    def model_default_params() -> Any:
        params = default_params()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = model_default_params
    print("swarm: llama.cpp extra buffer types off (use_extra_bufts=False)", flush=True)


def main() -> None:
    users_file = os.environ.get(USERS_ENV)
    if users_file:
        _exit_with_last_user(users_file)
    _no_extra_buffer_types()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
