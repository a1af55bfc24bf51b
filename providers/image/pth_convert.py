"""Real-ESRGAN ``.pth`` releases -> the safetensors layout the model store keeps.

The upstream files are pickles holding ``{"params_ema": state_dict}`` (or ``"params"``). They are
read with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers, checked tensor by tensor against the architecture the entry names (names, shapes),
and written by the same byte-reproducible writer as the ncnn conversion.
"""

from __future__ import annotations

from pathlib import Path


class PthConversionError(ValueError):
    """The file is not the network the entry says it is."""


def pth_to_safetensors(pth_path: str | Path, out_path: str | Path, meta: dict[str, str]) -> dict[str, str]:
    """Convert one release file; returns the metadata written. Raises PthConversionError."""
    import pickle

    import torch

    from providers.image import archs
    from providers.image.ncnn_convert import write_safetensors

    try:
        blob = torch.load(str(pth_path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise PthConversionError(f"not a loadable PyTorch weights file: {str(exc)[:200]}") from None
    if isinstance(blob, dict):
        blob = blob.get("params_ema", blob.get("params", blob))
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise PthConversionError("expected a state dict of tensors (params_ema / params)")
    expected = archs.build(meta["arch"], meta).state_dict()
    missing = sorted(set(expected) - set(blob))
    extra = sorted(set(blob) - set(expected))
    if missing or extra:
        raise PthConversionError(
            f"tensor names do not match {meta['arch']} {meta}: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for key, tensor in expected.items():
        if tuple(blob[key].shape) != tuple(tensor.shape):
            raise PthConversionError(f"{key}: shape {tuple(blob[key].shape)}, expected {tuple(tensor.shape)}")
    state = {key: blob[key].detach().to(torch.float32).numpy() for key in expected}
    written = dict(meta)
    write_safetensors(state, out_path, written)
    return written
