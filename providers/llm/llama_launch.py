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
* **The CPU code is chosen here, at run time.** ``scripts/setup`` and the worker image build
  llama.cpp with one CPU backend per instruction-set level (``GGML_CPU_ALL_VARIANTS``: x64 and
  sse42 up to haswell, skylakex, zen4, sapphirerapids on x86; armv8.0 up to armv9.2 on ARM
  Linux), each a module in ``llama_cpp/lib``. Each module scores this CPU (0: it lacks an
  instruction the module needs); the highest score is loaded, so a build made on an AVX-512 machine
  runs on an AVX2 one and the other way round, and a wheel in pip's cache is safe to share.
  ``SWARM_LLAMA_CPU_VARIANT=<name>`` loads that module instead (refused, with the usable names,
  where this CPU lacks what it needs). A build without the modules (one made with
  ``GGML_NATIVE=ON`` before) has its CPU code linked in: nothing is chosen, and it runs only on
  CPUs like the one that built it.
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

import ctypes
import fcntl
import os
import runpy
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USERS_ENV = "SWARM_LLAMA_USERS_FILE"
VARIANT_ENV = "SWARM_LLAMA_CPU_VARIANT"
_WATCH_INTERVAL_S = 0.5
_MODULE_SUFFIX = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
_MODULE_PREFIX = "ggml-cpu-" if sys.platform == "win32" else "libggml-cpu-"


class VariantError(RuntimeError):
    """The CPU module asked for (or every module built) cannot run on this CPU."""


@dataclass(frozen=True)
class CpuVariant:
    """The llama.cpp CPU module chosen for this CPU, and how every module built scored here."""

    name: str
    path: Path
    forced: bool
    scores: tuple[tuple[str, int], ...]  # (name, score) per module; 0: cannot run on this CPU

    def describe(self) -> str:
        usable = [name for name, score in self.scores if score > 0]
        how = f"{VARIANT_ENV}={self.name}" if self.forced else f"best of {len(usable)} usable here"
        return f"{self.name} ({how}; built: {', '.join(name for name, _ in self.scores)})"


def lib_dir() -> Path:
    """``llama_cpp/lib`` of the installed llama-cpp-python, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise VariantError("llama-cpp-python is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def cpu_modules(folder: Path) -> dict[str, Path]:
    """{variant name: module file} of the CPU backends built as loadable modules; empty for a
    build with its CPU code linked into libggml (``GGML_BACKEND_DL`` off)."""
    found = {}
    for file in sorted(folder.glob(f"{_MODULE_PREFIX}*{_MODULE_SUFFIX}")):
        found[file.name[len(_MODULE_PREFIX):-len(_MODULE_SUFFIX)]] = file
    return found


def _library(folder: Path, stem: str) -> Path | None:
    """The file of ``lib<stem>`` that llama.cpp itself loads: its soname (``libggml.so.0``), else the
    plain name. A wheel holds no symlinks, so ``libggml.so`` and ``libggml.so.0`` are two copies;
    loading the other copy would make a second ggml whose backend registry llama.cpp never sees."""
    versioned = sorted(folder.glob(f"lib{stem}{_MODULE_SUFFIX}.*"), key=lambda file: len(file.name))
    for file in (*versioned[:1], folder / f"lib{stem}{_MODULE_SUFFIX}", folder / f"{stem}{_MODULE_SUFFIX}"):
        if file.exists():
            return file
    return None


def _base_libraries(folder: Path) -> None:
    """ggml-base and ggml loaded globally first, so each module's dependency on them resolves to
    the copies llama.cpp uses (the modules carry no search path of their own)."""
    mode = getattr(ctypes, "RTLD_GLOBAL", 0)
    for stem in ("ggml-base", "ggml"):
        file = _library(folder, stem)
        if file is not None:
            ctypes.CDLL(str(file), mode=mode)


def score(module: Path) -> int:
    """The module's own score of this CPU (ggml's ``ggml_backend_score``: 0 = cannot run here).

    Loading a module runs no code built for its instruction set; the score function reads cpuid
    (x86) or the hardware capabilities (ARM), as llama.cpp's own loader does."""
    try:
        handle = ctypes.CDLL(str(module))
        fn = handle.ggml_backend_score
    except (OSError, AttributeError):
        return 0
    fn.restype = ctypes.c_int
    return int(fn())


def choose_cpu_variant(folder: Path, forced: str | None = None) -> CpuVariant | None:
    """The module to load for this CPU: ``forced`` by name, else the highest score; None when the
    build has no modules (its CPU code is linked in)."""
    modules = cpu_modules(folder)
    if not modules:
        return None
    _base_libraries(folder)
    scores = tuple((name, score(path)) for name, path in modules.items())
    usable = [name for name, value in scores if value > 0]
    if forced:
        if forced not in modules:
            raise VariantError(f"{VARIANT_ENV}={forced!r}: no such module in {folder}; built: {', '.join(modules)}")
        if forced not in usable:
            raise VariantError(
                f"{VARIANT_ENV}={forced!r}: this CPU lacks an instruction that module needs; "
                f"usable here: {', '.join(usable) or 'none'}"
            )
        return CpuVariant(forced, modules[forced], True, scores)
    if not usable:
        raise VariantError(f"no llama.cpp CPU module in {folder} runs on this CPU (built: {', '.join(modules)})")
    best = max(usable, key=lambda name: dict(scores)[name])
    return CpuVariant(best, modules[best], False, scores)


def load_cpu_variant(variant: CpuVariant, folder: Path) -> None:
    """Register the chosen module with ggml, before llama.cpp looks for backends (it would search
    only the interpreter's folder and the working directory, and find none)."""
    ggml = _library(folder, "ggml")
    if ggml is None:
        raise VariantError(f"libggml not found in {folder}")
    lib = ctypes.CDLL(str(ggml), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    if not lib.ggml_backend_load(os.fsencode(variant.path)):
        raise VariantError(f"ggml could not load {variant.path}")


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


def _cpu_backend() -> None:
    folder = lib_dir()
    try:
        variant = choose_cpu_variant(folder, os.environ.get(VARIANT_ENV) or None)
        if variant is not None:
            load_cpu_variant(variant, folder)
    except VariantError as exc:
        print(f"swarm: {exc}", file=sys.stderr, flush=True)
        sys.exit(78)  # EX_CONFIG: the manager reports the log's last lines
    if variant is None:
        print("swarm: llama.cpp CPU code linked in (built for the machine that compiled it: "
              "run scripts/setup to rebuild it with a module per CPU level)", flush=True)
    else:
        print(f"swarm: llama.cpp CPU module {variant.describe()}", flush=True)


def main() -> None:
    users_file = os.environ.get(USERS_ENV)
    if users_file:
        _exit_with_last_user(users_file)
    _no_extra_buffer_types()
    _cpu_backend()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
