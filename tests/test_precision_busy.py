"""``precision: auto`` tells a measurement disturbed by other work (not cached) from a quiet one by
what this process got: its threads' run-queue wait (``/proc/self/task/*/schedstat``) and its
cgroup's throttling, not the load average, which inside a container is the host's.

The /proc and cgroup files are fakes in a temporary folder that the fake model's runs advance,
so nothing here depends on this machine's load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from test_image_precision import AMX, MODEL, FakeModel

from providers.image.cpu_share import CpuShareReader, Sample
from providers.image.precision import AutoPrecision


class Machine:
    """Fake ``/proc/self/task`` (one thread) and cgroup folders; ``advance`` adds to the counters."""

    def __init__(self, root: Path, cgroup: str | None = None, quota: str = "max 100000") -> None:
        self.tasks, self.cgroup = root / "task", root / "cgroup"
        self.run_ns = self.wait_ns = self.throttled_ns = 0
        self.version = cgroup
        if cgroup == "v2":
            self.cgroup.mkdir(parents=True)
            (self.cgroup / "cpu.max").write_text(f"{quota}\n")
        elif cgroup == "v1":
            (self.cgroup / "cpu").mkdir(parents=True)
            quota_us, _, period_us = quota.partition(" ")
            (self.cgroup / "cpu" / "cpu.cfs_quota_us").write_text(("-1" if quota_us == "max" else quota_us) + "\n")
            (self.cgroup / "cpu" / "cpu.cfs_period_us").write_text(period_us + "\n")
        self.advance(0, 0, 0)

    def advance(self, run_s: float, wait_s: float, throttled_s: float = 0.0) -> None:
        self.run_ns += int(run_s * 1e9)
        self.wait_ns += int(wait_s * 1e9)
        self.throttled_ns += int(throttled_s * 1e9)
        (self.tasks / "4242").mkdir(parents=True, exist_ok=True)
        (self.tasks / "4242" / "schedstat").write_text(f"{self.run_ns} {self.wait_ns} 17\n")
        if self.version == "v2":
            (self.cgroup / "cpu.stat").write_text(
                f"usage_usec 1\nnr_periods 9\nnr_throttled 3\nthrottled_usec {self.throttled_ns // 1000}\n")
        elif self.version == "v1":
            (self.cgroup / "cpu" / "cpu.stat").write_text(f"nr_periods 9\nnr_throttled 3\nthrottled_time {self.throttled_ns}\n")

    def reader(self, clock) -> CpuShareReader:
        return CpuShareReader(self.tasks, self.cgroup if self.version else None, clock=clock)


class Contended(FakeModel):
    """Each run of ``cost`` seconds (fake clock) ran ``1 - wait`` of it and waited ``wait`` of it
    for a CPU, and the container was throttled ``throttled`` of it."""

    def __init__(self, machine: Machine, wait: float, throttled: float = 0.0) -> None:
        super().__init__({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
        self.machine, self.wait, self.throttled = machine, wait, throttled

    def run(self, name: str, image: np.ndarray) -> np.ndarray:
        cost = self.cost[name]
        self.machine.advance(cost * (1 - self.wait), cost * self.wait, cost * self.throttled)
        return super().run(name, image)


def decide(tmp_path: Path, machine: Machine, model: Contended, load: float) -> tuple[str, dict]:
    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: load, cpu_share=machine.reader(model.clock))
    decision = auto.decide(MODEL, "t", model.run)
    cache = tmp_path / "precision.json"
    entries = json.loads(cache.read_text())["decisions"] if cache.exists() else {}
    return decision.why, entries


def test_a_loaded_host_does_not_keep_a_quiet_container_from_caching(tmp_path):
    """Load 40 on the host, 2 CPUs for this process: it used to count as busy at every cold start,
    so nothing was ever cached. This process's threads waited 5% of the time: a quiet measurement."""
    machine = Machine(tmp_path)
    why, entries = decide(tmp_path, machine, Contended(machine, wait=0.05), load=40.0)
    assert why.endswith("; 2 CPUs, waited for a CPU 5%, host load 40.00"), why
    (entry,) = entries.values()
    assert entry["precision"] == "bf16"
    assert entry["conditions"] == {"cpus": 2, "load_1m": 40.0, "cpu_wait_share": 0.05}


PROVISIONAL = ("cached as provisional, measured again at a start when the machine looks quiet"
               " (1 of 3 busy measurements)")


def test_a_process_kept_off_the_cpus_caches_as_provisional_whatever_the_load_says(tmp_path):
    machine = Machine(tmp_path)
    why, entries = decide(tmp_path, machine, Contended(machine, wait=0.6), load=0.1)
    assert why.endswith("; 2 CPUs, waited for a CPU 60%, host load 0.10: busy (other work held the CPUs 60% of the"
                        f" time its threads were ready to run), {PROVISIONAL}"), why
    assert [entry["busy_runs"] for entry in entries.values()] == [1]


def test_throttling_by_other_work_in_the_container_is_busy(tmp_path):
    """A 4-CPU quota the measurement's 2 threads cannot pass alone, throttled 40% of the time:
    others in the container spent it (cgroup v2)."""
    machine = Machine(tmp_path, "v2", quota="400000 100000")
    why, entries = decide(tmp_path, machine, Contended(machine, wait=0.0, throttled=0.4), load=0.1)
    assert "throttled 40% (quota 4 CPUs)" in why and "busy (other work in the container spent its CPU quota" in why
    assert [entry["busy_runs"] for entry in entries.values()] == [1]


def test_throttling_by_a_quota_below_the_cores_is_the_steady_state_and_cached(tmp_path):
    """A 1-CPU quota under 2 usable cores (cgroup v1): jobs run throttled too, so the measurement
    is what they will see; recorded, cached."""
    machine = Machine(tmp_path, "v1", quota="100000 100000")
    why, entries = decide(tmp_path, machine, Contended(machine, wait=0.0, throttled=0.4), load=0.1)
    assert why.endswith("; 2 CPUs, waited for a CPU 0%, throttled 40% (quota 1 CPUs), host load 0.10"), why
    (entry,) = entries.values()
    assert entry["conditions"]["throttled_share"] == 0.4 and entry["conditions"]["quota_cpus"] == 1.0


def test_where_nothing_of_the_process_can_be_read_the_load_decides(tmp_path):
    """No schedstat, no cgroup (macOS, an old kernel): the load average is this machine's there."""
    reader = CpuShareReader(tmp_path / "absent-task", tmp_path / "absent-cgroup")
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: 4.6, cpu_share=reader)
    assert auto.decide(MODEL, "t", model.run).why.endswith("; load 4.60 on 2 CPUs: busy (load above the CPU count), "
                                                           + PROVISIONAL)
    sample = reader.sample()
    assert sample.threads is None and sample.throttled_ns is None and reader.quota_cpus() is None


def test_threads_that_start_or_end_during_the_measurement_count_only_for_their_time():
    reader = CpuShareReader(None, None)
    before = Sample(0.0, {"1": (100, 0), "2": (50, 50)}, None)
    after = Sample(1.0, {"1": (400, 100), "3": (100, 100)}, None)  # 2 ended, 3 started
    share = reader.between(before, after, cpus=2, load=None)
    assert share.wait_share == (100 + 100) / (300 + 100 + 100 + 100)
    assert share.throttled_share is None and share.quota_cpus is None
