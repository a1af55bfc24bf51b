"""The probe images ``precision: auto`` measures the upscaler's candidates on, a photo-like one and
a line-art one, fixed (seeded), made with numpy and Pillow when called; and how a candidate's
output on them is scored against the reference's (``Floor``, ``Metric``, ``psnr``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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
