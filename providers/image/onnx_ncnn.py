"""Run a U2-Net family ONNX graph on ncnn: background removal's ``ncnn`` and ``ncnn-bf16`` paths.

Why: on an AVX2-only AMD EPYC (Zen 3) ncnn runs u2netp at 320x320 in 286-341 ms a
single-threaded forward where onnxruntime takes 523-532 ms, with the same output (fp32, mean
alpha difference 0.000 levels); keeping activations as bf16 between layers (``use_bf16_storage``,
arithmetic still fp32) takes 270-301 ms. rembg's weights are ONNX only, and converting them
with ncnn's own tool (pnnx) would add a dependency and a step, so the graph is written here:
``OnnxTorchNet`` (``onnx_torch.py``) already folds everything that does not depend on pixel
values at the model's input size, and its plan of tensor ops (Conv, Relu, MaxPool, Resize,
Concat, Add, Sigmoid) maps one to one onto ncnn layers (a Relu that is its Conv's only reader is
fused into it). An op or attribute outside that set raises ``UnsupportedGraph``.

bf16 storage keeps ``OnnxTorchNet.fp32_nodes`` in fp32 (each such layer gets ncnn's per-layer
feature mask ``31=4``, no bf16 storage). ncnn does not convert a bf16 input for a masked layer
(``get_masked_option`` turns bf16 off, and ``convert_layout`` then converts nothing), so a masked
layer that reads a value made by an unmasked one reads it through a ``Cast`` layer, which has no
bf16 storage and so is given fp32 by ncnn; a ``Split`` of a masked layer's output is masked too.
Without that, a masked layer reads bf16 bytes as fp32 (garbage, or a crash in ncnn's allocator).

Writing a network needs the folded graph, so torch (about 2 s to import); a process that finds
the network already written (``network_files``: ``<models_dir>/ncnn/``, keyed by the ONNX file's
sha256, the input size, fp32 or bf16, and ``WRITER_REVISION``) loads it without torch: the first
image of a new process took 2.6 s with the network written afresh against 0.8 s on onnxruntime.

Importing this module imports neither ncnn, numpy nor torch.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from providers.image.onnx_torch import UnsupportedGraph

if TYPE_CHECKING:
    import numpy as np

    from providers.image.onnx_torch import Node, OnnxTorchNet

#: ncnn's per-layer feature mask bit for "no bf16 storage" (``31=`` in a ``.param`` line)
NO_BF16 = 1 << 2
#: the blob names of every network written here: the graph's input and its (one) output
INPUT_BLOB, OUTPUT_BLOB = "input", "output"
#: changes when what is written changes (this writer, or ``onnx_torch.u2net_fp32_nodes``), so a
#: network cached by an older one is written again
WRITER_REVISION = 1


@dataclass(frozen=True)
class NcnnModel:
    """An ncnn network: ``.param`` text and ``.bin`` bytes (blobs ``INPUT_BLOB``, ``OUTPUT_BLOB``)."""

    param: str
    weights: bytes


class _Writer:
    """Builds the layer lines of one network from an ``OnnxTorchNet`` plan."""

    def __init__(self, net: OnnxTorchNet, fp32_nodes: Collection[int]) -> None:
        self.net, self.fp32 = net, frozenset(fp32_nodes)
        self.lines: list[str] = []
        self.weights = bytearray()
        self.blobs: dict[str, str] = {net.input: INPUT_BLOB, net.outputs[0]: OUTPUT_BLOB}
        self.made_by: dict[str, int] = {}  # value -> plan index of the layer that makes it (-1: the input)
        self.readers: dict[str, int] = {}
        for node in net.plan:
            for name in node.inputs:
                if name and name not in net.static:
                    self.readers[name] = self.readers.get(name, 0) + 1
        for name in net.outputs:
            self.readers[name] = self.readers.get(name, 0) + 1
        self.copies: dict[str, list[str]] = {}

    def blob(self, value: str) -> str:
        return self.blobs.setdefault(value, f"b{len(self.blobs)}")

    def masked(self, index: int) -> str:
        return f" 31={NO_BF16}" if index in self.fp32 else ""

    def made(self, value: str, index: int) -> None:
        """``value`` was made by plan node ``index``; a Split gives each of its readers a copy."""
        self.made_by[value] = index
        count = self.readers.get(value, 0)
        if count > 1:
            copies = [f"{self.blob(value)}_{k}" for k in range(count)]
            self.lines.append(f"Split split_{self.blob(value)} 1 {count} {self.blob(value)} {' '.join(copies)}"
                              f"{self.masked(index)}")
            self.copies[value] = copies

    def read(self, value: str, index: int) -> str:
        """The blob node ``index`` reads ``value`` from, through a Cast where it is masked and the maker is not."""
        copies = self.copies.get(value)
        name = copies.pop() if copies else self.blob(value)
        if index in self.fp32 and self.made_by[value] not in self.fp32:
            self.lines.append(f"Cast cast_{name} 1 1 {name} {name}_f 0=1 1=1")
            return f"{name}_f"
        return name

    def layer(self, kind: str, index: int, inputs: list[str], output: str, params: str) -> None:
        sources = [self.read(value, index) for value in inputs]
        self.lines.append(f"{kind} n{index} {len(sources)} 1 {' '.join(sources)} {self.blob(output)} {params}"
                          f"{self.masked(index)}".rstrip())
        self.made(output, index)


def ncnn_model(net: OnnxTorchNet, fp32_nodes: Collection[int] = ()) -> NcnnModel:
    """``net``'s plan (shapes fixed at its input size, batch 1) as an ncnn network; the nodes of
    ``fp32_nodes`` (indices into ``net.plan``) keep fp32 storage when the net runs with bf16."""
    if len(net.outputs) != 1:
        raise UnsupportedGraph("an ncnn network is written for one output")
    out = _Writer(net, fp32_nodes)
    channels, height, width = net.shapes[net.input][1:]
    out.lines.append(f"Input input 0 1 {out.blob(net.input)} 0={width} 1={height} 2={channels}")
    out.made(net.input, -1)
    fused: set[int] = set()
    for index, node in enumerate(net.plan):
        if index in fused:
            continue
        values = [name for name in node.inputs if name and name not in net.static]
        if node.op == "Conv":
            kind, result, params = _convolution(net, out, index, fused)
        elif node.op in _SIMPLE:
            if node.op == "Add" and len(values) != 2:
                raise UnsupportedGraph("Add of a constant")
            (kind, params), result = _SIMPLE[node.op], node.outputs[0]
        else:
            kind, result, params = _shaped(net, node, index)
        out.layer(kind, index, values[:1] if node.op == "Resize" else values, result, params)
    param = f"7767517\n{len(out.lines)} {_count_blobs(out.lines)}\n" + "\n".join(out.lines) + "\n"
    return NcnnModel(param, bytes(out.weights))


#: ops that map onto an ncnn layer with fixed parameters
_SIMPLE = {"Relu": ("ReLU", ""), "Sigmoid": ("Sigmoid", ""), "Add": ("BinaryOp", "0=0")}


def _convolution(net: OnnxTorchNet, out: _Writer, index: int, fused: set[int]) -> tuple[str, str, str]:
    """A Conv (and the Relu after it, where that is its only reader): weights appended to ``out``."""
    import numpy as np

    node, attrs = net.plan[index], net.plan[index].attrs
    weight = net.static[node.inputs[1]].numpy().astype(np.float32)
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    if attrs.get("group", 1) != 1:
        raise UnsupportedGraph("grouped Conv")
    count_out, _, kernel_h, kernel_w = weight.shape
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    stride_h, stride_w = attrs.get("strides", [1, 1])
    dilation_h, dilation_w = attrs.get("dilations", [1, 1])
    result, activation = node.outputs[0], ""
    relu = _only_relu_reader(net, index, result)
    if relu is not None and (relu in out.fp32) == (index in out.fp32):
        fused.add(relu)
        result, activation = net.plan[relu].outputs[0], " 9=1"
    out.weights += struct.pack("<I", 0) + weight.tobytes()  # tag 0: fp32 weights follow
    if has_bias:
        out.weights += net.static[node.inputs[2]].numpy().astype(np.float32).tobytes()
    return "Convolution", result, (
        f"0={count_out} 1={kernel_w} 11={kernel_h} 2={dilation_w} 12={dilation_h} 3={stride_w} 13={stride_h} "
        f"4={left} 14={top} 15={right} 16={bottom} 5={int(has_bias)} 6={weight.size}{activation}")


def _shaped(net: OnnxTorchNet, node: Node, index: int) -> tuple[str, str, str]:
    """MaxPool, Resize (to its folded output size) and Concat (channels only)."""
    attrs, result = node.attrs, node.outputs[0]
    if node.op == "MaxPool":
        kernel_h, kernel_w = attrs["kernel_shape"]
        stride_h, stride_w = attrs.get("strides", attrs["kernel_shape"])
        top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
        mode = 0 if attrs.get("ceil_mode") else 1  # ncnn: 0 full (ceil), 1 valid (floor)
        return "Pooling", result, (f"0=0 1={kernel_w} 11={kernel_h} 2={stride_w} 12={stride_h} 3={left} 13={top} "
                                   f"14={right} 15={bottom} 5={mode}")
    if node.op == "Resize":  # OnnxTorchNet takes only linear/pytorch_half_pixel: bilinear, no align_corner
        size_h, size_w = net.shapes[result][2:]
        return "Interp", result, f"0=2 3={size_h} 4={size_w} 6=0"
    if node.op == "Concat":
        if attrs["axis"] != 1:
            raise UnsupportedGraph(f"Concat on axis {attrs['axis']}")
        return "Concat", result, "0=0"
    raise UnsupportedGraph(f"op {node.op} (node {index}) on ncnn")


def _only_relu_reader(net: OnnxTorchNet, index: int, value: str) -> int | None:
    """The plan index of a Relu that is the only reader of ``value`` (not a graph output), or None."""
    if value in net.outputs:
        return None
    readers = [i for i, node in enumerate(net.plan) if value in node.inputs]
    if len(readers) == 1 and net.plan[readers[0]].op == "Relu" and readers[0] > index:
        return readers[0]
    return None


def _count_blobs(lines: list[str]) -> int:
    names: set[str] = set()
    for line in lines:
        tokens = line.split()
        count_in, count_out = int(tokens[2]), int(tokens[3])
        names.update(tokens[4:4 + count_in + count_out])
    return len(names)


class NcnnMaskNet:
    """One loaded ncnn network with ``threads`` threads, fp32 or bf16 storage; called with a float32
    NCHW batch, it returns the output's first channel per image, (N, H, W) float32, as
    ``rembg_paths.MaskNet``. Callers may share it across threads: each call has its own extractor
    (ncnn's networks are read-only once loaded), and ncnn does not hold the GIL while it runs."""

    def __init__(self, param: Path, weights: Path, threads: int, bf16: bool) -> None:
        from providers.image.ncnn_runner import new_net, own_pools

        self.net = new_net(bf16, threads)
        # ~340 MB of buffers after one 320x320 inference, ~800 MB with two at once: ``release`` frees them
        self._pools = own_pools(self.net, workspace_ratio=0.0)
        if self.net.load_param(str(param)) != 0:
            raise UnsupportedGraph(f"ncnn refused the network {param.name}")
        if self.net.load_model(str(weights)) != 0:
            raise UnsupportedGraph(f"ncnn could not load the weights {weights.name}")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import ncnn
        import numpy as np

        masks = []
        for image in batch:
            planes = np.ascontiguousarray(image, dtype=np.float32)
            mat = ncnn.Mat(planes)  # shares ``planes``, which must outlive the extraction
            extractor = self.net.create_extractor()
            extractor.input(INPUT_BLOB, mat)
            status, out = extractor.extract(OUTPUT_BLOB)
            if status != 0:
                raise RuntimeError(f"ncnn extract failed with status {status}")
            masks.append(np.array(out)[0].copy())
            del extractor
        return np.stack(masks)

    def release(self) -> None:
        """Give back the buffers its pools keep between inferences (safe beside one running)."""
        from providers.image.ncnn_runner import empty

        empty(self._pools)


#: the networks loaded from cached files in this process, by file, thread count and storage,
#: while a provider holds them: a provider built beside one that has it (a config reload, a
#: second runtime) takes the loaded one instead of a copy, which holds ~200 MB of ncnn's buffers
#: per u2netp network; once no provider holds it, it goes (a test's models folder, a path dropped)
_LOADED: weakref.WeakValueDictionary[tuple[str, int, bool], NcnnMaskNet] = weakref.WeakValueDictionary()
_LOADED_LOCK = threading.Lock()


def loaded(param: Path, weights: Path, threads: int, bf16: bool, *, share: bool) -> NcnnMaskNet:
    """The network of ``param``/``weights`` loaded with ``threads`` and the storage; ``share``:
    one per process for files that are cached (content-named), for as long as a provider holds it."""
    if not share:
        return NcnnMaskNet(param, weights, threads, bf16)
    key = (str(param), threads, bf16)
    with _LOADED_LOCK:
        net = _LOADED.get(key)
        if net is None:
            net = _LOADED[key] = NcnnMaskNet(param, weights, threads, bf16)
        return net


def network_key(onnx_file: Path, input_size: int, bf16: bool) -> str:
    """The cache name of the network written from ``onnx_file`` (its content, by sha256)."""
    digest = hashlib.sha256()
    with onnx_file.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return f"{onnx_file.stem}-{digest.hexdigest()[:16]}-{input_size}-{'bf16' if bf16 else 'fp32'}-w{WRITER_REVISION}"


@contextmanager
def network_files(folder: Path, key: str, build: Callable[[], NcnnModel]) -> Iterator[tuple[Path, Path]]:
    """The ``.param`` and ``.bin`` of ``key`` in ``folder``, written from ``build()`` when absent
    (each file through a temporary name and a rename, the ``.param`` last, so a reader never
    finds half a network); where ``folder`` cannot be written, in a temporary folder that lasts
    as long as the ``with`` (the Python binding loads weights from a file only)."""
    param, weights = folder / f"{key}.param", folder / f"{key}.bin"
    if param.is_file() and weights.is_file():
        yield param, weights
        return
    model = build()
    try:
        _write(folder, param, weights, model)
    except OSError:  # a read-only models folder: written for this load only
        with tempfile.TemporaryDirectory(prefix="swarm-ncnn-") as temporary:
            param, weights = Path(temporary) / param.name, Path(temporary) / weights.name
            _write(Path(temporary), param, weights, model)
            yield param, weights
        return
    yield param, weights


def _write(folder: Path, param: Path, weights: Path, model: NcnnModel) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in ((weights, model.weights), (param, model.param.encode())):
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)

