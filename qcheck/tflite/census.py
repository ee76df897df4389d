"""What in a model is still float, and the ``*_quantization_info.json`` built from it.

The rules follow what a full-integer deployment needs (see ``FIELD.md`` in the project's
shared notes): int8/uint8/int16 activations and weights, int32 only for biases and for index
or shape operands, and no float QUANTIZE/DEQUANTIZE. The integer uint8<->int8 requantize that
``inference_input_type=tf.uint8`` adds at the I/O is legal and runs on Ethos-U.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qcheck.tflite.inspect import ModelInfo, OperatorInfo, TensorInfo, operator_label

FLOAT_DTYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
INTEGER_DTYPES = frozenset({"int8", "uint8", "int16", "int4"})

# Ops whose int32 output is an index or a shape, not a numeric activation.
_INDEX_OUTPUT_OPS = frozenset({"ARG_MAX", "ARG_MIN", "SHAPE", "RANK", "WHERE", "TOPK_V2", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "UNIQUE"})
# Ops that take an int32 bias as their third input.
_BIAS_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BATCH_MATMUL"})


@dataclass(frozen=True)
class FloatOp:
    """An operator that reads or writes float tensors."""

    op: str
    output: str  # name of its first output tensor
    index: int | None = None  # position in its subgraph
    subgraph: int = 0

    def describe(self) -> str:
        """``CONV_2D -> 'conv1'``, or ``#12 SVDF`` when the output has no name."""
        if self.output:
            return f"{self.op} -> '{self.output}'"
        return operator_label(self.op, "", self.index, self.subgraph)


@dataclass(frozen=True)
class Census:
    """The quantization state of one model."""

    float_tensors: tuple[TensorInfo, ...]  # float activations and weights that count
    exempt_float_tensors: tuple[TensorInfo, ...]  # zero-size operator intermediates (int8 LSTM)
    float_ops: tuple[FloatOp, ...]
    int32_activations: tuple[TensorInfo, ...]  # int32 tensors that are neither bias nor index

    @property
    def fully_quantized(self) -> bool:
        return not (self.float_tensors or self.float_ops or self.int32_activations)

    @property
    def problems(self) -> int:
        return len(self.float_tensors) + len(self.float_ops) + len(self.int32_activations)


def take_census(info: ModelInfo) -> Census:
    """Sort every tensor and operator of ``info`` into integer, exempt and float."""
    intermediates = {(op.subgraph, i) for op in info.operators for i in op.intermediates}
    float_tensors, exempt = [], []
    for t in info.tensors:
        if t.dtype not in FLOAT_DTYPES:
            continue
        if (t.subgraph, t.index) in intermediates and t.elements == 0:
            exempt.append(t)
        else:
            float_tensors.append(t)
    counted = {(t.subgraph, t.index) for t in float_tensors}
    float_ops = tuple(
        FloatOp(op.op, _first_output_name(info, op), op.index, op.subgraph)
        for op in info.operators
        if any((op.subgraph, i) in counted for i in (*op.inputs, *op.outputs) if i >= 0)
    )
    return Census(tuple(float_tensors), tuple(exempt), float_ops, tuple(_int32_activations(info)))


def is_float_model(info: ModelInfo) -> bool:
    """No tensor carries quantization parameters: a float model, not a quantized one."""
    return not any(t.scale for t in info.tensors)


def _int32_activations(info: ModelInfo) -> list[TensorInfo]:
    bias_inputs = {
        (op.subgraph, op.inputs[2])
        for op in info.operators
        if op.op in _BIAS_OPS and len(op.inputs) > 2 and op.inputs[2] >= 0
    }
    found = []
    for t in info.tensors:
        if t.dtype != "int32" or t.constant or (t.subgraph, t.index) in bias_inputs:
            continue
        producer = info.producer(t)
        if producer is None or producer.op in _INDEX_OUTPUT_OPS:
            continue
        # An int32 tensor that only feeds shape/index operands (e.g. a computed reshape size)
        # is not numeric data; one that feeds arithmetic is.
        if producer.op in {"CAST", "QUANTIZE", "DEQUANTIZE"} or t.scale:
            found.append(t)
    return found


def _first_output_name(info: ModelInfo, op: OperatorInfo) -> str:
    for i in op.outputs:
        if i >= 0:
            return info.tensor(op.subgraph, i).name
    return "?"


def quantization_info(info: ModelInfo, census: Census | None = None) -> dict[str, Any]:
    """The ``*_quantization_info.json`` content: dtype counts, operators, I/O parameters."""
    census = census or take_census(info)
    dtypes = info.dtype_counts()
    return {
        "fully_quantized": census.fully_quantized,
        "uint8_tensors": dtypes.get("uint8", 0),
        "int8_tensors": dtypes.get("int8", 0),
        "int16_tensors": dtypes.get("int16", 0),
        "int32_tensors": dtypes.get("int32", 0),
        "float32_tensors": sum(1 for t in census.float_tensors if t.dtype == "float32"),
        "float32_exempt_tensors": sum(1 for t in census.exempt_float_tensors if t.dtype == "float32"),
        "other_float_tensors": sum(1 for t in census.float_tensors if t.dtype != "float32"),
        "total_tensors": len(info.tensors),
        "dtypes": dtypes,
        "operators": info.operator_counts(),
        "float_operators": [op.describe() for op in census.float_ops],
        "size_bytes": info.size_bytes,
        "input": [io.to_dict() for io in info.inputs],
        "output": [io.to_dict() for io in info.outputs],
    }
