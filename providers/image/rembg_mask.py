"""One image through a U2-Net family mask network as rembg computes it, and the cutout made of it.

The same resize, normalisation, min-max scaling of the first output and Lanczos resize of the
mask as the ``rembg`` package (``rembg/sessions/u2netp.py``, ``dis_anime.py``, ``base.py``); the
network itself is whatever path ``rembg_paths`` chose (onnxruntime, ncnn or torch). The cutout
composites the image over transparency (or ``background_color``) through the mask, refined first
by a guided filter (``matting.refine_mask``) when ``alpha_matting`` asks. numpy and Pillow are
imported when called.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from core.errors import ProviderError
from providers.base import ImageConfig
from providers.image.imageio import encode
from providers.image.matting import refine_mask
from providers.image.rembg_paths import ONNX_ENGINE, MaskNet

if TYPE_CHECKING:
    from PIL import Image

#: zlib's run-length strategy: cutouts are long runs of transparent pixels
Z_RLE = 3
_MEAN = (0.485, 0.456, 0.406)


def predict_mask(net: MaskNet, img: Image.Image, extra: dict[str, Any]) -> Image.Image:
    """The model's mask for ``img`` (mode L, same size), as rembg computes it."""
    import numpy as np
    from PIL import Image

    size = int(extra.get("input_size", 320))
    std = extra.get("std", (0.229, 0.224, 0.225))
    small = np.asarray(
        img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64
    )
    small = small / max(float(small.max()), 1e-6)
    tensor = (small - np.array(_MEAN)) / np.array(std)
    pred = net(np.ascontiguousarray(tensor.transpose(2, 0, 1)[None], dtype=np.float32))
    low, high = float(pred.min()), float(pred.max())
    pred = (pred - low) / ((high - low) or 1.0)
    mask = Image.fromarray((np.squeeze(pred) * 255).astype("uint8"), mode="L")
    return mask.resize(img.size, Image.Resampling.LANCZOS)


def infer(net: MaskNet, rgb: Image.Image, extra: dict[str, Any], name: str, provider: str = ONNX_ENGINE) -> Image.Image:
    """``predict_mask``, its run errors translated to ``ProviderError`` of ``provider`` (the engine that ran)."""
    try:
        return predict_mask(net, rgb, extra)
    except Exception as exc:  # onnxruntime's and torch's untyped run errors, translated here once
        raise ProviderError(provider, f"inference failed: {type(exc).__name__}", model=name) from None


def cutout(img: Image.Image, mask: Image.Image, config: ImageConfig, alpha: Image.Image | None = None) -> Image.Image:
    """What a job asked for of ``img`` and its ``mask``: the mask itself (``only_mask``), or the
    cutout, over ``background_color`` where set; ``alpha_matting`` refines the mask first. Where
    the input had ``alpha``, the mask is never above it: a pixel the input hid stays hidden."""
    from PIL import Image, ImageChops

    if config.alpha_matting:
        mask = refine_mask(img, mask)
    if alpha is not None:
        mask = ImageChops.darker(mask, alpha)
    if config.only_mask:
        return mask
    result = Image.composite(img.convert("RGBA"), Image.new("RGBA", img.size, 0), mask)
    if config.background_color is not None:
        background = Image.new("RGBA", img.size, tuple(config.background_color))
        result = Image.alpha_composite(background, result)
    return result


def encode_cutout(img: Image.Image, output_format: str, png_compress_level: int) -> bytes:
    """``img`` as ``output_format``; PNG with zlib's run-length strategy (``Z_RLE``) at ``png_compress_level``."""
    if output_format != "png":
        return encode(img, output_format)
    buffer = io.BytesIO()
    img.save(buffer, "PNG", compress_level=png_compress_level, compress_type=Z_RLE)
    return buffer.getvalue()
