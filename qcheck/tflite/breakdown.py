"""Where a model's bytes go: the constant data (weights, biases, ...) each operator reads.

Every constant tensor is counted once, for the first operator that reads it (subgraphs and
operators in file order), so the layers add up to all the constant data in the file; constants
that no operator reads get an entry of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from qcheck.tflite.inspect import ModelInfo, OperatorInfo, TensorInfo

UNUSED_OP: Final = "(no operator)"

# Input slots of the weights and of the bias, by operator type (TFLite's operator signatures).
_WEIGHT_SLOTS: Final[dict[str, tuple[int, ...]]] = {
    "CONV_2D": (1,),
    "DEPTHWISE_CONV_2D": (1,),
    "FULLY_CONNECTED": (1,),
    "TRANSPOSE_CONV": (1,),
    "CONV_3D": (1,),
    "CONV_3D_TRANSPOSE": (1,),
}
_BIAS_SLOTS: Final[dict[str, tuple[int, ...]]] = {
    "CONV_2D": (2,),
    "DEPTHWISE_CONV_2D": (2,),
    "FULLY_CONNECTED": (2,),
    "TRANSPOSE_CONV": (3,),
    "CONV_3D": (2,),
    "CONV_3D_TRANSPOSE": (3,),
    "SVDF": (3,),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (12, 13, 14, 15),
    "LSTM": (12, 13, 14, 15),
}
# Small integer vectors that other operators read as parameters, not as learned data.
_PARAMETER_DTYPES: Final = frozenset({"int32", "int64"})


@dataclass(frozen=True)
class LayerBytes:
    """The constant bytes one operator reads: its weights, its bias and other constants."""

    subgraph: int
    index: int  # the operator's index in its subgraph; -1 for constants no operator reads
    op: str  # "CONV_2D", a custom code, or UNUSED_OP
    name: str  # the name of the tensor the operator writes (how converters name layers)
    weights_bytes: int
    bias_bytes: int
    other_bytes: int  # shapes, axes, paddings, lookup tables, ...

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.bias_bytes + self.other_bytes

    def describe(self) -> str:
        return f"{self.op} '{self.name}'" if self.index >= 0 else "constants no operator reads"

    def to_dict(self) -> dict[str, Any]:
        return {
            "subgraph": self.subgraph,
            "operator": self.index,
            "op": self.op,
            "name": self.name,
            "weights_bytes": self.weights_bytes,
            "bias_bytes": self.bias_bytes,
            "other_bytes": self.other_bytes,
            "total_bytes": self.total_bytes,
        }


def constant_bytes(info: ModelInfo) -> int:
    """All the constant data in the model (what the breakdown adds up to)."""
    return sum(t.data_bytes for t in info.tensors if t.constant)


def size_breakdown(info: ModelInfo) -> list[LayerBytes]:
    """Constant bytes per operator, largest first (ties in file order); operators without any left out."""
    counted: set[tuple[int, int]] = set()
    layers: list[LayerBytes] = []
    for op in info.operators:
        weights = bias = other = 0
        for slot, index in enumerate(op.inputs):
            key = (op.subgraph, index)
            if index < 0 or key in counted:
                continue
            tensor = info.tensor(*key)
            if not tensor.constant:
                continue
            counted.add(key)
            kind = _kind(op, slot, tensor)
            if kind == "bias":
                bias += tensor.data_bytes
            elif kind == "weights":
                weights += tensor.data_bytes
            else:
                other += tensor.data_bytes
        if weights or bias or other:
            layers.append(LayerBytes(op.subgraph, op.index, op.op, _output_name(info, op), weights, bias, other))
    unused = sum(t.data_bytes for t in info.tensors if t.constant and (t.subgraph, t.index) not in counted)
    if unused:
        layers.append(LayerBytes(0, -1, UNUSED_OP, "", 0, 0, unused))
    return sorted(layers, key=lambda layer: (-layer.total_bytes, layer.subgraph, layer.index))


def _kind(op: OperatorInfo, slot: int, tensor: TensorInfo) -> str:
    if slot in _BIAS_SLOTS.get(op.op, ()):
        return "bias"
    if slot in _WEIGHT_SLOTS.get(op.op, ()):
        return "weights"
    if op.op in _WEIGHT_SLOTS:
        return "other"  # e.g. TRANSPOSE_CONV's output shape
    if tensor.dtype in _PARAMETER_DTYPES and len(tensor.shape) <= 1:
        return "other"
    return "weights"  # a constant operand of ADD, MUL, BATCH_MATMUL, LSTM gates, ...


def _output_name(info: ModelInfo, op: OperatorInfo) -> str:
    for index in op.outputs:
        if index >= 0:
            return info.tensor(op.subgraph, index).label
    return ""
