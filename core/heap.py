"""``settle()``: collect once, freeze what survives and space out young collections, once started;
``trim()``: give the C heap's free pages back once large buffers are freed and no job needs them;
``IdleRelease``: give a model's buffers back once no job has used it for a while.

A door (the RunPod worker, the MCP server, a local worker process) ends its start-up holding
~100k long-lived objects: modules, compiled graphs, config, pydantic schemas. Python's cyclic
collector walks all of them on every full collection, and under load (500 jobs at once) full
collections come every few hundred milliseconds. ``gc.freeze()`` moves them out of the
collector's generations for good, so a collection walks only what jobs made. Objects frozen here
are never collected even if they later become garbage in a cycle: call it once, after start-up,
never per job, and ``unsettle()`` when a door stops in a process that goes on (an MCP server run
in-process by its host or a test): what it froze then becomes collectable again.

Python's default young-generation threshold (700 net container allocations) suits scripts, not a
server whose every job step allocates thousands of short-lived dicts, tasks and futures that die
by reference counting anyway: under 500 concurrent delegation jobs the collector ran ~300 young
and ~30 middle collections per burst, each walking hundreds of live jobs' objects (240-350 ms of
a ~1.7 s burst, settled or not). ``YOUNG_THRESHOLD`` collects the young generation every 50,000
allocations instead: the same burst spends 40-80 ms in the collector. Cyclic garbage is still
freed, only later: a cycle that dies young waits at most ``YOUNG_THRESHOLD`` allocations; one that
outlived a young collection waits for the middle generation's (every 10 young ones, Python's
default) or a full one.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("core.heap")

#: net container allocations between two young-generation collections once a door has started
YOUNG_THRESHOLD = 50_000


def settle(young_threshold: int = YOUNG_THRESHOLD) -> int:
    """Collect, freeze every surviving object, raise the young threshold; returns how many are frozen.

    A threshold already above ``young_threshold`` (set by whoever embeds us) is kept, and a
    collector turned off (threshold 0) stays off.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young:
        gc.set_threshold(max(young, young_threshold), middle, old)
    return gc.get_freeze_count()


def unsettle() -> None:
    """Undo ``settle``'s freeze: a door stopping in a process that goes on calls it, so that its state
    (frozen at start-up, garbage in cycles now: the runtime, the loaded models) can be collected.

    Without it an in-process MCP server kept every stopped lifespan's runtime, u2netp's
    onnxruntime session and its worker thread included: ~275 MB a start/stop. The raised young
    threshold stays; a door started after it settles again.
    """
    gc.unfreeze()


def trim() -> bool:
    """Hand the C heap's free pages back to the system, where the C library can (glibc's
    ``malloc_trim``; musl, macOS and Windows have none: a no-op there). Returns whether it ran.

    glibc keeps memory a thread's arena freed for its next allocation: after an upscale (a few
    hundred MB of tile buffers from numpy and ncnn, freed at its end) the process kept ~0.5 GB more
    with each of three rounds of mixed image jobs (632 -> 1,323 MB); trimming after each upscale held it
    at ~640 MB, for 2-47 ms a trim. Call it once large buffers are freed and no job needs them (the
    upscaler: after 30 s without an upscale), not after every job.
    """
    function = _malloc_trim()
    if function is None:
        return False
    function(0)
    return True


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        function = libc.malloc_trim
    except (OSError, AttributeError):  # musl (Alpine) has no malloc_trim
        return None
    function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return function


#: seconds without a job after which an image model's buffers go back to the system (``IdleRelease``):
#: jobs back to back keep them (emptying ncnn's pools after each 192x192 upscale, re-faulting
#: ~0.7 GB cost 10% of its time: 2.15 vs 1.94 s), a process left alone gives them back
IDLE_RELEASE_S = 30.0


class IdleRelease:
    """Calls ``release`` once no job has held ``using()`` for ``idle_s`` seconds.

    Jobs may overlap: the clock starts when the last one leaves, and a job that comes first stops
    it. ``release`` runs on a timer thread, under the lock ``using()`` takes on entry: no job
    starts while it runs, and it must not call ``using()`` itself.
    """

    def __init__(self, release: Callable[[], None], idle_s: float = IDLE_RELEASE_S) -> None:
        self._release, self.idle_s = release, idle_s
        self._users = 0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @contextmanager
    def using(self) -> Iterator[None]:
        with self._lock:
            self._users += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    self._timer = threading.Timer(self.idle_s, self._fire)
                    self._timer.daemon = True  # never holds up the process's exit
                    self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._users or self._timer is None or self._timer is not threading.current_thread():
                return  # a job came (or went and started a newer timer) since this one started
            self._timer = None
            try:
                self._release()
            except Exception as exc:  # a timer thread: nobody to raise to; the next idle tries again
                log.warning("giving back idle buffers failed: %s", type(exc).__name__)
                log.debug("giving back idle buffers failed", exc_info=True)
