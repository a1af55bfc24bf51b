"""Run ``llama_cpp.server`` portably, tied to the process that started it.

Started by ``LocalServerManager`` as ``python llama_launch.py <llama_cpp.server args>`` (by file
path: this module imports nothing from the project). Two things happen before the server runs:

* **No extra buffer types.** llama.cpp repacks the weights into "extra" CPU buffer types
  where the CPU has them; on Intel CPUs with AMX that is the AMX buffer, and llama-cpp-python
  0.3.36 then dies with SIGSEGV on the first decode of a multi-token prompt (llama.cpp issue
  20824, ``ggml_backend_amx_mul_mat``). ``llama_cpp.server`` has no flag for the model
  parameter ``use_extra_bufts``, so the model's default parameters are wrapped here to turn it
  off. This runs on every CPU, AMD included, so every machine serves the model the same way
  and the tests on any machine exercise the fix (README, "The local model, on every CPU").
* **Dies with its parent.** The server runs in its own process group (so a terminal's Ctrl-C
  does not hit it first), which also means nothing kills it when the parent is SIGKILLed.
  Linux's ``PR_SET_PDEATHSIG`` sends it SIGKILL when the parent dies, and a watchdog thread
  (every platform) exits when the parent pid changes. The parent pid to watch comes in
  ``SWARM_LLAMA_PARENT_PID``; a parent already gone at start means exit at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import runpy
import signal
import sys
import threading
import time
from typing import Any

PARENT_ENV = "SWARM_LLAMA_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_WATCH_INTERVAL_S = 0.5


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(70)

    def watch() -> None:
        while True:
            time.sleep(_WATCH_INTERVAL_S)
            if os.getppid() != parent_pid:
                os._exit(70)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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
    parent = os.environ.get(PARENT_ENV)
    if parent:
        _die_with_parent(int(parent))
    _no_extra_buffer_types()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
