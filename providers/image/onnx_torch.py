"""Run a small convolutional ONNX graph (the U2-Net family) on torch, weights read from the file.

Why: on CPUs with AMX or AVX512-BF16/FP16, torch's oneDNN kernels run these convolutions in
bf16/fp16 several times faster than onnxruntime's fp32, and the ``onnx`` package (to rewrite
the graph in fp16) is not installed. The ``.onnx`` file is a protobuf; the few fields needed
(nodes, attributes, initializers) are read here with a wire-format reader, no ``onnx`` import.

``OnnxTorchNet`` evaluates the graph once at a fixed input shape: everything that does not
depend on pixel values (constants, ``Shape`` and the index arithmetic on it, the ``Resize``
target sizes) is folded, and what is left is a flat list of tensor ops (Conv, Relu, MaxPool,
Resize, Concat, Add, Sigmoid), pruned to the outputs asked for. An op outside the supported set
raises ``UnsupportedGraph``; the caller then keeps onnxruntime.

Importing this module imports neither torch nor numpy; ``OnnxTorchNet`` imports torch.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ONNX TensorProto.DataType -> numpy dtype name
_DTYPES = {1: "float32", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


class UnsupportedGraph(ValueError):
    """The graph uses an op, attribute or tensor type this reader does not handle."""


@dataclass
class Node:
    """One ONNX node: op, input and output value names, attributes."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """The parts of an ONNX ``GraphProto`` that running it needs."""

    nodes: list[Node]
    initializers: dict[str, Any]  # name -> numpy array
    inputs: list[str]
    outputs: list[str]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one protobuf message."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise UnsupportedGraph(f"protobuf wire type {wire}")
        yield number, wire, value


def _ints(wire: int, value: Any) -> list[int]:
    """A repeated int64 field: packed (wire 2) or one varint; int64 is two's complement."""
    if wire == 0:
        values = [value]
    else:
        values, pos = [], 0
        while pos < len(value):
            item, pos = _varint(value, pos)
            values.append(item)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in values]


def _tensor(data: bytes) -> tuple[str, Any]:
    import numpy as np

    dims: list[int] = []
    name, dtype, raw, floats, int64s = "", 0, None, [], []
    for number, wire, value in _fields(data):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            dtype = value
        elif number == 8:
            name = bytes(value).decode()
        elif number == 9:
            raw = bytes(value)
        elif number == 4:
            floats += list(struct.unpack(f"<{len(value) // 4}f", value)) if wire == 2 else [struct.unpack("<f", value)[0]]
        elif number == 7:
            int64s += _ints(wire, value)
    if dtype not in _DTYPES:
        raise UnsupportedGraph(f"tensor {name!r} has ONNX data type {dtype}")
    if raw is not None:
        array = np.frombuffer(raw, dtype=_DTYPES[dtype]).copy()
    else:
        array = np.array(floats if dtype == 1 else int64s, dtype=_DTYPES[dtype])
    return name, array.reshape(dims)


def _attribute(data: bytes) -> tuple[str, Any]:
    fields: dict[int, list[tuple[int, Any]]] = {}
    for number, wire, value in _fields(data):
        fields.setdefault(number, []).append((wire, value))
    name = bytes(fields[1][0][1]).decode()
    if 5 in fields:
        return name, _tensor(fields[5][0][1])[1]
    if 8 in fields:
        return name, [v for wire, value in fields[8] for v in _ints(wire, value)]
    if 7 in fields:
        return name, [f for _, value in fields[7] for f in struct.unpack(f"<{len(value) // 4}f", value)]
    if 3 in fields:
        return name, _ints(0, fields[3][0][1])[0]
    if 2 in fields:
        return name, struct.unpack("<f", fields[2][0][1])[0]
    if 4 in fields:
        return name, bytes(fields[4][0][1]).decode()
    raise UnsupportedGraph(f"attribute {name!r} of an unsupported type")


def read_graph(path: str | Path) -> Graph:
    """Nodes, initializers, input and output names of the ONNX model at ``path``."""
    model = Path(path).read_bytes()
    graphs = [value for number, _, value in _fields(model) if number == 7]
    if not graphs:
        raise UnsupportedGraph(f"{path} has no graph")
    nodes: list[Node] = []
    initializers: dict[str, Any] = {}
    inputs: list[str] = []
    outputs: list[str] = []
    for number, _, value in _fields(graphs[0]):
        if number == 1:
            parts: dict[int, list[Any]] = {}
            for sub, _, item in _fields(value):
                parts.setdefault(sub, []).append(item)
            nodes.append(Node(
                op=bytes(parts[4][0]).decode(),
                inputs=[bytes(v).decode() for v in parts.get(1, [])],
                outputs=[bytes(v).decode() for v in parts.get(2, [])],
                attrs=dict(_attribute(a) for a in parts.get(5, [])),
            ))
        elif number == 5:
            name, array = _tensor(value)
            initializers[name] = array
        elif number in (11, 12):
            names = [bytes(v).decode() for sub, _, v in _fields(value) if sub == 1]
            (inputs if number == 11 else outputs).extend(names)
    inputs = [name for name in inputs if name not in initializers]
    return Graph(nodes, initializers, inputs, outputs)


#: ops that only ever see shapes and constants in these graphs: folded at build time
_FOLDED = {"Constant", "Shape", "Gather", "Unsqueeze", "Slice", "Cast"}
_TENSOR_OPS = {"Conv", "Relu", "MaxPool", "Resize", "Concat", "Add", "Sigmoid"}


class OnnxTorchNet:
    """``graph`` as torch ops at ``input_shape`` (NCHW; any batch size runs), ``outputs`` only.

    Args:
        graph: from ``read_graph``.
        input_shape: the shape the folding is done at; height and width are then fixed.
        outputs: the graph outputs to compute (default: the first).
        channels_last: keep weights and activations NHWC (oneDNN's preferred layout).
        fp32_nodes: which nodes of ``plan`` stay fp32 under a lower ``dtype`` (default
            ``u2net_fp32_nodes``).
    """

    def __init__(self, graph: Graph, input_shape: tuple[int, ...], outputs: list[str] | None = None,
                 *, channels_last: bool = True, fp32_nodes: Callable[[OnnxTorchNet], set[int]] | None = None) -> None:
        import torch

        unknown = sorted({n.op for n in graph.nodes} - _FOLDED - _TENSOR_OPS)
        if unknown:
            raise UnsupportedGraph(f"ops not supported on torch: {', '.join(unknown)}")
        self.input = graph.inputs[0]
        self.outputs = outputs or graph.outputs[:1]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.static: dict[str, Any] = {name: torch.from_numpy(a) for name, a in graph.initializers.items()}
        values = dict(self.static)
        values[self.input] = torch.zeros(input_shape)
        dynamic = {self.input}
        plan: list[Node] = []
        #: value name -> its shape at ``input_shape``; value name -> index of its last reader in ``plan``
        self.shapes: dict[str, tuple[int, ...]] = {self.input: tuple(input_shape)}
        last_use = {name: index for index, node in enumerate(graph.nodes) for name in node.inputs if name}
        with torch.no_grad():
            for index, node in enumerate(graph.nodes):
                results = self._run(node, values)
                values.update(zip(node.outputs, results, strict=False))
                self.shapes.update((name, tuple(value.shape)) for name, value in zip(node.outputs, results, strict=False))
                if node.op != "Shape" and dynamic.intersection(node.inputs):
                    dynamic.update(node.outputs)
                    plan.append(node)
                else:
                    self.static.update(zip(node.outputs, results, strict=False))
                for name in dynamic.intersection(node.inputs):  # its shape is kept: all folding needs of it
                    if last_use[name] == index:
                        values.pop(name)
        self.plan = _prune(plan, self.outputs)
        self._last_read = {name: index for index, node in enumerate(self.plan) for name in node.inputs if name}
        readers = Counter(name for node in self.plan for name in node.inputs if name)
        #: indices of the Relus that may overwrite their input: its only reader, made by the plan
        #: (not the caller's batch, a weight or an output), so no one sees it before or after
        made = {name for node in self.plan for name in node.outputs}
        self._in_place = frozenset(
            index for index, node in enumerate(self.plan)
            if node.op == "Relu" and readers[node.inputs[0]] == 1 and node.inputs[0] in made
            and node.inputs[0] not in self.outputs and node.inputs[0] != self.input)
        for node in self.plan:  # weights in the layout the activations will have
            if node.op == "Conv":
                self.static[node.inputs[1]] = self.static[node.inputs[1]].contiguous(memory_format=self.memory_format)
        self._weights_by_dtype: dict[Any, dict[str, Any]] = {}
        #: indices into ``plan`` that run in fp32 when a lower ``dtype`` is asked for
        self.fp32_nodes: frozenset[int] = frozenset((fp32_nodes or u2net_fp32_nodes)(self))

    def __call__(self, batch: Any, dtype: Any = None) -> list[Any]:
        """The chosen outputs for ``batch`` (a float32 NCHW tensor), as float32 tensors.

        ``dtype`` (torch.bfloat16 / torch.float16): run the ops in it, weights cast once, except
        the nodes of ``fp32_nodes``, whose inputs are cast up (oneDNN accumulates in fp32 either
        way; what bf16 loses is the 8-bit mantissa of each stored activation). Each
        intermediate value is freed after its last reader.
        """
        import torch

        with torch.inference_mode():
            low = self._weights(dtype)
            x = batch.contiguous(memory_format=self.memory_format)
            values: dict[str, Any] = {self.input: x if dtype is None else x.to(dtype)}
            for index, node in enumerate(self.plan):
                wanted = torch.float32 if dtype is None or index in self.fp32_nodes else dtype
                weights = self.static if wanted is torch.float32 else low
                args: dict[str, Any] = {}
                for name in node.inputs:
                    if name in values:
                        value = values[name]
                        args[name] = value.to(wanted) if value.is_floating_point() and value.dtype != wanted else value
                    elif name:
                        args[name] = weights[name]
                if index in self._in_place:  # a new tensor per Relu cost 3-8% of a u2netp forward
                    values[node.outputs[0]] = torch.relu_(args[node.inputs[0]])
                else:
                    values.update(zip(node.outputs, self._run(node, args), strict=False))
                for name in node.inputs:
                    if self._last_read.get(name) == index and name not in self.outputs:
                        values.pop(name, None)
            return [values[name].float() for name in self.outputs]

    def _weights(self, dtype: Any) -> dict[str, Any]:
        if dtype is None:
            return self.static
        if dtype not in self._weights_by_dtype:
            self._weights_by_dtype[dtype] = {
                name: value.to(dtype) if value.is_floating_point() else value for name, value in self.static.items()
            }
        return self._weights_by_dtype[dtype]

    @staticmethod
    def _run(node: Node, values: dict[str, Any]) -> list[Any]:
        import torch
        from torch.nn import functional as F  # noqa: N812

        args: list[Any] = [values[name] if name else None for name in node.inputs]
        attrs, op = node.attrs, node.op
        if op == "Conv":
            pads = attrs.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                raise UnsupportedGraph("asymmetric Conv padding")
            return [F.conv2d(args[0], args[1], args[2] if len(args) > 2 else None, attrs.get("strides", 1),
                             pads[:2], attrs.get("dilations", 1), attrs.get("group", 1))]
        if op == "Relu":
            return [torch.relu(args[0])]
        if op == "Sigmoid":
            return [torch.sigmoid(args[0])]
        if op == "Add":
            return [args[0] + args[1]]
        if op == "MaxPool":
            return [F.max_pool2d(args[0], attrs["kernel_shape"], attrs.get("strides"), attrs.get("pads", [0])[0],
                                 ceil_mode=bool(attrs.get("ceil_mode", 0)))]
        if op == "Resize":
            if attrs.get("mode") != "linear" or attrs.get("coordinate_transformation_mode") != "pytorch_half_pixel":
                raise UnsupportedGraph(f"Resize {attrs.get('mode')}/{attrs.get('coordinate_transformation_mode')}")
            size = [int(v) for v in args[3].tolist()[2:]]
            return [F.interpolate(args[0], size=size, mode="bilinear", align_corners=False)]
        if op == "Concat":
            return [torch.cat(args, dim=attrs["axis"])]
        return [_fold(op, attrs, args)]


def _fold(op: str, attrs: dict[str, Any], args: list[Any]) -> Any:
    """The shape arithmetic ops, on small int64 tensors."""
    import torch

    if op == "Constant":
        return torch.from_numpy(attrs["value"])
    if op == "Shape":
        return torch.tensor(list(args[0].shape), dtype=torch.int64)
    if op == "Gather":
        return torch.index_select(args[0], attrs.get("axis", 0), args[1].reshape(-1)).reshape(
            args[0].shape[:attrs.get("axis", 0)] + args[1].shape)
    if op == "Unsqueeze":
        out = args[0]
        for axis in sorted(attrs.get("axes") or args[1].tolist()):
            out = out.unsqueeze(axis)
        return out
    if op == "Slice":
        starts, ends = args[1].tolist(), args[2].tolist()
        axes = args[3].tolist() if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        out = args[0]
        for start, end, axis in zip(starts, ends, axes, strict=True):
            length = out.shape[axis]
            out = out.narrow(axis, min(start, length), max(0, min(end, length) - min(start, length)))
        return out
    if op == "Cast":
        return args[0].to({1: torch.float32, 7: torch.int64, 6: torch.int32}[attrs["to"]])
    raise UnsupportedGraph(f"op {op}")


def _prune(plan: list[Node], outputs: list[str]) -> list[Node]:
    """The nodes of ``plan`` that ``outputs`` depend on, in order."""
    needed, kept = set(outputs), []
    for node in reversed(plan):
        if needed.intersection(node.outputs):
            needed.update(node.inputs)
            kept.append(node)
    return kept[::-1]


def u2net_fp32_nodes(net: OnnxTorchNet) -> set[int]:
    """The nodes of a U2-Net family graph that stay fp32 under bf16/fp16, found by measuring.

    Measured on u2netp in bf16 against onnxruntime fp32 (the Grace Hopper probe; mean alpha
    difference 2.2 levels with every node in bf16, floor 1): keeping any one of the 11 residual
    blocks in fp32 moved it by < 0.1 level, except the decoder block at half the input's
    resolution (side output 2: 2.2 -> 0.6); within that block, its last two convolutions and
    the ops between them up to the residual Add (0.115 levels, together with the next item);
    the output head (the 1-channel side convolutions, their resizes, the fusion convolution and
    the sigmoid: 2.2 -> 1.74 alone, cost negligible). A whole stage at full resolution in fp32
    costs more than the bf16 saves. The choice is checked again per model by the floor.
    """
    plan, static = net.plan, net.static
    heads = [i for i, node in enumerate(plan) if node.op == "Conv" and static[node.inputs[1]].shape[0] == 1]
    if not heads:
        return set()
    keep = set(range(heads[0], len(plan)))
    producer = {name: i for i, node in enumerate(plan) for name in node.outputs}
    half = net.shapes[net.input][2] // 2
    for head in heads:
        source = plan[head].inputs[0]
        shape = net.shapes.get(source, ())
        if len(shape) == 4 and shape[2] == half:
            keep |= _tail(plan, producer, source, convs=2)
    return keep


def _tail(plan: list[Node], producer: dict[str, int], value: str, convs: int) -> set[int]:
    """The nodes that make ``value`` back along the latest-produced input, through ``convs`` Convs."""
    chain: set[int] = set()
    index = producer.get(value)
    while index is not None and convs > 0:
        chain.add(index)
        convs -= plan[index].op == "Conv"
        earlier = [producer[name] for name in plan[index].inputs if name in producer]
        index = max(earlier) if earlier else None
    return chain
