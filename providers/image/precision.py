"""Which precision the upscaler runs at on this CPU: measured once per machine and model, cached.

``precision: auto`` measures the candidates this CPU supports (torch fp32 always; torch bf16
autocast where ``/proc/cpuinfo`` lists ``avx512_bf16`` or ``amx_bf16``) on two small fixed
images, a photo-like one (a seeded dead-leaves image: the edges and spectrum of photos) and a
synthetic line-art one (flat fills, dark anti-aliased outlines: what the anime models see), and
picks the fastest whose output stays within the floor: PSNR >= ``PSNR_FLOOR_DB`` against the fp32
output on both images. A lower precision must also be ``MIN_SPEEDUP`` times faster than fp32,
so noise in the timing never trades accuracy for nothing.

The same machinery chooses background removal's path (``rembg_paths.py``): there the candidates
are onnxruntime fp32 (the reference) and torch fp32/bf16/fp16 on the same weights, and the floor
is a mask one (``Floor``: each metric with its bound and direction). The first candidate of a
set is the reference every other is scored and timed against.

Each candidate is measured on its own: one that raises (bf16 on a torch without bf16 kernels, an
ncnn extract error) is dropped and named in the why-text, and the others still decide; only the
reference failing is an error. A candidate slower than ``DROP_SLOWER_THAN`` x the reference in
the first timed round is dropped there (a bound on emulated or pathological paths). A whole
measurement has ``MEASURE_BUDGET_S``, checked before each run: once spent, the candidates not yet
timed are dropped, named in the why-text, and the rounds done decide. A run that never returns
(a hang in native code) cannot be bounded in-thread: only a subprocess could, and the models live
in this one. The speed-up is the median over rounds of the reference's time over the candidate's
in the same round: a round disturbed by another process moves one ratio, not the choice.

The decision is kept in ``precision.json`` in the state folder (``decisions_file``; the models
folder may be baked into an image, where a decision would be lost at every cold start), keyed by
architecture, CPU model and identification, usable cores, the flags that matter, model name,
runtime versions and the rules (floor, ``MIN_SPEEDUP``, ``MEASURE_REVISION``): the measurement runs
once per machine. Processes measuring at once on one machine would time each other's load: a
measurement holds a lock per machine (``DecisionCache.measuring``), and a process that waited for
it reads the cache again and takes the holder's decision (see ``AutoPrecision``). How much CPU the
measurement really got (``cpu_share.py``: its threads' run-queue wait, the container's throttling;
the load average only where neither can be read) and the core count are in the entry and the
why-text; a disturbed measurement is used by this process only and measured again at the next
start. The probe timings are no measure of an upscale's speed (per-call overhead dominates them on
64x64 probes): ``deadline.py`` uses real upscales' tiles. A job that measures (or waits for
another process's measurement) says so to its progress listener (``backend.report``). A corrupt
or unwritable cache is logged and measured again; it never fails an upscale.

Nothing here imports torch; numpy and Pillow are imported when images are made.
"""

from __future__ import annotations

import logging
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.redact import redact
from providers.image.backend import report
from providers.image.cpu import CpuInfo, named_flags, read_cpu_info, usable_cpus
from providers.image.cpu_share import CpuShareReader, load_average
from providers.image.precision_cache import DecisionCache
from providers.image.precision_probes import Floor, Metric, probe_images, psnr

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

#: the accuracy floor: PSNR of a candidate's output against fp32's, on every probe image
PSNR_FLOOR_DB = 45.0
#: how much faster than fp32 a lower precision must be to be chosen
MIN_SPEEDUP = 1.1
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
                            "asimd", "asimdhp", "bf16", "i8mm", "sve", "sve2"})
CACHE_FILE = "precision.json"


def decisions_file() -> Path:
    """Where decisions are kept: ``<state_dir>/precision.json`` (``SWARM_HOME``: on RunPod, a
    network volume keeps them across cold starts; the image's baked models folder would not)."""
    from core.paths import state_dir

    return state_dir() / CACHE_FILE

#: a candidate this many times slower than the reference in the first timed round is dropped there
DROP_SLOWER_THAN = 3.0
#: changes when how candidates are measured or chosen changes: part of the cache key
#: (2: median of paired per-round ratios, failures and slow candidates dropped, load recorded)
MEASURE_REVISION = "measure 2"
#: wall-clock seconds one measurement may take; spent, the candidates not yet timed are dropped
MEASURE_BUDGET_S = 120.0
#: how long a process waits for another's measurement on this machine before running the reference
WAIT_FOR_MEASUREMENT_S = 300.0

#: runs the model at a precision on one uint8 HxWx3 image, returning its uint8 output
RunFn = Callable[[str, "np.ndarray"], "np.ndarray"]


def psnr_floor() -> Floor:
    """The upscaler's floor: PSNR >= ``PSNR_FLOOR_DB`` (read when called) against fp32."""
    return Floor((Metric("psnr", "PSNR", " dB", PSNR_FLOOR_DB),), lambda ref, out: {"psnr": psnr(ref, out)})


def candidates_for(cpu: CpuInfo, table: dict[str, frozenset[str]] | None = None) -> list[str]:
    """The candidates of ``table`` (default ``CPU_CANDIDATES``) worth measuring on ``cpu``,
    the reference (the table's first) first."""
    table = CPU_CANDIDATES if table is None else table
    return [name for name, needs in table.items() if not needs or needs & cpu.flags]


@dataclass(frozen=True)
class Decision:
    """A chosen precision and why, with what was measured (empty when nothing was)."""

    precision: str
    why: str
    #: candidate -> {"seconds": median time over both images, "speedup": vs fp32 (median of the
    #: rounds' ratios), "psnr_<image>": dB (fp32, the reference, has no PSNR)}; a candidate that
    #: failed or was dropped has no row
    measured: dict[str, dict[str, float]] = field(default_factory=dict)
    #: where it was measured (``CpuShare.conditions``: "cpus", "load_1m", "cpu_wait_share", ...)
    conditions: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """``bf16 (auto: 3.9x fp32, PSNR 47.1 dB; load 0.40 on 2 CPUs)``: what the trace step shows."""
        return f"{self.precision} ({self.why})"


class Budget:
    """``seconds`` on ``clock`` from when it is made; ``spent()`` is checked before each run."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds, self.clock, self.started = seconds, clock, clock()

    def spent(self) -> bool:
        return self.clock() - self.started > self.seconds

    def why(self, name: str) -> str:
        return f"{name} not measured: the {self.seconds:g} s measuring budget ran out"


def measure(run: RunFn, candidates: list[str], images: dict[str, np.ndarray], *, rounds: int = 3,
            timer: Callable[[], float] = time.perf_counter, floor: Floor | None = None,
            budget_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> Decision:
    """Score and time each candidate on ``images`` and choose the fastest within ``floor``
    (default ``psnr_floor()``).

    Each candidate first runs once untimed, its output scored against the reference's
    (``candidates[0]``); then ``rounds`` interleaved timed rounds. A candidate that raises is
    dropped and named in the why-text; so is one ``DROP_SLOWER_THAN`` x slower than the reference
    in the first round. The reference raising is an error: it propagates. Once ``budget_s``
    (``MEASURE_BUDGET_S``) seconds on ``clock`` have passed, no run starts: a candidate without a
    score and a whole timed round is dropped, named, and the rounds done decide.
    """
    floor = floor or psnr_floor()
    budget = Budget(MEASURE_BUDGET_S if budget_s is None else budget_s, clock)
    reference, labels = candidates[0], list(images)
    expected = {label: run(reference, image) for label, image in images.items()}
    scores: dict[str, dict[str, float]] = {}
    dropped: dict[str, str] = {}  # candidate -> why it has no row
    for name in candidates[1:]:
        try:
            scores[name] = {}
            for label, image in images.items():
                if budget.spent():
                    dropped[name] = budget.why(name)
                    break
                values = floor.score(expected[label], run(name, image))
                scores[name].update({f"{metric}_{label}": round(value, 4) for metric, value in values.items()})
        except Exception as exc:  # a broken candidate is dropped; the others still decide
            dropped[name] = failure(name, exc)
    names = [n for n in candidates if n not in dropped]
    times = _timed_rounds(run, names, images, rounds, timer, dropped, budget)
    measured: dict[str, dict[str, float]] = {}
    for name, took in times.items():
        ratios = [ref / mine if mine > 0 else 1.0 for ref, mine in zip(times[reference], took, strict=False)]
        row = {"seconds": round(statistics.median(took), 4), "speedup": round(statistics.median(ratios), 2)}
        measured[name] = {**row, **scores.get(name, {})}
    return _choose(measured, labels, floor, reference, list(dropped.values()))


def _timed_rounds(run: RunFn, names: list[str], images: dict[str, np.ndarray], rounds: int,
                  timer: Callable[[], float], dropped: dict[str, str],
                  budget: Budget) -> dict[str, list[float]]:
    """Each name's seconds per round (all images), interleaved; ``names[0]`` is the reference.
    Drops into ``dropped`` a candidate that raises or is too slow after its first round; once
    ``budget`` is spent, stops, dropping each candidate without a whole round."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(max(1, rounds)):
        for name in [n for n in times if n not in dropped]:
            started = timer()
            try:
                for image in images.values():
                    if budget.spent():
                        return _cut(times, names[0], dropped, budget, rounds)
                    run(name, image)
            except Exception as exc:
                if name == names[0]:
                    raise
                dropped[name] = failure(name, exc)
                continue
            times[name].append(timer() - started)
            slower = times[name][0] / times[names[0]][0] if times[names[0]][0] > 0 else 1.0
            if round_number == 0 and name != names[0] and slower > DROP_SLOWER_THAN:
                dropped[name] = f"{name} dropped after one round: {slower:.1f}x slower than {names[0]}"
    return {name: took for name, took in times.items() if name not in dropped}


def _cut(times: dict[str, list[float]], reference: str, dropped: dict[str, str], budget: Budget,
         rounds: int) -> dict[str, list[float]]:
    """The rounds done when ``budget`` ran out: a candidate without a whole round is dropped."""
    for name, took in times.items():
        if not took and name != reference and name not in dropped:
            dropped[name] = budget.why(name)
    kept = {name: took for name, took in times.items() if took and name not in dropped}
    if len(kept) > 1:  # the reference and a candidate were timed, in fewer rounds than asked
        done = min(map(len, kept.values()))
        dropped["(rounds)"] = f"timed {done} of {rounds} rounds: the {budget.seconds:g} s budget ran out"
    return kept


_ADDRESS = re.compile(r"\s*\bat 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{8,}")


def failure(name: str, exc: BaseException) -> str:
    """``ncnn failed: RuntimeError: <first line>``: redacted, object addresses removed, bounded."""
    first = (str(exc).splitlines() or [""])[0]
    return f"{name} failed: {type(exc).__name__}: {redact(_ADDRESS.sub('', first))[:200]}".rstrip(": ")


def _choose(measured: dict[str, dict[str, float]], labels: list[str], floor: Floor, reference: str,
            dropped: list[str] | None = None) -> Decision:
    def worst(name: str, metric: Metric) -> float:
        return metric.worst([measured[name][f"{metric.name}_{label}"] for label in labels])

    chosen, notes = reference, list(dropped or [])
    for name, row in measured.items():
        if name == reference:
            continue
        missed = [m for m in floor.metrics if not m.passes(worst(name, m))]
        if missed:
            notes.append(f"{name} {row['speedup']}x but " + ", ".join(
                f"{m.text(worst(name, m))} {'<' if m.higher_is_better else '>'} {m.bound:g}" for m in missed))
        elif row["speedup"] < MIN_SPEEDUP:
            notes.append(f"{name} only {row['speedup']}x {reference}")
        elif row["speedup"] > measured[chosen]["speedup"]:
            chosen = name
    if chosen == reference:
        why = "auto: " + ("; ".join(notes) if notes else f"{reference} is the only candidate")
    else:
        scores = ", ".join(m.text(worst(chosen, m)) for m in floor.metrics)
        why = f"auto: {measured[chosen]['speedup']}x {reference}, {scores}" + "".join(f"; {n}" for n in dropped or [])
    return Decision(chosen, why, measured)


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


def rules(floor: Floor) -> str:
    """What a decision was chosen under, for the cache key: the floor's bounds, ``MIN_SPEEDUP``
    (both read when called) and ``MEASURE_REVISION``."""
    bounds = ",".join(f"{m.name}{'>=' if m.higher_is_better else '<='}{m.bound:g}" for m in floor.metrics)
    return f"floor {bounds} min {MIN_SPEEDUP:g}x {MEASURE_REVISION}"


class AutoPrecision:
    """``precision: auto`` on CPU: the cached decision, else a measurement that is then cached.

    A measurement holds this machine's measurement lock (``DecisionCache.measuring``). A process
    that finds it held (a second worker warming up, any model) waits, then reads the cache
    again and takes the decision the holder cached, measuring nothing. It waits at most
    ``wait_s``: a holder that long is most likely stuck in a run that never returns, so this
    process runs the reference (``fp32``: always within the floor), says so in the trace and
    caches nothing, and the next start measures. A holder that dies (even by SIGKILL) releases
    the lock at once.

    Args:
        cache_path: the JSON file of decisions (``decisions_file()``: ``<state_dir>/precision.json``).
        cpu_info: reads the CPU (tests pass a fake).
        probe_size: side of the probe images, in input pixels.
        rounds: timed rounds per candidate.
        timer: the clock the candidates are timed with (tests pass a fake).
        load: the 1-minute load average before a measurement (tests pass a fixed one): recorded;
            it decides only where ``cpu_share`` reads nothing of this process's own.
        wait_s: how long to wait for another process's measurement (``WAIT_FOR_MEASUREMENT_S``).
        cpu_share: reads how much CPU the measurement got (``CpuShareReader()``: this process's
            ``/proc`` and cgroup; tests pass one over files of their own); a disturbed
            measurement is not cached.
    """

    def __init__(self, cache_path: Path, cpu_info: Callable[[], CpuInfo] = read_cpu_info, *,
                 probe_size: int = 64, rounds: int = 3, timer: Callable[[], float] = time.perf_counter,
                 load: Callable[[], float | None] | None = None, wait_s: float | None = None,
                 cpu_share: CpuShareReader | None = None) -> None:
        self.cache_path = cache_path
        self.cpu_info = cpu_info
        self.probe_size = probe_size
        self.rounds = rounds
        self.timer = timer
        self.load = load if load is not None else load_average
        self.wait_s = WAIT_FOR_MEASUREMENT_S if wait_s is None else wait_s
        self.cpu_share = cpu_share if cpu_share is not None else CpuShareReader()
        self._cache = DecisionCache(cache_path)
        self._decided: dict[str, Decision] = {}
        self._lock = threading.Lock()

    def key(self, model: str, versions: str, floor: Floor | None = None) -> str:
        """The cache key of ``model`` on this machine under ``floor`` (``psnr_floor()``)."""
        return cache_key(self.cpu_info(), model, f"{versions} {rules(floor or psnr_floor())}")

    def decide(self, model: str, versions: str, run: RunFn, *, table: dict[str, frozenset[str]] | None = None,
               floor: Floor | None = None, probes: Callable[[], dict[str, np.ndarray]] | None = None) -> Decision:
        """The path for ``model`` on this CPU; ``run`` is called only when nothing is cached.

        Args:
            model: the model name (part of the cache key).
            versions: the runtimes' versions, ``torch 2.13.0`` (part of the cache key).
            run: runs one candidate on one probe image.
            table: candidate -> CPU flags any one of which it needs (``CPU_CANDIDATES``); its
                first entry is the reference.
            floor: the accuracy floor (``psnr_floor()``).
            probes: makes the probe images (``probe_images(probe_size)``).
        """
        cpu = self.cpu_info()
        table = CPU_CANDIDATES if table is None else table
        candidates = candidates_for(cpu, table)
        if len(candidates) == 1:
            wanted = named_flags(cpu, set().union(*table.values()))
            return Decision(candidates[0], f"auto: this CPU has none of {', '.join(wanted)}")
        key = self.key(model, versions, floor)
        with self._lock:
            if key not in self._decided:
                cached = self._cache.load(_parse).get(key)
                if cached is None:
                    with self._cache.measuring(machine_key(cpu), self.wait_s, on_wait=self._report_waiting) as held:
                        # a process that waited there takes what the holder cached meanwhile
                        cached = self._cache.load(_parse).get(key)
                        if cached is None and not held:
                            cached = self._not_measured(candidates[0])
                        if cached is None:
                            cached = self._measure(cpu, model, key, run, candidates, floor, probes)
                self._decided[key] = cached
            return self._decided[key]

    def _report_waiting(self) -> None:
        report(f"waiting for another process measuring the fastest accurate path on this CPU (up to {self.wait_s:g} s)")

    def _not_measured(self, reference: str) -> Decision:
        log.warning("another process has been measuring on this machine for over %g s; running %s, "
                    "the reference, and measuring at the next start", self.wait_s, reference)
        return Decision(reference, f"auto: the reference, not measured: another process held this machine's "
                                   f"measurement lock over {self.wait_s:g} s; measured at the next start")

    def _measure(self, cpu: CpuInfo, model: str, key: str, run: RunFn, candidates: list[str], floor: Floor | None,
                 probes: Callable[[], dict[str, np.ndarray]] | None) -> Decision:
        """Measure, note the CPU share it got and its cores in the decision, and cache it unless
        other work disturbed it."""
        cpus, load = cpu.cpus or usable_cpus(), self.load()
        report(f"measuring the fastest accurate path on this CPU for {model} (first run on this machine,"
               f" up to {MEASURE_BUDGET_S:g} s)")
        started = time.perf_counter()
        images = probes() if probes else probe_images(self.probe_size)
        before = self.cpu_share.sample()
        decision = measure(run, candidates, images, rounds=self.rounds, timer=self.timer, floor=floor)
        share = self.cpu_share.between(before, self.cpu_share.sample(), cpus, load)
        busy = share.busy()
        decision = replace(decision, why=f"{decision.why}; {share.describe()}" + (
            f": busy ({busy}), not cached, measured again at the next start" if busy else ""),
            conditions=share.conditions())
        log.info("precision for %s on %s: %s, measured in %.1f s", model, cpu.model,
                 decision.describe(), time.perf_counter() - started)
        if not busy:
            self._cache.store(key, asdict(decision))
        return decision


def _parse(value: Any) -> Decision:
    decision = Decision(**value)
    if not isinstance(decision.precision, str) or not isinstance(decision.why, str):
        raise TypeError("precision and why must be strings")
    return decision


def describe_pinned(precision: str, cpu: CpuInfo | None) -> str:
    """The trace text of a precision set in config (``cpu`` is None off the CPU)."""
    needs = CPU_CANDIDATES.get(precision, frozenset())
    if cpu is not None and needs and not needs & cpu.flags:
        return f"{precision} (pinned in config; this CPU lacks {'/'.join(named_flags(cpu, needs))}: emulated, slow)"
    return f"{precision} (pinned in config)"

