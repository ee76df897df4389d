"""What in a model is still float, and the ``*_quantization_info.json`` built from it.

The rules follow what a full-integer deployment needs (see ``FIELD.md`` in the project's
shared notes): int8/uint8/int16 activations and weights, int32 only for biases and for index
or shape operands, and no float QUANTIZE/DEQUANTIZE. The integer uint8<->int8 requantize that
``inference_input_type=tf.uint8`` adds at the I/O is legal and runs on Ethos-U.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qcheck.tflite.inspect import RESOURCE_VARIABLE_OPS, ModelInfo, OperatorInfo, TensorInfo, operator_label

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
    variable: str = ""  # the resource variable an ASSIGN_VARIABLE (which writes no tensor) writes

    def describe(self) -> str:
        """``CONV_2D -> 'conv1'``, ``ASSIGN_VARIABLE -> variable 'state'``, or ``#12 SVDF`` when
        the output has no name."""
        if self.output:
            return f"{self.op} -> '{self.output}'"
        if self.variable:
            where = f" (subgraph {self.subgraph})" if self.subgraph else ""
            return f"{self.op} -> variable '{self.variable}'{where}"
        return operator_label(self.op, "", self.index, self.subgraph)


@dataclass(frozen=True)
class FloatState:
    """A resource variable whose state the model keeps in float (the converter quantizes none
    unless told to): each invoke reads it in float and writes it back in float."""

    variable: str  # container/shared name, as its VAR_HANDLE names it
    dtype: str
    shape: tuple[int, ...]
    tensors: tuple[str, ...] = ()  # the float tensors holding its values: read, written, initial

    def to_dict(self) -> dict[str, Any]:
        return {"variable": self.variable, "dtype": self.dtype, "shape": list(self.shape),
                "tensors": list(self.tensors)}


# What each kind of model is, in words (the ``quantization`` field names the kind).
KIND_DESCRIPTIONS = {
    "full-integer": "full-integer: integer weights and activations",
    "int16x8": "int16x8: int16 activations, int8 weights",
    "dynamic-range": "dynamic-range quantized: int8 weights, float activations",
    "float16": "float16 quantized: float16 weights, float32 activations",
    "float": "float: nothing is quantized",
    "mixed": "mixed: some operators compute in integer, others in float",
    # int16 activations on some layers only (ai-edge-quantizer's per-layer recipe, [quantization] int16_layers).
    "mixed-int16x8": "mixed int8 and int16x8: int16 activations in some operators, int8 in the others",
}
FLOAT_IO_PATTERN = "{body} inside, float32 at the {sides}"
# Operators that only convert between float and integer: they say nothing about how the body computes.
# Nor do those that hold a resource variable's state (look it up, read it, write it, initialise it).
_CONVERTING_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", *RESOURCE_VARIABLE_OPS, "CALL_ONCE"})
_QUANTIZED_DTYPES = frozenset({"int8", "uint8", "int16"})


@dataclass(frozen=True)
class Census:
    """The quantization state of one model."""

    float_tensors: tuple[TensorInfo, ...]  # float activations and weights that count
    exempt_float_tensors: tuple[TensorInfo, ...]  # zero-size operator intermediates (int8 LSTM)
    float_ops: tuple[FloatOp, ...]
    int32_activations: tuple[TensorInfo, ...]  # int32 tensors that are neither bias nor index
    kind: str = "full-integer"  # a key of KIND_DESCRIPTIONS
    # Operators computing on float activations with int8 weights: what TFLite Micro refuses.
    hybrid_ops: tuple[FloatOp, ...] = ()
    # "input" and/or "output": float32 model I/O converted to and from an integer body by a
    # QUANTIZE at the entry / a DEQUANTIZE at the exit.
    float_io: tuple[str, ...] = ()
    io_notes: tuple[str, ...] = ()  # integer I/O other than int8/uint8, an NCHW-looking input
    # A mixed-int16x8 model's operators computing on int16 activations (the others compute on int8).
    int16_ops: tuple[FloatOp, ...] = ()
    float_state: tuple[FloatState, ...] = ()  # resource variables whose state is float

    @property
    def integer_body(self) -> bool:
        """Every operator that computes does so on integers; only the I/O or a resource variable's
        state is float (the converter's I/O types, a variable it does not quantize)."""
        return bool(self.float_io or self.float_state) and self.kind in ("full-integer", "int16x8")

    @property
    def description(self) -> str:
        """What the model is, in words, e.g. "dynamic-range quantized: int8 weights, float activations"."""
        if self.integer_body:
            body = "int16" if self.kind == "int16x8" else "int8"
            where = [FLOAT_IO_PATTERN.format(body=body, sides=" and ".join(self.float_io))] if self.float_io else [
                f"{body} inside"]
            if self.float_state:
                dtypes = "/".join(sorted({state.dtype for state in self.float_state}))
                named = ", ".join(f"'{state.variable}'" for state in self.float_state)
                where.append(f"{dtypes} in the state of {len(self.float_state)} resource variable(s) ({named})")
            return ", ".join(where[:1]) + "".join(f" and {w}" if self.float_io else f", {w}" for w in where[1:])
        if self.kind == "mixed-int16x8":
            return (f"mixed int8 and int16x8: int16 activations in the layers {self.int16_layers()}, "
                    "int8 in the others")
        return KIND_DESCRIPTIONS[self.kind]

    def int16_layers(self) -> str:
        """The Keras layers of the int16 operators, as the recipe's ``int16_layers`` names them (an
        operator whose tensor names carry no layer is named by its type and output)."""
        from qcheck.tflite.recipe import layer_scope

        names = [f"'{layer_scope(op.output)}'" if layer_scope(op.output) else op.describe() for op in self.int16_ops]
        return ", ".join(dict.fromkeys(names))

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
        FloatOp(op.op, _first_output_name(info, op), op.index, op.subgraph,
                info.variable_of(op) if op.op == "ASSIGN_VARIABLE" else "")
        for op in info.operators
        if any((op.subgraph, i) in counted for i in (*op.inputs, *op.outputs) if i >= 0)
    )
    kind, hybrid, int16 = _kind(info, {(t.subgraph, t.index) for t in exempt})
    return Census(tuple(float_tensors), tuple(exempt), float_ops, tuple(_int32_activations(info)),
                  kind, hybrid, _float_io(info), _io_notes(info), int16, _float_state(info))


def _float_state(info: ModelInfo) -> tuple[FloatState, ...]:
    """The resource variables read (READ_VARIABLE) or written (ASSIGN_VARIABLE, the initializer's
    too) as float tensors, with those tensors."""
    found: dict[str, tuple[str, tuple[int, ...], list[str]]] = {}
    for op in info.operators:
        if op.op not in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
            continue
        index = op.outputs[0] if op.op == "READ_VARIABLE" and op.outputs else (
            op.inputs[1] if op.op == "ASSIGN_VARIABLE" and len(op.inputs) > 1 else -1)
        if index < 0:
            continue
        value = info.tensor(op.subgraph, index)
        if value.dtype in FLOAT_DTYPES:
            variable = info.variable_of(op) or info.operator_label(op)
            found.setdefault(variable, (value.dtype, value.shape, []))[2].append(value.label)
    return tuple(FloatState(variable, dtype, shape, tuple(dict.fromkeys(tensors)))
                 for variable, (dtype, shape, tensors) in found.items())


def _kind(info: ModelInfo, exempt: set[tuple[int, int]]) -> tuple[str, tuple[FloatOp, ...], tuple[FloatOp, ...]]:
    """The model's kind (a key of KIND_DESCRIPTIONS), its hybrid operators and, for a model with
    int16 activations on some layers only, the operators computing on int16.

    Judged by the operators that compute (QUANTIZE/DEQUANTIZE only convert): on float
    activations or on integer ones (int16 or int8), and with which weights.
    """
    float_compute, integer_compute, hybrid = 0, 0, []
    int16_ops: list[FloatOp] = []
    int8_ops = 0
    for op in info.operators:
        if op.op in _CONVERTING_OPS:
            continue
        tensors = [info.tensor(op.subgraph, i) for i in (*op.inputs, *op.outputs) if i >= 0]
        tensors = [t for t in tensors if (t.subgraph, t.index) not in exempt]
        activations = [t for t in tensors if not t.constant]
        if any(t.dtype in FLOAT_DTYPES for t in activations):
            float_compute += 1
            if any(t.constant and t.dtype in ("int8", "uint8", "int4") for t in tensors):
                hybrid.append(FloatOp(op.op, _first_output_name(info, op)))
        elif any(t.dtype in _QUANTIZED_DTYPES for t in activations):
            integer_compute += 1
            # An int8 LSTM's int16 cell state is a variable tensor: that LSTM still computes in int8.
            if any(t.dtype == "int16" and not t.variable for t in activations):
                int16_ops.append(FloatOp(op.op, _first_output_name(info, op), op.index, op.subgraph))
            else:
                int8_ops += 1
    if float_compute == 0:
        if int16_ops and int8_ops:
            return "mixed-int16x8", (), tuple(int16_ops)
        return ("int16x8" if int16_ops else "full-integer"), (), ()
    if integer_compute > 0:
        return "mixed", tuple(hybrid), ()
    if hybrid:
        return "dynamic-range", tuple(hybrid), ()
    if any(t.constant and t.dtype == "float16" for t in info.tensors):
        return "float16", (), ()
    return "float", (), ()


def _float_io(info: ModelInfo) -> tuple[str, ...]:
    """The sides where a float32 model input or output meets an integer body through a QUANTIZE
    (at the entry) or a DEQUANTIZE (at the exit)."""
    sides = []
    inputs = [io.tensor for io in info.inputs]
    if inputs and all(t.dtype == "float32" and entry_quantize(info, t) is not None for t in inputs):
        sides.append("input")
    outputs = [io.tensor for io in info.outputs]
    if outputs and all(t.dtype == "float32" and _exit_dequantize(info, t) for t in outputs):
        sides.append("output")
    return tuple(sides)


def entry_quantize(info: ModelInfo, tensor: TensorInfo) -> TensorInfo | None:
    """The integer output of the QUANTIZE that is the only reader of the float input ``tensor``:
    where float inputs are clipped to the integer range. None when there is no such QUANTIZE."""
    readers = info.consumers(tensor)
    if len(readers) != 1 or readers[0].op != "QUANTIZE" or not readers[0].outputs:
        return None
    out = info.tensor(readers[0].subgraph, readers[0].outputs[0])
    return out if out.dtype in _QUANTIZED_DTYPES and out.scale else None


def _exit_dequantize(info: ModelInfo, tensor: TensorInfo) -> bool:
    producer = info.producer(tensor)
    if producer is None or producer.op != "DEQUANTIZE" or not producer.inputs:
        return False
    source = info.tensor(producer.subgraph, producer.inputs[0])
    return not source.constant and source.dtype in _QUANTIZED_DTYPES


def _io_notes(info: ModelInfo) -> tuple[str, ...]:
    """Facts about the I/O an application must know: integer types other than int8/uint8, and an
    input laid out channels-first."""
    notes = []
    for kind, ios, verb in (("input", info.inputs, "feed"), ("output", info.outputs, "read")):
        for io in ios:
            t = io.tensor
            if t.dtype in ("int16", "int32", "int64"):
                notes.append(f"{kind} '{io.name}' is {t.dtype}, not int8/uint8: the application must {verb} "
                             f"{t.dtype} values")
    for io in info.inputs:
        shape = io.tensor.shape
        if len(shape) == 4 and shape[1] in (1, 2, 3, 4) and shape[2] > 4 and shape[3] > 4:
            notes.append(f"input '{io.name}' {list(shape)} looks channels-first (NCHW): TFLite, TFLite Micro "
                         "and Vela kernels expect NHWC; a model converted from PyTorch/ONNX this way runs "
                         "transposes or reads channels as rows (convert with NHWC inputs, e.g. onnx2tf)")
    return tuple(notes)


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
    """The name of the first tensor ``op`` writes ("" when it writes none: an ASSIGN_VARIABLE)."""
    for i in op.outputs:
        if i >= 0:
            return info.tensor(op.subgraph, i).name
    return ""


def quantization_info(info: ModelInfo, census: Census | None = None) -> dict[str, Any]:
    """The ``*_quantization_info.json`` content: dtype counts, operators, I/O parameters."""
    census = census or take_census(info)
    dtypes = info.dtype_counts()
    return {
        "fully_quantized": census.fully_quantized,
        "quantization": census.kind,
        "quantization_description": census.description,
        "float_io": list(census.float_io),
        "float_state": [state.to_dict() for state in census.float_state],
        "hybrid_operators": [op.describe() for op in census.hybrid_ops],
        "int16_operators": [op.describe() for op in census.int16_ops],
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
