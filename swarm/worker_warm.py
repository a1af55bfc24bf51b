"""The RunPod worker's warm-up: what ``worker.warm`` lists loaded at start, the LLM servers before
the worker loop takes jobs, the image models beside it in a background thread that waits for a
quiet moment (``Activity``) and stops at its next check when the worker stops (a process that
exits under a thread still in torch, onnxruntime or ncnn aborts). ``handler.py`` calls it with its
runtime; nothing here runs in the MCP server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from core.redact import redact
from providers.base import Warmable

log = logging.getLogger("swarm.handler")


class Activity:
    """Jobs in flight and when the last one ended: the background warm-up waits for a quiet moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._quiet_since = time.monotonic()

    def started(self) -> None:
        with self._lock:
            self._running += 1

    def ended(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self._quiet_since = time.monotonic()

    def restart_quiet(self) -> None:
        """Count the quiet moment from now (the worker loop is about to take its first jobs)."""
        with self._lock:
            self._quiet_since = time.monotonic()

    def wait_quiet(self, idle_s: float, poll_s: float = 0.05, stop: threading.Event | None = None) -> bool:
        """Block until no job has run for ``idle_s`` seconds (True), or until ``stop`` is set (False)."""
        while stop is None or not stop.is_set():
            with self._lock:
                if self._running == 0 and time.monotonic() - self._quiet_since >= idle_s:
                    return True
            time.sleep(poll_s)
        return False


activity = Activity()


#: kinds of ``worker.warm`` warmed beside the worker loop, not before it: loading a model and
#: measuring its precision takes seconds to minutes that the first job (maybe not an image job)
#: would otherwise wait; an image job arriving meanwhile waits on the provider's own lock
BACKGROUND_WARM = frozenset({"upscale", "remove_background"})
#: the background warm-up of each kind starts once no job has run for this long: measuring a
#: precision takes the CPU for 10-50 s on 2 cores, and a job running beside it took twice as long
#: (`scripts/worker-image check`: first job 12.5 s vs 1-3 s); an image job that comes first makes
#: the decision itself, as without warm-up
WARM_IDLE_S = 2.0


async def warm_up(rt: Any, kinds: Sequence[str] | None = None) -> None:
    """Load once, at worker start, what config lists in ``worker.warm`` (never in the MCP server).

    Args:
        kinds: warm only these, in order (default: all of ``worker.warm``).
    """
    config = rt.config
    kinds = list(config.worker.warm if kinds is None else kinds)
    for kind in kinds:
        if kind == "llm":
            from providers.llm.litellm_loader import warm_litellm

            warm_litellm()  # ~6 s of import the first job's first call would pay (and its trace show)
            for name, spec in config.models.items():
                if spec.local_server is not None and spec.local_server.autostart:
                    await rt.local_servers.ensure(name, spec)
            continue
        provider = rt.providers(config).get(kind)
        if isinstance(provider, Warmable):
            await provider.warm()
    log.info("worker warmed: %s", ", ".join(kinds) or "nothing")


def start_warm_up(rt: Any) -> threading.Thread | None:
    """The worker's warm-up: the kinds of ``worker.warm`` outside ``BACKGROUND_WARM`` now, the
    others in a background thread (returned; None when there is none), so the worker loop,
    started next, takes jobs at once. A failure is logged; the first job then loads as today."""
    warm = rt.config.worker.warm
    try:
        asyncio.run(warm_up(rt, [kind for kind in warm if kind not in BACKGROUND_WARM]))
    except Exception as exc:  # a cold worker still serves; the first job pays the load
        log.error("warm-up failed: %s", redact(str(exc)))
    return warm_in_background(rt, [kind for kind in warm if kind in BACKGROUND_WARM])


def warm_in_background(rt: Any, kinds: Sequence[str]) -> threading.Thread | None:
    """Warm the providers of ``kinds`` in a daemon thread with its own event loop and return it
    (None when none of them has anything to warm).

    The providers are built here, in the caller's thread, so a job that arrives at once gets the
    very instance being warmed and waits on its lock instead of loading a second copy. A failure
    is logged (redacted) and that kind's first job loads it, as without warm-up. Each kind waits
    for a quiet moment (``WARM_IDLE_S`` without a job) before it starts.
    """
    providers = rt.providers(rt.config)
    warmable: dict[str, Warmable] = {}
    for kind in kinds:
        try:
            provider = providers.get(kind)
        except Exception as exc:  # a cold worker still serves; the job reports the same error
            log.error("warm-up of %s failed: %s: %s", kind, type(exc).__name__, redact(str(exc)))
            continue
        if isinstance(provider, Warmable):
            warmable[kind] = provider
    if not warmable:
        return None
    activity.restart_quiet()  # the first job's poll comes after this: give it the chance to arrive
    global _background
    _background = threading.Thread(target=asyncio.run, args=(_warm_each(warmable),), name="swarm-warm", daemon=True)
    _background.start()
    return _background


#: the background warm-up's thread, and the event that stops it (``stop_background_warm_up``)
_background: threading.Thread | None = None
_warm_stop = threading.Event()
#: how long a stopping worker waits for its background warm-up to stop at its next check (a
#: measurement's next run, a tile, a wait for a lock); one stuck longer in native code is left
#: behind by an immediate exit. ``swarm endpoint serve`` gives a worker longer (``workers.STOP_GRACE_S``)
WARM_STOP_S = 10.0


async def _warm_each(providers: dict[str, Warmable]) -> None:
    for kind, provider in providers.items():
        if not activity.wait_quiet(WARM_IDLE_S, stop=_warm_stop):  # this thread's own loop: nothing else waits on it
            return
        started = time.perf_counter()
        try:
            done = await _warm_stoppable(provider)
        except Exception as exc:  # a cold provider still serves: its first job loads it
            log.error("background warm-up of %s failed after %.1f s: %s: %s", kind,
                      time.perf_counter() - started, type(exc).__name__, redact(str(exc)))
            continue
        if not done:
            log.info("background warm-up of %s stopped after %.1f s: the worker is stopping (what it left"
                     " undecided is measured at the next start)", kind, time.perf_counter() - started)
            return
        log.info("worker warmed %s in the background in %.1f s", kind, time.perf_counter() - started)


async def _warm_stoppable(provider: Warmable, poll_s: float = 0.1) -> bool:
    """``provider.warm()`` under ``backend.run_stoppable``'s stop flag, on an event loop of its own
    in that call's thread; True once done, False once ``_warm_stop`` stopped it. Stopped, the work
    raises ``WorkCancelled`` at its next check and this returns when its thread has returned: a
    process that exits under a thread still in torch, onnxruntime or ncnn aborts (``terminate called
    without an active exception``)."""
    from providers.image.backend import run_stoppable

    gate, running, finished = threading.Lock(), threading.Event(), threading.Event()

    def warm() -> None:
        with gate:  # a stop from here on finds ``running`` set, and waits for ``finished``
            if _warm_stop.is_set():
                return
            running.set()
        try:
            asyncio.run(provider.warm())
        finally:
            finished.set()

    work = asyncio.ensure_future(run_stoppable(warm))
    while not work.done() and not _warm_stop.is_set():
        await asyncio.wait({work}, timeout=poll_s)
    if work.done():
        work.result()  # its error, if any
        return True
    work.cancel()  # run_stoppable sets the flag the work checks
    with gate:
        started = running.is_set()
    if started:
        await asyncio.to_thread(finished.wait)
    return False


def stop_background_warm_up(wait_s: float | None = None) -> bool:
    """Stop the background warm-up and wait up to ``wait_s`` (``WARM_STOP_S``) for its thread;
    False when it is still running (stuck in native code). The worker calls this on its way out."""
    thread = _background
    if thread is None or not thread.is_alive():
        return True
    _warm_stop.set()
    thread.join(WARM_STOP_S if wait_s is None else wait_s)
    return not thread.is_alive()
