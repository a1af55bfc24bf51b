"""Guided-filter matting for background removal's ``alpha_matting``: soft, image-aligned mask edges."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


def refine_mask(
    img: Image.Image, mask: Image.Image, radius: int | None = None, eps: float = 1e-3
) -> Image.Image:
    """Guided-filter matting: soft, image-aligned mask edges; solid regions stay solid."""
    import numpy as np
    from PIL import Image

    guide = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    prior = np.asarray(mask, dtype=np.float32) / 255.0
    radius = radius or max(2, min(img.size) // 64)
    mean_i, mean_p = _box(guide, radius), _box(prior, radius)
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    cov_ip = _box(guide * prior, radius) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    refined = np.clip(_box(a, radius) * guide + _box(b, radius), 0.0, 1.0)
    # only the band along the mask's edges changes; solid fore/background keep the model's value
    edge = (mean_p > 0.01) & (mean_p < 0.99)
    out = np.where(edge, refined, prior)
    return Image.fromarray((out * 255 + 0.5).astype(np.uint8), mode="L")


def _box(values: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window with edge replication, via 2-D cumulative sums."""
    import numpy as np

    width = 2 * radius + 1
    padded = np.pad(values, radius + 1, mode="edge").astype(np.float64)
    acc = padded.cumsum(0).cumsum(1)
    total = acc[width:, width:] - acc[:-width, width:] - acc[width:, :-width] + acc[:-width, :-width]
    return (total / (width * width)).astype(np.float32)[: values.shape[0], : values.shape[1]]
