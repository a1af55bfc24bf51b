"""Which precision the upscaler runs at on this CPU: measured once per machine and model, cached.

``precision: auto`` measures the candidates this CPU supports (torch fp32 always; torch bf16
autocast where ``/proc/cpuinfo`` lists ``avx512_bf16`` or ``amx_bf16``) on two small fixed
images, a photo-like one (a seeded dead-leaves image: the edges and spectrum of photos) and a
synthetic line-art one (flat fills, dark anti-aliased outlines: what the anime models see), and
picks the fastest whose output stays within the floor: PSNR >= ``PSNR_FLOOR_DB`` against the fp32
output on both images. A lower precision must also be ``MIN_SPEEDUP`` times faster than fp32,
so noise in the timing never trades accuracy for nothing. How one measurement scores, times,
drops and chooses, and those rules, are ``precision_measure.py``; the probe images and floor
types are ``precision_probes.py``. Their names stay importable from here; the rules are read
where they are defined (a change to ``MIN_SPEEDUP`` is made in ``precision_measure``).

The same machinery chooses background removal's path (``rembg_paths.py``): there the candidates
are onnxruntime fp32 (the reference) and torch fp32/bf16/fp16 on the same weights, and the floor
is a mask one (``Floor``: each metric with its bound and direction). The first candidate of a
set is the reference every other is scored and timed against.

The decision is kept in ``precision.json`` in the state folder (``decisions_file``; the models
folder may be baked into an image, where a decision would be lost at every cold start), keyed by
architecture, CPU model and identification, usable cores, the flags that matter, model name,
runtime versions and the rules (floor, ``MIN_SPEEDUP``, ``MEASURE_REVISION``): the measurement runs
once per machine. Processes measuring at once on one machine would time each other's load: a
measurement holds a lock per machine (``DecisionCache.measuring``), and a process that waited for
it reads the cache again and takes the holder's decision (see ``AutoPrecision``). How much CPU the
measurement really got (``cpu_share.py``: its threads' run-queue wait, the container's throttling;
the load average only where neither can be read) and the core count are in the entry and the
why-text. A disturbed ("busy") measurement is cached too, as provisional (``Decision.busy_runs``):
a later start uses it, and measures again only where the machine then looks quiet (load average
at most half its CPUs), up to ``MAX_BUSY_RUNS`` busy measurements, after which the last one stands
(busy is that machine's usual state). Before, a busy measurement was not cached, and every start of
a machine that is always busy paid the measurement (up to 120 s) at its first image job. The upscaler on CPU times its candidates on a larger photo-like image than the probes it
scores (``timing_size``, ``upscale.CPU_TIMING_SIZE``): on 64x64 probes per-call overhead and caches
hide the difference between candidates whose gain is memory traffic. Still, the probe timings are no
measure of an upscale's speed: ``deadline.py`` uses real upscales' tiles. A job that measures (or waits for
another process's measurement) says so to its progress listener (``backend.report``). A corrupt
or unwritable cache is logged and measured again; it never fails an upscale.

Nothing here imports torch; numpy and Pillow are imported when images are made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers.attempts import said_as_shared
from providers.image import precision_measure
from providers.image.backend import WorkCancelled, report, stop_flag
from providers.image.cpu import CpuInfo, named_flags, read_cpu_info, usable_cpus
from providers.image.cpu_share import CpuShareReader, load_average
from providers.image.gpu import GPU_FLAGS
from providers.image.precision_cache import DecisionCache
from providers.image.precision_measure import (
    DROP_SLOWER_THAN,
    MEASURE_BUDGET_S,
    MEASURE_REVISION,
    MIN_SPEEDUP,
    PSNR_FLOOR_DB,
    Budget,
    Decision,
    RunFn,
    failure,
    measure,
    psnr_floor,
    rules,
)
from providers.image.precision_probes import Floor, Metric, probe_images, psnr

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CACHE_FILE", "CPU_CANDIDATES", "DROP_SLOWER_THAN", "MAX_BUSY_RUNS", "MEASURE_BUDGET_S", "MEASURE_REVISION",
    "MIN_SPEEDUP",
    "PSNR_FLOOR_DB", "RELEVANT_FLAGS", "WAIT_FOR_MEASUREMENT_S", "AutoPrecision", "Budget", "CpuInfo", "Decision",
    "Floor", "Metric", "RunFn", "cache_key", "candidates_for", "decisions_file", "describe_pinned", "failure",
    "machine_key", "measure", "probe_images", "psnr", "psnr_floor", "read_cpu_info", "rules",
]

log = logging.getLogger(__name__)

#: candidate -> CPU flags, any one of which makes it worth measuring (empty: always)
CPU_CANDIDATES: dict[str, frozenset[str]] = {
    "fp32": frozenset(),
    # x86: AVX512-BF16 or AMX; ARM: the ``bf16`` feature (torch's bf16 there may or may not be fast:
    # it is offered, and the measurement decides)
    "bf16": frozenset({"avx512_bf16", "amx_bf16", "bf16"}),
    # fp16 autocast: x86 with AVX512-FP16 (Sapphire Rapids on) or AMX-FP16 (Granite Rapids); ARM's
    # half-precision SIMD. Elsewhere torch emulates it (~0.1x): not offered, and dropped if pinned
    "fp16": frozenset({"avx512_fp16", "amx_fp16", "asimdhp"}),
}
#: the flags that change which path is fastest: part of the cache key (x86 flags, ARM features)
RELEVANT_FLAGS = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16",
                            "asimd", "asimdhp", "bf16", "i8mm", "sve", "sve2"}) | GPU_FLAGS
CACHE_FILE = "precision.json"
#: busy measurements in a row after which the last one stands: that machine is busy as a rule
MAX_BUSY_RUNS = 3
#: a start measures a provisional decision again where the 1-minute load is at most this share of its CPUs
QUIET_LOAD_SHARE = 0.5


def decisions_file() -> Path:
    """Where decisions are kept: ``<state_dir>/precision.json`` (``SWARM_HOME``: on RunPod, a
    network volume keeps them across cold starts; the image's baked models folder would not)."""
    from core.paths import state_dir

    return state_dir() / CACHE_FILE


#: how long a process waits for another's measurement on this machine before running the reference
WAIT_FOR_MEASUREMENT_S = 300.0


def candidates_for(cpu: CpuInfo, table: dict[str, frozenset[str]] | None = None) -> list[str]:
    """The candidates of ``table`` (default ``CPU_CANDIDATES``) worth measuring on ``cpu``,
    the reference (the table's first) first."""
    table = CPU_CANDIDATES if table is None else table
    return [name for name, needs in table.items() if not needs or needs & cpu.flags]


def only_path(cpu: CpuInfo, table: dict[str, frozenset[str]], hardware: str = "CPU") -> Decision | None:
    """The reference of ``table``, unmeasured, where ``cpu`` has none of what its other paths need
    (nothing to measure); else None."""
    candidates = candidates_for(cpu, table)
    if len(candidates) != 1:
        return None
    wanted = named_flags(cpu, set().union(*table.values()))
    return Decision(candidates[0], f"auto: this {hardware} has none of {', '.join(wanted)}")


def machine_key(cpu: CpuInfo) -> str:
    """One machine: architecture, CPU model name and identification, usable cores, the flags that matter."""
    flags = ",".join(sorted(cpu.flags & RELEVANT_FLAGS))
    ident = f" ({cpu.ident})" if cpu.ident else ""
    return f"{cpu.arch or '?'} {cpu.model}{ident} x{cpu.cpus} [{flags}]"


def cache_key(cpu: CpuInfo, model: str, versions: str) -> str:
    """One machine (``machine_key``) and model: model, runtime versions and rules
    (``torch 2.13.0 ...``). A key of an older format is never looked up again: its entry is
    ignored, and measured afresh."""
    return f"{machine_key(cpu)} {model} {versions}"


class AutoPrecision:
    """``precision: auto`` on CPU: the cached decision, else a measurement that is then cached.

    A measurement holds this machine's measurement lock (``DecisionCache.measuring``). A process
    that finds it held (a second worker warming up, any model) waits, then reads the cache
    again and takes the decision the holder cached, measuring nothing. It waits at most
    ``wait_s``: a holder that long is most likely stuck in a run that never returns, so this
    process runs the reference (``fp32``: always within the floor), says so in the trace and
    caches nothing, and the next start measures. A holder that dies (even by SIGKILL) releases
    the lock at once. A measurement (or a wait for one) whose caller was cancelled
    (``backend.run_stoppable``: a cancelled job, a stopping worker's warm-up) ends before its next
    run with ``WorkCancelled`` and caches nothing. Within one process the same holds for a measurement another thread started:
    a job waits for it at most ``wait_s``, then it and every later job run the reference
    unmeasured (a hang in native code cannot be interrupted in its thread), until that measurement
    returns after all; a model already decided never waits behind a measurement of another.

    Args:
        cache_path: the JSON file of decisions (``decisions_file()``: ``<state_dir>/precision.json``).
        cpu_info: reads the CPU (tests pass a fake).
        probe_size: side of the probe images, in input pixels.
        timing_size: where given, the rounds are timed on the photo-like probe at this side, not
            on the scored probes (the upscaler on CPU: ``upscale.CPU_TIMING_SIZE``); part of the
            cache key.
        rounds: timed rounds per candidate.
        timer: the clock the candidates are timed with (tests pass a fake).
        load: the 1-minute load average before a measurement (tests pass a fixed one): recorded;
            it decides only where ``cpu_share`` reads nothing of this process's own.
        wait_s: how long to wait for another process's measurement (``WAIT_FOR_MEASUREMENT_S``).
        cpu_share: reads how much CPU the measurement got (``CpuShareReader()``: this process's
            ``/proc`` and cgroup; tests pass one over files of their own); a disturbed
            measurement is cached as provisional (``MAX_BUSY_RUNS``).
        hardware: what the messages call the machine measured on: "CPU", or "GPU" where
            ``cpu_info`` reads a CUDA device (``gpu.read_gpu_info``).
    """

    def __init__(self, cache_path: Path, cpu_info: Callable[[], CpuInfo] = read_cpu_info, *,
                 probe_size: int = 64, timing_size: int | None = None, rounds: int = 3,
                 timer: Callable[[], float] = time.perf_counter,
                 load: Callable[[], float | None] | None = None, wait_s: float | None = None,
                 cpu_share: CpuShareReader | None = None, hardware: str = "CPU") -> None:
        self.cache_path = cache_path
        self.hardware = hardware
        self.cpu_info = cpu_info
        self.probe_size = probe_size
        self.timing_size = timing_size
        self.rounds = rounds
        self.timer = timer
        self.load = load if load is not None else load_average
        self.wait_s = WAIT_FOR_MEASUREMENT_S if wait_s is None else wait_s
        self.cpu_share = cpu_share if cpu_share is not None else CpuShareReader()
        self._cache = DecisionCache(cache_path)
        self._decided: dict[str, Decision] = {}
        #: keys decided unmeasured while this process's own measurement held the lock too long
        self._unmeasured: set[str] = set()
        self._lock = threading.Lock()
        self._swept = False

    def key(self, model: str, versions: str, floor: Floor | None = None) -> str:
        """The cache key of ``model`` on this machine under ``floor`` (``psnr_floor()``)."""
        timed = f" timed at {self.timing_size}px" if self.timing_size else ""
        return cache_key(self.cpu_info(), model, f"{versions} {rules(floor or psnr_floor())}{timed}")

    def decide(self, model: str, versions: str, run: RunFn, *, table: dict[str, frozenset[str]] | None = None,
               floor: Floor | None = None, probes: Callable[[], dict[str, np.ndarray]] | None = None,
               fallback: str | None = None) -> Decision:
        """The path for ``model`` on this CPU; ``run`` is called only when nothing is cached.

        Args:
            model: the model name (part of the cache key).
            versions: the runtimes' versions, ``torch 2.13.0`` (part of the cache key).
            run: runs one candidate on one probe image.
            table: candidate -> CPU flags any one of which it needs (``CPU_CANDIDATES``); its
                first entry is the reference.
            floor: the accuracy floor (``psnr_floor()``).
            probes: makes the probe images (``probe_images(probe_size)``).
            fallback: what runs, unmeasured, when another process held the measurement lock too
                long, where this machine has it (default: the reference). On a GPU, fp16: the
                reference, IEEE fp32, is its slowest path.
        """
        cpu = self.cpu_info()
        table = CPU_CANDIDATES if table is None else table
        only = only_path(cpu, table, self.hardware)
        if only is not None:
            return only
        candidates = candidates_for(cpu, table)
        key = self.key(model, versions, floor)
        unmeasured = fallback if fallback in candidates else candidates[0]
        decided = self._decided.get(key)
        if decided is not None and (key not in self._unmeasured or self._lock.locked()):
            return decided  # no wait behind a measurement of another model in this process
        if not self._lock.acquire(blocking=False):
            self._report_waiting("a measurement in this process")
            if not self._lock.acquire(timeout=self.wait_s):
                # a run in this process that never returned (a hang in native code) holds the lock:
                # this job and the later ones run unmeasured instead of queueing behind it
                decided = self._not_measured(unmeasured, candidates[0], "a measurement in this process has run")
                self._unmeasured.add(key)  # measured once the lock is free again (the stuck run returned)
                self._decided.setdefault(key, decided)
                return self._decided[key]
        try:
            if key not in self._decided or key in self._unmeasured:
                cached = self._first_read(key)
                if self._due(cached, cpu):
                    # a provisional decision runs at once rather than wait for another's measurement
                    on_wait: Callable[[], None] | None = None
                    wait_s = 0.0
                    if cached is None:
                        on_wait, wait_s = (lambda: self._report_waiting("another process")), self.wait_s
                    stop = stop_flag()  # set when this work's caller was cancelled (a job, the warm-up)
                    with self._cache.measuring(machine_key(cpu), wait_s, on_wait=on_wait,
                                               stopped=stop.is_set if stop is not None else None) as held:
                        _raise_if_stopped(stop, model)
                        # a process that waited there takes what the holder cached meanwhile
                        cached = self._cache.load(_parse).get(key)
                        if held and self._due(cached, cpu):
                            cached = self._measure(cpu, model, key, run, candidates, floor, probes, cached)
                        elif cached is None:
                            cached = self._not_measured(unmeasured, candidates[0],
                                                        "another process held this machine's measurement lock")
                assert cached is not None
                self._decided[key] = cached
                self._unmeasured.discard(key)  # also for a job that timed out waiting on this very run
            return self._decided[key]
        finally:
            self._lock.release()

    def _first_read(self, key: str) -> Decision | None:
        """The cached decision of ``key``; this chooser's first read also removes the measurement
        lock files a killed process left (``DecisionCache.sweep_stale``: none a live one holds)."""
        if not self._swept:
            self._swept = True
            self._cache.sweep_stale()
        return self._cache.load(_parse).get(key)

    def _due(self, cached: Decision | None, cpu: CpuInfo) -> bool:
        """Whether to measure: nothing cached, or a provisional decision (measured busy, fewer than
        ``MAX_BUSY_RUNS`` times) where the machine now looks quiet (an unreadable load: it may)."""
        if cached is None:
            return True
        if not 0 < cached.busy_runs < MAX_BUSY_RUNS:
            return False
        load = self.load()
        cpus = (cpu.cpus if self.hardware == "CPU" else 0) or usable_cpus()
        return load is None or load <= QUIET_LOAD_SHARE * cpus

    def _report_waiting(self, who: str) -> None:
        report(f"waiting for {who} measuring the fastest accurate path on this {self.hardware} (up to {self.wait_s:g} s)")

    def _not_measured(self, choice: str, reference: str, holder: str) -> Decision:
        """``choice`` unmeasured, because ``holder`` ("another process held ...") over ``wait_s``."""
        what = "the reference" if choice == reference else "the default here"
        log.warning("%s over %g s; running %s, %s, and measuring at the next start", holder, self.wait_s, choice, what)
        return Decision(choice, f"auto: {what}, not measured: {holder} over {self.wait_s:g} s; measured at the next start")

    def _measure(self, cpu: CpuInfo, model: str, key: str, run: RunFn, candidates: list[str], floor: Floor | None,
                 probes: Callable[[], dict[str, np.ndarray]] | None, previous: Decision | None = None) -> Decision:
        """Measure, note the CPU share it got and its cores in the decision, and cache it: as
        provisional where other work disturbed it (``previous``: the provisional one it replaces)."""
        # the CPU share is this process's, on the cores it may use (a GPU's ``cpus`` counts GPUs)
        cpus, load = (cpu.cpus if self.hardware == "CPU" else 0) or usable_cpus(), self.load()
        budget_s = precision_measure.MEASURE_BUDGET_S  # read when called, as ``measure`` reads it
        report(f"measuring the fastest accurate path on this {self.hardware} for {model} (first run on this machine,"
               f" up to {budget_s:g} s)")
        started = time.perf_counter()
        images = probes() if probes else probe_images(self.probe_size)
        timing = None
        if self.timing_size and not probes:
            timing = {"photo": probe_images(self.timing_size)["photo"]}
        before, stop = self.cpu_share.sample(), stop_flag()

        def stoppable(name: str, image: np.ndarray) -> np.ndarray:
            _raise_if_stopped(stop, model)  # between runs: a run itself cannot be interrupted
            return run(name, image)

        decision = measure(stoppable, candidates, images, rounds=self.rounds, timer=self.timer, floor=floor,
                           budget_s=budget_s, timing=timing)
        _raise_if_stopped(stop, model)  # a candidate dropped for the stop decided nothing: nothing is cached
        if timing is not None:
            side = self.timing_size
            decision = replace(decision, why=f"{decision.why}; timed on a {side}x{side} probe")
        share = self.cpu_share.between(before, self.cpu_share.sample(), cpus, load)
        busy = share.busy()
        busy_runs = (previous.busy_runs if previous is not None else 0) + 1 if busy else 0
        host = "" if self.hardware == "CPU" else "host "  # the share is the CPU's, also when a GPU ran
        decision = replace(decision, why=f"{decision.why}; {host}{share.describe()}" + _busy_said(busy, busy_runs),
                           conditions=share.conditions(), busy_runs=busy_runs)
        # the decision serves every job (cached): the server's record, not the measuring job's client's
        said_as_shared(log.info, "precision for %s on %s: %s, measured in %.1f s", model, cpu.model,
                                  decision.describe(), time.perf_counter() - started)
        entry = asdict(decision)
        if not busy_runs:  # a quiet decision's entry as before: a version without busy_runs reads it
            del entry["busy_runs"]
        self._cache.store(key, entry)
        return decision


def _raise_if_stopped(stop: threading.Event | None, model: str) -> None:
    """``WorkCancelled`` once the caller of this work was cancelled (``backend.run_stoppable``): a
    stopping worker's warm-up, a cancelled job. The measurement ends at the next run, its lock
    is released (and its file removed), and nothing is cached: the next start measures."""
    if stop is not None and stop.is_set():
        raise WorkCancelled(f"stopped while measuring the precision of {model}; measured at the next start")


def _busy_said(busy: str | None, busy_runs: int) -> str:
    """What the why-text adds for a measurement other work disturbed (``busy``: why)."""
    if not busy:
        return ""
    if busy_runs >= MAX_BUSY_RUNS:
        return f": busy ({busy}), as at {busy_runs} measurements in a row: cached, this machine's usual state"
    return (f": busy ({busy}), cached as provisional, measured again at a start when the machine looks quiet"
            f" ({busy_runs} of {MAX_BUSY_RUNS} busy measurements)")


def decisions_here(model: str, cpu: CpuInfo | None = None, path: Path | None = None) -> list[Decision]:
    """The decisions cached for ``model`` on this machine (``machine_key`` of ``cpu``, default
    this CPU) in ``path`` (``decisions_file()``), oldest first: one per runtime versions and rules
    it was measured under. Reads the file only; measures nothing."""
    prefix = f"{machine_key(cpu or read_cpu_info())} {model} "
    cached = DecisionCache(path or decisions_file()).load(_parse)
    return [decision for key, decision in cached.items() if key.startswith(prefix)]


def _parse(value: Any) -> Decision:
    decision = Decision(**value)
    if not isinstance(decision.precision, str) or not isinstance(decision.why, str):
        raise TypeError("precision and why must be strings")
    if type(decision.busy_runs) is not int:  # compared with MAX_BUSY_RUNS (``_due``): a string failed the job
        raise TypeError("busy_runs must be a count")
    return decision


def describe_pinned(precision: str, cpu: CpuInfo | None) -> str:
    """The trace text of a precision set in config (``cpu`` is None off the CPU)."""
    needs = CPU_CANDIDATES.get(precision, frozenset())
    if cpu is not None and needs and not needs & cpu.flags:
        return f"{precision} (pinned in config; this CPU lacks {'/'.join(named_flags(cpu, needs))}: emulated, slow)"
    return f"{precision} (pinned in config)"

