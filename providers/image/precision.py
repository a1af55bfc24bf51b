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

The decision is kept in ``precision.json`` in the models folder, keyed by CPU model name, the
flags that matter, model name and runtime versions: the measurement runs once per machine. A
corrupt or unwritable cache is logged and measured again; it never fails an upscale.

Nothing here imports torch; numpy and Pillow are imported when images are made.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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
    "bf16": frozenset({"avx512_bf16", "amx_bf16"}),
}
#: the flags that change which path is fastest: part of the cache key
RELEVANT_FLAGS = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16"})
CACHE_FILE = "precision.json"

#: runs the model at a precision on one uint8 HxWx3 image, returning its uint8 output
RunFn = Callable[[str, "np.ndarray"], "np.ndarray"]


@dataclass(frozen=True)
class Metric:
    """One accuracy metric of a floor: its bound, and whether higher or lower is better."""

    name: str  # the key in ``Decision.measured`` rows: ``<name>_<probe image>``
    label: str  # how the why-text names it: ``PSNR``
    unit: str  # `` dB``
    bound: float
    higher_is_better: bool = True

    def worst(self, values: list[float]) -> float:
        return min(values) if self.higher_is_better else max(values)

    def passes(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound

    def text(self, value: float) -> str:
        return f"{self.label} {value:.{1 if abs(value) >= 10 else 3}f}{self.unit}"


@dataclass(frozen=True)
class Floor:
    """An accuracy floor: ``score(reference, output)`` gives each metric's value on one image;
    a candidate passes when every metric's worst value over the probe images is within bound."""

    metrics: tuple[Metric, ...]
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]]


def psnr_floor() -> Floor:
    """The upscaler's floor: PSNR >= ``PSNR_FLOOR_DB`` (read when called) against fp32."""
    return Floor((Metric("psnr", "PSNR", " dB", PSNR_FLOOR_DB),), lambda ref, out: {"psnr": psnr(ref, out)})


@dataclass(frozen=True)
class CpuInfo:
    """What the precision choice needs to know about a CPU."""

    model: str
    flags: frozenset[str]


def read_cpu_info(path: str = "/proc/cpuinfo") -> CpuInfo:
    """Model name and flags of the first CPU in ``path`` (empty where the file is absent)."""
    model, flags = "unknown", frozenset[str]()
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo(model, flags)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags)


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
    #: candidate -> {"seconds": best time over both images, "speedup": vs fp32, "psnr_<image>": dB
    #: (fp32, the reference, has no PSNR)}
    measured: dict[str, dict[str, float]] = field(default_factory=dict)

    def describe(self) -> str:
        """``bf16 (auto: 3.9x fp32, PSNR 47.1 dB)``: what the trace step shows."""
        return f"{self.precision} ({self.why})"


def psnr(reference: np.ndarray, output: np.ndarray) -> float:
    """Peak signal-to-noise ratio of ``output`` against ``reference`` (uint8), in dB."""
    import numpy as np

    mse = float(np.mean((reference.astype(np.float64) - output.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def probe_images(size: int = 64) -> dict[str, np.ndarray]:
    """The two fixed ``size`` x ``size`` RGB inputs: ``photo`` and ``line_art``."""
    return {"photo": _photo_like(size), "line_art": _line_art(size)}


def _photo_like(size: int) -> np.ndarray:
    """A dead-leaves image (ISO 19567-2's texture model): seeded overlapping discs with power-law
    radii, which has the edges, flat regions and 1/f spectrum of photos. On anime-6B its bf16
    PSNR is within 1 dB of the test photo's (random-phase 1/f noise scores 9 dB lower than any
    real photo: a texture no photo has)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(7)
    big = size * 4
    canvas = Image.new("RGB", (big, big), (128, 128, 128))
    draw = ImageDraw.Draw(canvas)
    for _ in range(400):
        radius = big * 0.02 / np.sqrt(rng.uniform(0.0016, 1.0))
        x, y = rng.uniform(-0.1, 1.1, 2) * big
        grey = rng.uniform(0.15, 0.85)
        colour = np.clip(grey + rng.normal(0, 0.08, 3), 0, 1)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=tuple(int(v * 255) for v in colour))
    return np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def _line_art(size: int) -> np.ndarray:
    import numpy as np
    from PIL import Image, ImageDraw

    big = size * 4  # drawn large, then reduced: anti-aliased edges as in real line art
    canvas = Image.new("RGB", (big, big), (250, 248, 245))
    draw = ImageDraw.Draw(canvas)

    def box(*fractions: float) -> list[float]:
        return [f * big for f in fractions]

    line, width = (30, 25, 35), max(2, big // 48)
    draw.ellipse(box(0.22, 0.18, 0.78, 0.82), fill=(255, 224, 200), outline=line, width=width)
    draw.polygon(box(0.15, 0.45, 0.3, 0.08, 0.7, 0.05, 0.88, 0.42, 0.62, 0.3, 0.4, 0.32), fill=(92, 60, 150),
                 outline=line, width=width)
    for x in (0.36, 0.58):
        draw.ellipse(box(x, 0.46, x + 0.1, 0.6), fill=(40, 120, 200), outline=line, width=width)
        draw.ellipse(box(x + 0.03, 0.48, x + 0.06, 0.52), fill=(255, 255, 255))
    draw.arc(box(0.4, 0.55, 0.62, 0.72), 20, 160, fill=line, width=width)
    for k in range(5):  # hatching: thin parallel strokes, the hardest case for a smooth model
        offset = 0.05 * k
        draw.line(box(0.05 + offset, 0.95, 0.2 + offset, 0.7), fill=line, width=max(1, width // 2))
    return np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def measure(run: RunFn, candidates: list[str], images: dict[str, np.ndarray], *, rounds: int = 3,
            timer: Callable[[], float] = time.perf_counter, floor: Floor | None = None) -> Decision:
    """Time each candidate on ``images`` (best of ``rounds``, interleaved, after one untimed run
    whose output is compared with the reference's, ``candidates[0]``) and choose the fastest
    within ``floor`` (default ``psnr_floor()``)."""
    floor = floor or psnr_floor()
    outputs = {name: {label: run(name, image) for label, image in images.items()} for name in candidates}
    best = dict.fromkeys(candidates, math.inf)
    for _ in range(rounds):
        for name in candidates:
            started = timer()
            for image in images.values():
                run(name, image)
            best[name] = min(best[name], timer() - started)
    reference = candidates[0]
    measured: dict[str, dict[str, float]] = {}
    for name in candidates:
        speedup = best[reference] / best[name] if best[name] > 0 else 1.0
        row = {"seconds": round(best[name], 4), "speedup": round(speedup, 2)}
        if name != reference:  # its score against itself is perfect (PSNR infinite, not JSON)
            for label in images:
                scores = floor.score(outputs[reference][label], outputs[name][label])
                row.update({f"{metric}_{label}": round(value, 4) for metric, value in scores.items()})
        measured[name] = row
    return _choose(measured, list(images), floor, reference)


def _choose(measured: dict[str, dict[str, float]], labels: list[str], floor: Floor, reference: str) -> Decision:
    def worst(name: str, metric: Metric) -> float:
        return metric.worst([measured[name][f"{metric.name}_{label}"] for label in labels])

    chosen, notes = reference, []
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
        why = f"auto: {measured[chosen]['speedup']}x {reference}, {scores}"
    return Decision(chosen, why, measured)


def cache_key(cpu: CpuInfo, model: str, versions: str) -> str:
    """One machine and model: CPU model name, the flags that matter, model, runtime versions
    (``torch 2.13.0``)."""
    flags = ",".join(sorted(cpu.flags & RELEVANT_FLAGS))
    return f"{cpu.model} [{flags}] {model} {versions}"


class AutoPrecision:
    """``precision: auto`` on CPU: the cached decision, else a measurement that is then cached.

    Args:
        cache_path: the JSON file of decisions (``<models_dir>/precision.json``).
        cpu_info: reads the CPU (tests pass a fake).
        probe_size: side of the probe images, in input pixels.
        rounds: timed rounds per candidate.
        timer: the clock the candidates are timed with (tests pass a fake).
    """

    def __init__(self, cache_path: Path, cpu_info: Callable[[], CpuInfo] = read_cpu_info, *,
                 probe_size: int = 64, rounds: int = 3, timer: Callable[[], float] = time.perf_counter) -> None:
        self.cache_path = cache_path
        self.cpu_info = cpu_info
        self.probe_size = probe_size
        self.rounds = rounds
        self.timer = timer
        self._decided: dict[str, Decision] = {}
        self._lock = threading.Lock()

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
            wanted = sorted(set().union(*table.values()))
            return Decision(candidates[0], f"auto: this CPU has none of {', '.join(wanted)}")
        key = cache_key(cpu, model, versions)
        with self._lock:
            if key not in self._decided:
                cached = self._load().get(key)
                if cached is None:
                    started = time.perf_counter()
                    images = probes() if probes else probe_images(self.probe_size)
                    cached = measure(run, candidates, images, rounds=self.rounds, timer=self.timer, floor=floor)
                    log.info("precision for %s on %s: %s, measured in %.1f s", model, cpu.model,
                             cached.describe(), time.perf_counter() - started)
                    self._store(key, cached)
                self._decided[key] = cached
            return self._decided[key]

    def _load(self) -> dict[str, Decision]:
        try:
            raw = json.loads(self.cache_path.read_text(encoding="utf-8"))
            return {key: Decision(**value) for key, value in raw.get("decisions", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable precision cache %s (%s: %s); measuring again",
                        self.cache_path, type(exc).__name__, exc)
            return {}

    def _store(self, key: str, decision: Decision) -> None:
        decisions = {name: asdict(value) for name, value in self._load().items()}
        decisions[key] = asdict(decision)
        text = json.dumps({"decisions": decisions}, indent=2, sort_keys=True)
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_path.parent, prefix=".precision-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.cache_path)  # a reader never sees half a file
        except OSError as exc:
            log.warning("could not write the precision cache %s (%s); this process keeps the decision",
                        self.cache_path, exc)


def describe_pinned(precision: str, cpu: CpuInfo | None) -> str:
    """The trace text of a precision set in config (``cpu`` is None off the CPU)."""
    needs = CPU_CANDIDATES.get(precision, frozenset())
    if cpu is not None and needs and not needs & cpu.flags:
        return f"{precision} (pinned in config; this CPU lacks {'/'.join(sorted(needs))}: emulated, slow)"
    return f"{precision} (pinned in config)"

