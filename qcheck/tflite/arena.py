"""How much activation memory a model needs: the largest set of tensors alive at once.

Operators run in file order (TFLite Micro runs them so, one at a time). A tensor that is not
constant lives from the operator that writes it (a graph input: from the start) to the last
operator that reads it (a graph output, or state that no operator writes: to the end); an
operator's intermediates live while it runs. The peak over the operators of subgraph 0 is what
any memory planner must fit into the tensor arena at one time. Each buffer is rounded up to
TFLite Micro's 16-byte alignment (``MicroArenaBufferAlignment()``).

This is a lower bound for TFLite Micro's arena: its planner may leave gaps, and kernels add
scratch buffers and persistent data (CMSIS-NN's, for instance) that depend on the build.
Subgraphs called by control flow (IF, WHILE) are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from qcheck.tflite.inspect import ModelInfo, TensorInfo

BUFFER_ALIGNMENT: Final = 16

_BITS: Final[dict[str, int]] = {
    "bool": 8, "int4": 4, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "float16": 16,
    "bfloat16": 16, "int32": 32, "uint32": 32, "float32": 32, "int64": 64, "uint64": 64,
    "float64": 64, "complex64": 64, "complex128": 128,
}  # fmt: skip


@dataclass(frozen=True)
class LiveTensor:
    """An activation tensor and the operators it lives across (inclusive)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    bytes: int  # aligned
    first: int
    last: int


@dataclass(frozen=True)
class ArenaEstimate:
    """The peak of live activation bytes over the operators of subgraph 0."""

    peak_bytes: int
    peak_operator: int  # index of the operator at the peak; -1 for a graph without operators
    peak_op: str
    live: tuple[LiveTensor, ...]  # the tensors alive at the peak, largest first
    operators: int
    subgraphs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "peak_operator": self.peak_operator,
            "peak_op": self.peak_op,
            "alignment": BUFFER_ALIGNMENT,
            "live_tensors": [
                {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "bytes": t.bytes}
                for t in self.live
            ],
        }


def tensor_bytes(tensor: TensorInfo) -> int:
    """The tensor's buffer size, rounded up to the arena's alignment."""
    if 0 in tensor.shape:
        return 0  # e.g. a zero-size LSTM intermediate
    elements = math.prod(max(dim, 1) for dim in tensor.shape)  # a dynamic dimension counts as 1
    raw = (elements * _BITS.get(tensor.dtype, 0) + 7) // 8
    return -(-raw // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT


def estimate_arena(info: ModelInfo) -> ArenaEstimate:
    """The largest live set of non-constant tensors over subgraph 0's operator order."""
    tensors = _live_tensors(info)
    operators = [op for op in info.operators if op.subgraph == 0]
    subgraphs = len({t.subgraph for t in info.tensors})
    if not operators:
        live = tuple(sorted(tensors, key=lambda t: -t.bytes))
        return ArenaEstimate(sum(t.bytes for t in live), -1, "", live, 0, subgraphs)
    totals = [sum(t.bytes for t in tensors if t.first <= i <= t.last) for i in range(len(operators))]
    peak = max(range(len(operators)), key=lambda i: (totals[i], -i))
    live = tuple(sorted((t for t in tensors if t.first <= peak <= t.last), key=lambda t: (-t.bytes, t.name)))
    return ArenaEstimate(totals[peak], peak, operators[peak].op, live, len(operators), subgraphs)


def _live_tensors(info: ModelInfo) -> list[LiveTensor]:
    operators = [op for op in info.operators if op.subgraph == 0]
    end = max(len(operators) - 1, 0)
    written: dict[int, int] = {}  # tensor -> first operator that writes it
    last_read: dict[int, int] = {}
    scratch: dict[int, int] = {}  # intermediate -> the operator it belongs to
    for i, op in enumerate(operators):
        for index in op.outputs:
            written.setdefault(index, i)
        for index in op.inputs:
            last_read[index] = i
        for index in op.intermediates:
            scratch.setdefault(index, i)
    inputs = {io.tensor.index for io in info.inputs}
    outputs = {io.tensor.index for io in info.outputs}
    live = []
    for index in sorted({*written, *last_read, *scratch, *inputs, *outputs} - {-1}):
        tensor = info.tensor(0, index)
        if tensor.constant:
            continue
        if index in scratch:
            first = last = scratch[index]
        elif index in inputs or index in written:
            first = 0 if index in inputs else written[index]
            last = end if index in outputs else max(last_read.get(index, first), first)
        else:
            first, last = 0, end  # state that no operator writes (a variable) lives throughout
        live.append(LiveTensor(tensor.label, tensor.dtype, tensor.shape, tensor_bytes(tensor), first, last))
    return live
