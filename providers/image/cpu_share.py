"""How much CPU this process really got while ``precision: auto`` measured: a disturbed
measurement is cached as provisional, and measured again at a start that looks quiet
(``precision.AutoPrecision``).

The 1-minute load average cannot tell: inside a container it is the host's, and on a shared
RunPod host it sits above the container's cores at every cold start, so no decision was ever
cached there. What is read instead is this process's own share:

- ``/proc/self/task/*/schedstat`` (Linux): each thread's time on a CPU and its time runnable but
  waiting in the run queue. Over the measurement, wait / (run + wait) is the share of the time it
  wanted a CPU that other work (on the host or in the container) held it.
- the cgroup's CPU quota and throttling: v2 ``cpu.max`` and ``cpu.stat`` ``throttled_usec``; v1
  ``cpu/cpu.cfs_quota_us``, ``cpu.cfs_period_us`` and ``cpu.stat`` ``throttled_time`` (ns).
  A throttled thread is off the run queue, so schedstat does not count it. Where the quota is at
  least the cores the measurement uses, its own threads cannot pass it: throttling means other
  work in the container spent the quota, a disturbance. Where the quota is smaller, throttling is
  the container's steady state, jobs run under it too: it is recorded, not held against the
  measurement.

Where neither can be read (macOS, a kernel without schedstat), the load average decides as
before: there it is this machine's. The paths are parameters, so tests give both cases files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: threads kept off a CPU this share of their runnable time: other work took at least half of it
WAIT_SHARE_BUSY = 0.5
#: the container throttled for this share of the wall time, by work other than the measurement's
THROTTLED_BUSY = 0.25


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class Sample:
    """The counters at one moment; None where they cannot be read here."""

    wall: float
    threads: dict[str, tuple[int, int]] | None  # thread id -> (ns on a CPU, ns waiting for one)
    throttled_ns: int | None


@dataclass(frozen=True)
class CpuShare:
    """What a measurement got between two samples."""

    cpus: int
    #: of this process's threads' runnable time, the share spent waiting for a CPU (None: unread)
    wait_share: float | None = None
    #: of the wall time, the share the cgroup was throttled (None: no quota, or unread)
    throttled_share: float | None = None
    #: the cgroup's quota in CPUs (None: none)
    quota_cpus: float | None = None
    #: the 1-minute load average (the host's, inside a container)
    load: float | None = None

    def busy(self) -> str | None:
        """Why the measurement was disturbed, or None when it was not."""
        if self.wait_share is not None and self.wait_share >= WAIT_SHARE_BUSY:
            return f"other work held the CPUs {self.wait_share:.0%} of the time its threads were ready to run"
        if (self.throttled_share is not None and self.throttled_share >= THROTTLED_BUSY
                and (self.quota_cpus is None or self.quota_cpus >= self.cpus)):
            return f"other work in the container spent its CPU quota: throttled {self.throttled_share:.0%} of the time"
        if self.wait_share is None and self.throttled_share is None and self.load is not None and self.load > self.cpus:
            return "load above the CPU count"  # nothing of this process's own could be read
        return None

    def describe(self) -> str:
        """``load 0.40 on 2 CPUs``, or with this process's own figures where they were read."""
        if self.wait_share is None and self.throttled_share is None:
            return f"load {self.load:.2f} on {self.cpus} CPUs" if self.load is not None else f"{self.cpus} CPUs"
        parts = [f"{self.cpus} CPUs"]
        if self.wait_share is not None:
            parts.append(f"waited for a CPU {self.wait_share:.0%}")
        if self.throttled_share is not None:
            parts.append(f"throttled {self.throttled_share:.0%} (quota {self.quota_cpus:g} CPUs)"
                         if self.quota_cpus is not None else f"throttled {self.throttled_share:.0%}")
        if self.load is not None:
            parts.append(f"host load {self.load:.2f}")
        return ", ".join(parts)

    def conditions(self) -> dict[str, float]:
        """The figures a cached decision records."""
        named = {"load_1m": self.load, "cpu_wait_share": self.wait_share, "throttled_share": self.throttled_share,
                 "quota_cpus": self.quota_cpus}
        return {"cpus": self.cpus, **{key: round(value, 2) for key, value in named.items() if value is not None}}


class CpuShareReader:
    """Reads this process's threads under ``tasks_dir`` and its cgroup under ``cgroup_dir``
    (None: not read here); ``clock`` is the wall clock of the throttled share."""

    def __init__(self, tasks_dir: str | Path | None = "/proc/self/task",
                 cgroup_dir: str | Path | None = "/sys/fs/cgroup",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tasks_dir = Path(tasks_dir) if tasks_dir is not None else None
        self.cgroup_dir = Path(cgroup_dir) if cgroup_dir is not None else None
        self.clock = clock

    def sample(self) -> Sample:
        return Sample(self.clock(), self._threads(), self._throttled_ns())

    def between(self, before: Sample, after: Sample, cpus: int, load: float | None) -> CpuShare:
        """The share the process got from ``before`` to ``after``; a thread that ended between
        them is left out, one that started counts from zero."""
        wait_share = None
        if before.threads is not None and after.threads is not None:
            run = wait = 0
            for tid, (ran, waited) in after.threads.items():
                ran_before, waited_before = before.threads.get(tid, (0, 0))
                run, wait = run + max(ran - ran_before, 0), wait + max(waited - waited_before, 0)
            wait_share = wait / (run + wait) if run + wait > 0 else None
        quota = self.quota_cpus()
        throttled_share = None
        if quota is not None and before.throttled_ns is not None and after.throttled_ns is not None:
            wall_ns = (after.wall - before.wall) * 1e9
            throttled_share = min(max(after.throttled_ns - before.throttled_ns, 0) / wall_ns, 1.0) if wall_ns > 0 else 0.0
        return CpuShare(cpus, wait_share, throttled_share, quota, load)

    def quota_cpus(self) -> float | None:
        """The cgroup's CPU quota in CPUs (``cpu.max``; v1 ``cfs_quota_us / cfs_period_us``), or None."""
        if self.cgroup_dir is None:
            return None
        v2 = _read(self.cgroup_dir / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            return _ratio(quota, period)
        for folder in self._v1_dirs():
            quota_text = _read(folder / "cpu.cfs_quota_us")
            if quota_text is not None:
                return _ratio(quota_text, _read(folder / "cpu.cfs_period_us") or "")
        return None

    def _threads(self) -> dict[str, tuple[int, int]] | None:
        if self.tasks_dir is None:
            return None
        try:
            tids = [entry.name for entry in self.tasks_dir.iterdir()]
        except OSError:
            return None
        threads = {}
        for tid in tids:
            fields = (_read(self.tasks_dir / tid / "schedstat") or "").split()
            if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
                threads[tid] = (int(fields[0]), int(fields[1]))
        return threads or None  # a thread that ended meanwhile is skipped; none at all: no schedstat

    def _throttled_ns(self) -> int | None:
        if self.cgroup_dir is None:
            return None
        stat = _stat(self.cgroup_dir / "cpu.stat")
        if "throttled_usec" in stat:
            return stat["throttled_usec"] * 1000
        for folder in self._v1_dirs():
            stat = _stat(folder / "cpu.stat")
            if "throttled_time" in stat:
                return stat["throttled_time"]
        return None

    def _v1_dirs(self) -> list[Path]:
        assert self.cgroup_dir is not None
        return [self.cgroup_dir / "cpu", self.cgroup_dir / "cpu,cpuacct"]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _stat(path: Path) -> dict[str, int]:
    values = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def _ratio(quota: str, period: str) -> float | None:
    """``quota / period`` in CPUs; None for ``max``, ``-1`` or anything unreadable."""
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
