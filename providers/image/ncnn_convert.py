"""Convert Real-ESRGAN ncnn ``.param``/``.bin`` pairs into state dicts for ``archs``.

The ``.param`` file lists layers in graph order; the ``.bin`` file holds, for every
``Convolution`` in that order, a 4-byte storage tag (0 = float32, 0x01306B47 = float16, padded
to 4 bytes), the weights in (out, in, k, k) order, then the biases as plain float32; a ``PReLU``
holds its slopes as plain float32. Other layer types carry no weights. The parse must consume
the ``.bin`` exactly: a byte left over or missing means the layout was misread, and the
conversion refuses to produce a file.

numpy only (no torch), so ``swarm models pull`` runs without torch installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

FP32_TAG = 0
FP16_TAG = 0x01306B47
_NO_WEIGHTS = {"Input", "Split", "Concat", "BinaryOp", "Interp", "PixelShuffle", "Eltwise", "ReLU", "Crop"}


class ConversionError(ValueError):
    """The ncnn files do not have the layout this converter expects."""


@dataclass(frozen=True)
class NcnnLayer:
    """One weighted layer of a ``.param`` file."""

    kind: str  # "Convolution" | "PReLU"
    name: str
    params: dict[int, str]


def parse_param(text: str) -> list[NcnnLayer]:
    """The weighted layers (Convolution, PReLU) of a ``.param`` text, in file order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ConversionError("not an ncnn .param file (magic 7767517 missing)")
    layers = []
    for fields in lines[2:]:
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        params: dict[int, str] = {}
        for item in fields[4 + n_in + n_out :]:
            key, _, value = item.partition("=")
            params[int(key)] = value
        if kind in ("Convolution", "PReLU"):
            layers.append(NcnnLayer(kind, name, params))
        elif kind not in _NO_WEIGHTS:
            raise ConversionError(f"layer type {kind!r} ({name}) is not supported by this converter")
    return layers


def read_weights(param_text: str, bin_data: bytes) -> list[tuple[NcnnLayer, list[np.ndarray]]]:
    """Each weighted layer with its arrays (conv: weight (o,i,k,k) and bias; PReLU: slopes)."""
    import numpy as np

    offset = 0

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal offset
        size = count * np.dtype(dtype).itemsize
        if offset + size > len(bin_data):
            raise ConversionError(f".bin ends early at byte {offset} (needed {size} more)")
        array = np.frombuffer(bin_data, dtype=dtype, count=count, offset=offset)
        offset += size
        return array

    result = []
    for layer in parse_param(param_text):
        if layer.kind == "Convolution":
            out_ch, kernel = int(layer.params[0]), int(layer.params.get(1, "1"))
            count = int(layer.params[6])
            tag = int(take(1, "<u4")[0])
            if tag == FP16_TAG:
                weight = take(count, "<f2").astype(np.float32)
                offset += (-count * 2) % 4
            elif tag == FP32_TAG:
                weight = take(count, "<f4").astype(np.float32)
            else:
                raise ConversionError(f"{layer.name}: unknown weight tag {tag:#x} at byte {offset - 4}")
            in_ch = count // (out_ch * kernel * kernel)
            if in_ch * out_ch * kernel * kernel != count:
                raise ConversionError(
                    f"{layer.name}: {count} weights do not fit {out_ch}x?x{kernel}x{kernel}"
                )
            arrays = [weight.reshape(out_ch, in_ch, kernel, kernel)]
            if layer.params.get(5, "0") == "1":
                arrays.append(take(out_ch, "<f4").astype(np.float32))
        else:
            arrays = [take(int(layer.params.get(0, "1")), "<f4").astype(np.float32)]
        result.append((layer, arrays))
    if offset != len(bin_data):
        raise ConversionError(f".bin has {len(bin_data) - offset} bytes left over after the last layer")
    return result


def rrdbnet_names(num_block: int) -> list[str]:
    """Conv module names of RRDBNet in ncnn order."""
    names = ["conv_first"]
    for block in range(num_block):
        for rdb in (1, 2, 3):
            names += [f"body.{block}.rdb{rdb}.conv{c}" for c in range(1, 6)]
    return names + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def srvgg_names(num_conv: int) -> list[str]:
    """Module names of SRVGGNetCompact's ``body`` (conv, prelu, conv, prelu, ..., conv)."""
    return [f"body.{i}" for i in range(2 * num_conv + 3)]


def convert(
    param_path: str | Path, bin_path: str | Path
) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """Convert one model: ``(arch, state_dict, metadata)``.

    The architecture is recognised from the layer list: alternating Convolution/PReLU is
    SRVGGNetCompact, Convolution-only with 15 convs per block is RRDBNet.
    """
    param_text = Path(param_path).read_text(encoding="utf-8")
    layers = read_weights(param_text, Path(bin_path).read_bytes())
    kinds = [layer.kind for layer, _ in layers]
    state: dict[str, np.ndarray] = {}
    if "PReLU" in kinds:
        num_conv = kinds.count("Convolution") - 2
        names = srvgg_names(num_conv)
        arch = "srvgg"
        meta = {"num_conv": str(num_conv), "num_feat": str(layers[0][1][0].shape[0])}
    else:
        num_block, rest = divmod(len(kinds) - 6, 15)
        if rest:
            raise ConversionError(f"{len(kinds)} convolutions do not make an RRDBNet (1 + 15*n + 5)")
        names = rrdbnet_names(num_block)
        arch = "rrdbnet"
        meta = {"num_block": str(num_block), "num_feat": str(layers[0][1][0].shape[0])}
    if len(names) != len(layers):
        raise ConversionError(f"{len(layers)} weighted layers, expected {len(names)} for {arch}")
    for name, (layer, arrays) in zip(names, layers, strict=True):
        if layer.kind == "PReLU":
            state[f"{name}.weight"] = arrays[0]
        else:
            state[f"{name}.weight"] = arrays[0]
            if len(arrays) > 1:
                state[f"{name}.bias"] = arrays[1]
    meta["arch"] = arch
    return arch, state, meta


def write_safetensors(state: dict[str, np.ndarray], out_path: str | Path, metadata: dict[str, str]) -> None:
    """Write float32 tensors as ``.safetensors`` byte-for-byte reproducibly.

    The ``safetensors`` writer orders its JSON header by hash map, so two runs give different
    bytes; this writer sorts keys, so the produced file has one sha256 the store can check.
    """
    import json

    import numpy as np

    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for key in sorted(state):
        data = np.ascontiguousarray(state[key], dtype="<f4").tobytes()
        header[key] = {
            "dtype": "F32",
            "shape": list(state[key].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    with open(out_path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little"))
        handle.write(text)
        for data in blobs:
            handle.write(data)


def convert_to_safetensors(
    param_path: str | Path, bin_path: str | Path, out_path: str | Path
) -> dict[str, str]:
    """Convert and write a ``.safetensors`` file; returns its metadata."""
    _, state, meta = convert(param_path, bin_path)
    write_safetensors(state, out_path, meta)
    return meta


def parameter_count(state: dict[str, np.ndarray]) -> int:
    """Total number of parameters in a state dict."""
    return int(sum(v.size for v in state.values()))
