"""One measurement of ``precision: auto``: score and time each candidate against the reference
on the probe images, and choose the fastest within the floor (``measure`` -> ``Decision``).

The first candidate of a set is the reference every other is scored and timed against. The
upscaler's floor is PSNR >= ``PSNR_FLOOR_DB`` against the fp32 output on every probe image
(``psnr_floor``); background removal's is a mask one (``rembg_paths.mask_floor``). A lower
precision must also be ``MIN_SPEEDUP`` times faster than the reference, so noise in the timing
never trades accuracy for nothing.

Each candidate is measured on its own: one that raises (bf16 on a torch without bf16 kernels, an
ncnn extract error) is dropped and named in the why-text, and the others still decide; only the
reference failing is an error. A candidate slower than ``DROP_SLOWER_THAN`` x the reference in
the first timed round is dropped there (a bound on emulated or pathological paths). A whole
measurement has ``MEASURE_BUDGET_S``, checked before each run: once spent, the candidates not yet
timed are dropped, named in the why-text, and the rounds done decide. A run that never returns
(a hang in native code) cannot be bounded in-thread: only a subprocess could, and the models live
in this one; other jobs wait for it at most ``wait_s`` (``precision.AutoPrecision``). The
speed-up is the median over rounds of the reference's time over the candidate's in the same
round: a round disturbed by another process moves one ratio, not the choice.

These rules are part of every cached decision's key (``rules``): changing one measures again.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.redact import redact
from providers.image.precision_probes import Floor, Metric, psnr

if TYPE_CHECKING:
    import numpy as np

#: the accuracy floor: PSNR of a candidate's output against fp32's, on every probe image
PSNR_FLOOR_DB = 45.0
#: how much faster than fp32 a lower precision must be to be chosen
MIN_SPEEDUP = 1.1
#: a candidate this many times slower than the reference in the first timed round is dropped there
DROP_SLOWER_THAN = 3.0
#: changes when how candidates are measured or chosen changes: part of the cache key
#: (2: median of paired per-round ratios, failures and slow candidates dropped, load recorded;
#: 3: the rounds may be timed on a larger image than the one scored, ``AutoPrecision(timing_size=)``)
MEASURE_REVISION = "measure 3"
#: wall-clock seconds one measurement may take; spent, the candidates not yet timed are dropped
MEASURE_BUDGET_S = 120.0

#: runs the model at a precision on one uint8 HxWx3 image, returning its uint8 output
RunFn = Callable[[str, "np.ndarray"], "np.ndarray"]


def psnr_floor() -> Floor:
    """The upscaler's floor: PSNR >= ``PSNR_FLOOR_DB`` (read when called) against fp32."""
    return Floor((Metric("psnr", "PSNR", " dB", PSNR_FLOOR_DB),), lambda ref, out: {"psnr": psnr(ref, out)})


def rules(floor: Floor) -> str:
    """What a decision was chosen under, for the cache key: the floor's bounds, ``MIN_SPEEDUP``
    (both read when called) and ``MEASURE_REVISION``."""
    bounds = ",".join(f"{m.name}{'>=' if m.higher_is_better else '<='}{m.bound:g}" for m in floor.metrics)
    return f"floor {bounds} min {MIN_SPEEDUP:g}x {MEASURE_REVISION}"


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
    #: measurements in a row disturbed by other work behind it (0: a quiet one); one is measured
    #: again at a start that looks quiet, up to ``precision.MAX_BUSY_RUNS`` (``AutoPrecision``)
    busy_runs: int = 0

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
            budget_s: float | None = None, clock: Callable[[], float] = time.monotonic,
            timing: dict[str, np.ndarray] | None = None) -> Decision:
    """Score and time each candidate on ``images`` and choose the fastest within ``floor``
    (default ``psnr_floor()``).

    ``timing``: the images the rounds are timed on, where they differ from the scored ones (an
    image the size of a real tile: on small probes per-call overhead and caches hide the
    differences between candidates).

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
    times = _timed_rounds(run, names, images if timing is None else timing, rounds, timer, dropped, budget)
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
