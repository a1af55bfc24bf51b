"""A precision measurement that is stopped, and the lock file it measures under.

A worker stopped while its warm-up measured (``swarm endpoint serve`` stopped by SIGTERM) left a
``precision.json.<machine>.measuring`` file behind, and its measurement ran on to the end under
a stopping process. Now a measurement whose caller was cancelled (``backend.run_stoppable``)
stops before its next run and caches nothing; the holder removes the lock file before it lets go
(a waiter then locks the file at the path now: never two holders); a file a killed holder left
(its lock free) is removed at the next start, even one that measures nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
from test_image_precision import AMX, MODEL, FakeModel, chooser

from providers.image.backend import WorkCancelled, run_stoppable
from providers.image.precision import machine_key
from providers.image.precision_cache import DecisionCache


def _lock_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.measuring"))


def test_the_holder_removes_its_lock_file_and_a_waiter_then_holds_the_one_there_now(tmp_path: Path) -> None:
    cache = DecisionCache(tmp_path / "precision.json")
    key = machine_key(AMX)
    waiter_holds, waiter_may_go, results = threading.Event(), threading.Event(), []

    def waiter() -> None:
        with cache.measuring(key, 30, poll_s=0.01) as held:
            results.append(held)
            waiter_holds.set()
            waiter_may_go.wait(30)

    with cache.measuring(key, 0) as held:
        assert held and len(_lock_files(tmp_path)) == 1
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)  # the waiter opened the file and polls its lock
        assert not waiter_holds.is_set()
    try:
        assert waiter_holds.wait(30), "the waiter never got the lock after the holder let go"
        assert results == [True] and len(_lock_files(tmp_path)) == 1  # the one it locked is at the path
        with cache.measuring(key, 0) as third:
            assert not third  # the lock is the waiter's: one holder at a time
    finally:
        waiter_may_go.set()
        thread.join(30)
    assert _lock_files(tmp_path) == []  # nothing left once the last holder is done


def test_a_decided_measurement_leaves_no_lock_file(tmp_path: Path) -> None:
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    assert chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run).precision == "bf16" and model.calls
    assert (tmp_path / "precision.json").exists()
    assert _lock_files(tmp_path) == []


def test_a_measurement_whose_caller_is_cancelled_stops_caches_nothing_and_leaves_no_lock_file(tmp_path: Path) -> None:
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    first_run, finished, outcome = threading.Event(), threading.Event(), []

    def run(name: str, image: np.ndarray) -> np.ndarray:
        first_run.set()
        time.sleep(0.1)  # a run in native code: it cannot be interrupted, only not followed by another
        return model.run(name, image)

    def work() -> None:
        try:
            outcome.append(chooser(tmp_path, AMX, model).decide(MODEL, "t", run))
        except WorkCancelled as exc:
            outcome.append(exc)
        finally:
            finished.set()

    async def cancel_after_the_first_run() -> None:
        task = asyncio.ensure_future(run_stoppable(work))
        assert await asyncio.to_thread(first_run.wait, 30)
        task.cancel()
        assert await asyncio.to_thread(finished.wait, 30)

    asyncio.run(cancel_after_the_first_run())

    assert len(outcome) == 1 and isinstance(outcome[0], WorkCancelled), outcome
    assert "measured at the next start" in str(outcome[0])
    assert len(model.calls) <= 2, model.calls  # the run under way ended it; a whole measurement is 10 runs here
    assert not (tmp_path / "precision.json").exists()  # nothing decided, nothing cached
    assert _lock_files(tmp_path) == []
    # the next start measures, as if nothing had happened
    again = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    assert chooser(tmp_path, AMX, again).decide(MODEL, "t", again.run).precision == "bf16" and again.calls


def test_a_lock_file_a_killed_holder_left_goes_at_the_next_start_one_held_now_stays(tmp_path: Path) -> None:
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)  # decided and cached: nothing more to measure
    stale = tmp_path / f"precision.json.{'0' * 12}.measuring"
    stale.touch()  # what a holder killed by SIGKILL leaves: the file, its lock released by the kernel
    live_machine = "another machine sharing this folder"
    with DecisionCache(tmp_path / "precision.json").measuring(live_machine, 0) as held:
        assert held
        live = _lock_files(tmp_path)
        assert len(live) == 2 and stale.name in live

        later = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
        assert chooser(tmp_path, AMX, later).decide(MODEL, "t", later.run).precision == "bf16"
        assert later.calls == []  # the cached decision: nothing measured

        assert _lock_files(tmp_path) == [name for name in live if name != stale.name]  # the held one stays
    assert _lock_files(tmp_path) == []
