"""``precision: auto`` in several processes at once: one measures, the others wait and take its decision.

Two workers warming up on a fresh ``SWARM_HOME`` used to measure side by side, each timing the
other's load. The processes are spawned, not forked: by the time these tests run, earlier ones
have left torch and onnxruntime threads in this process, and a fork can copy a lock one of them holds.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from test_image_precision import AMX, IDLE, MODEL, NOT_READ, FakeModel, chooser

from providers.image import precision_cache
from providers.image.precision import AutoPrecision, machine_key
from providers.image.precision_cache import DecisionCache

SPAWN = multiprocessing.get_context("spawn")


class Logged(FakeModel):
    """``FakeModel`` whose runs take real time and are logged, one line per run, to ``log``: which
    process ran what, readable after the processes are gone."""

    def __init__(self, log: Path, pause: float) -> None:
        super().__init__({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
        self.log, self.pause = log, pause

    def run(self, name: str, image: np.ndarray) -> np.ndarray:
        with self.log.open("a") as handle:
            handle.write(f"{os.getpid()} {name}\n")
        time.sleep(self.pause)
        return super().run(name, image)


def _warm_up(folder: str, start: object, answers: object) -> None:
    model = Logged(Path(folder) / "runs", pause=0.02)
    start.wait()  # type: ignore[attr-defined]
    answers.put(chooser(Path(folder), AMX, model).decide(MODEL, "t", model.run).describe())  # type: ignore[attr-defined]


def test_processes_warming_up_at_once_measure_once_and_share_the_decision(tmp_path):
    start, answers = SPAWN.Barrier(2), SPAWN.Queue()
    workers = [SPAWN.Process(target=_warm_up, args=(str(tmp_path), start, answers)) for _ in range(2)]
    for worker in workers:
        worker.start()
    decisions = [answers.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    measured_by = {line.split()[0] for line in (tmp_path / "runs").read_text().splitlines()}
    assert len(measured_by) == 1  # the second waited, then read the first's decision
    assert decisions[0] == decisions[1] and decisions[0].startswith("bf16 (auto: 4.0x fp32")


def test_a_process_that_waits_too_long_runs_the_reference_uncached(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: IDLE, wait_s=0.3, cpu_share=NOT_READ)
    with DecisionCache(tmp_path / "precision.json").measuring(machine_key(AMX), 0) as held:
        assert held
        decision = auto.decide(MODEL, "t", model.run)
    assert decision.describe() == ("fp32 (auto: the reference, not measured: another process held this machine's "
                                   "measurement lock over 0.3 s; measured at the next start)")
    assert model.calls == [] and not (tmp_path / "precision.json").exists()
    assert auto.decide(MODEL, "t", model.run) == decision  # this process does not wait again
    assert chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run).precision == "bf16"  # the next start


def _hang_measuring(folder: str) -> None:
    def run(name: str, image: np.ndarray) -> np.ndarray:
        (Path(folder) / "measuring").touch()
        time.sleep(600)  # a run that never returns, as a hang in native code
        return image

    chooser(Path(folder), AMX, FakeModel({}, {})).decide(MODEL, "t", run)


def test_a_holder_killed_while_measuring_does_not_block_the_next(tmp_path):
    holder = SPAWN.Process(target=_hang_measuring, args=(str(tmp_path),))
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "measuring").exists():
            assert holder.is_alive() and time.monotonic() < deadline, "the holder never started measuring"
            time.sleep(0.02)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(10)
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: IDLE, wait_s=60, cpu_share=NOT_READ)
    assert auto.decide(MODEL, "t", model.run).precision == "bf16" and model.calls  # measured, not the timeout's fp32
    assert json.loads((tmp_path / "precision.json").read_text())["decisions"]


class NoFlock:
    """``fcntl`` on a filesystem without ``flock`` (some network and FUSE mounts)."""

    LOCK_EX, LOCK_NB = 2, 4

    @staticmethod
    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")


@pytest.mark.parametrize("fcntl", [None, NoFlock], ids=["no-fcntl", "no-flock"])
def test_without_locks_it_measures_as_before(tmp_path, monkeypatch, fcntl):
    monkeypatch.setattr(precision_cache, "fcntl", fcntl)
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    assert chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run).precision == "bf16" and model.calls
    if fcntl is None:  # without flock the cache's own write lock fails, so nothing is cached there (as before)
        assert json.loads((tmp_path / "precision.json").read_text())["decisions"]


def test_a_measurement_stuck_in_this_process_stalls_one_wait_not_every_later_job(tmp_path):
    """A run that never returns (a hang in native code) held the chooser's lock in its thread, and
    every later upscale in the process queued behind it for good, of any model."""
    import threading

    release, started = threading.Event(), threading.Event()
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})

    def stuck(name: str, image: np.ndarray) -> np.ndarray:
        started.set()
        release.wait(30)  # returns only when the test lets it
        return model.run(name, image)

    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: IDLE, wait_s=3, cpu_share=NOT_READ)
    assert auto.decide("other-model", "t", model.run).precision == "bf16"  # decided before the hang
    answers: list[str] = []
    holder = threading.Thread(target=lambda: answers.append(auto.decide(MODEL, "t", stuck).describe()))
    holder.start()
    try:
        assert started.wait(10)
        began = time.monotonic()
        assert auto.decide("other-model", "t", model.run).precision == "bf16"  # decided: no wait at all
        assert time.monotonic() - began < 1.5  # well under wait_s (before: until the stuck run returned)
        waited = auto.decide(MODEL, "t", model.run)
        assert waited.describe() == ("fp32 (auto: the reference, not measured: a measurement in this process has run "
                                     "over 3 s; measured at the next start)")
        began = time.monotonic()
        assert auto.decide(MODEL, "t", model.run) == waited  # the next job does not wait again
        assert time.monotonic() - began < 1.5
    finally:
        release.set()
        holder.join(30)
    assert answers and answers[0].startswith("bf16 (auto: 4.0x fp32")  # it finished after all, and decides from now on
    assert auto.decide(MODEL, "t", model.run).precision == "bf16"


def test_a_model_that_timed_out_behind_another_models_stuck_measurement_is_measured_once_it_returns(tmp_path):
    import threading

    release, started = threading.Event(), threading.Event()
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})

    def stuck(name: str, image: np.ndarray) -> np.ndarray:
        started.set()
        release.wait(30)
        return model.run(name, image)

    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: IDLE, wait_s=0.3, cpu_share=NOT_READ)
    holder = threading.Thread(target=auto.decide, args=("stuck-model", "t", stuck))
    holder.start()
    try:
        assert started.wait(10)
        assert auto.decide(MODEL, "t", model.run).precision == "fp32"  # timed out behind the other model's run
    finally:
        release.set()
        holder.join(30)
    assert auto.decide(MODEL, "t", model.run).precision == "bf16"  # the lock is free: measured now, not fp32 for good
