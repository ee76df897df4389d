"""Read a ``.tflite`` flatbuffer into frozen dataclasses.

The file is read through LiteRT's generated schema binding (``ai_edge_litert.schema_py_generated``),
never by a parser of our own, and without building an interpreter: a model that would crash the
runtime can still be inspected.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_TFLITE_IDENTIFIER = b"TFL3"
# Ops that move or requantize values without computing: look through them for the real source.
_PASS_THROUGH = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
# The operators of resource variables: state the runtime keeps between invocations outside any
# tensor of the model (a stateful Keras RNN's, a tf.Variable assigned in the model), set first by
# the CALL_ONCE initializer subgraph on an interpreter's first invoke.
RESOURCE_VARIABLE_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"})


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph, with its quantization parameters."""

    subgraph: int
    index: int
    name: str
    dtype: str  # lower-case numpy-style name: "int8", "float32", ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int
    constant: bool  # backed by data in the file (weights, biases, shapes)
    data_bytes: int
    variable: bool = False  # state the runtime keeps between invocations (e.g. an LSTM's)

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def dynamic(self) -> bool:
        return any(dim < 0 for dim in self.shape_signature)

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    @property
    def label(self) -> str:
        """How reports name the tensor: its name, or its index when it has none."""
        return self.name or unnamed_tensor_label(self.subgraph, self.index)


@dataclass(frozen=True)
class OperatorInfo:
    """One operator: its type and the tensors it reads, writes and keeps as intermediates."""

    subgraph: int
    index: int
    op: str  # builtin name ("CONV_2D") or the custom code ("ethos-u")
    custom: bool
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]
    variable: str = ""  # a VAR_HANDLE's resource variable (container/shared name)
    init_subgraph: int = -1  # the subgraph a CALL_ONCE runs (the resource variables' initializer)


@dataclass(frozen=True)
class IOInfo:
    """A model input or output, named as its signature names it when the model has one."""

    name: str
    tensor: TensorInfo

    def to_dict(self) -> dict[str, Any]:
        t = self.tensor
        return {
            "name": self.name,
            "tensor": t.name,
            "dtype": t.dtype,
            "shape": list(t.shape),
            "shape_signature": list(t.shape_signature),
            "scale": t.scale[0] if len(t.scale) == 1 else list(t.scale),
            "zero_point": t.zero_point[0] if len(t.zero_point) == 1 else list(t.zero_point),
        }


@dataclass(frozen=True)
class ModelInfo:
    """What a ``.tflite`` file holds: tensors, operators, inputs and outputs of every subgraph."""

    size_bytes: int
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[IOInfo, ...]
    outputs: tuple[IOInfo, ...]
    # The resource variables its VAR_HANDLE operators name (container/shared name), each once.
    resource_variables: tuple[str, ...] = ()

    def tensor(self, subgraph: int, index: int) -> TensorInfo:
        return self._by_key[(subgraph, index)]

    @property
    def stateful(self) -> bool:
        """The model has state that carries from one invocation to the next: variable tensors
        (an int8 LSTM's) or resource variables (see :attr:`resource_state`)."""
        return any(t.variable for t in self.tensors) or self.resource_state

    @property
    def resource_state(self) -> bool:
        """The model has resource variable operators (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE).
        Neither runtime's reset gives their initial state back (LiteRT's ``reset_all_variables()``
        leaves them, TFLite Micro's ``reset()`` fills them with zero points, and neither runs the
        initializer again): only a new interpreter starts from it."""
        return any(op.op in RESOURCE_VARIABLE_OPS for op in self.operators)

    @property
    def state(self) -> str:
        """What holds the model's state, as reports say it ("" for a model without state)."""
        parts = []
        if (tensors := sum(1 for t in self.tensors if t.variable)):
            parts.append(f"{tensors} variable tensor(s) (e.g. an LSTM's)")
        if self.resource_state:
            parts.append(f"{max(len(self.resource_variables), 1)} resource variable(s) (VAR_HANDLE, e.g. a "
                         "stateful RNN's or an assigned tf.Variable)")
        return " and ".join(parts)

    @cached_property
    def _by_key(self) -> dict[tuple[int, int], TensorInfo]:
        return {(t.subgraph, t.index): t for t in self.tensors}

    @cached_property
    def _producers(self) -> dict[tuple[int, int], OperatorInfo]:
        return {(op.subgraph, out): op for op in self.operators for out in op.outputs}

    def producer(self, tensor: TensorInfo) -> OperatorInfo | None:
        """The operator that writes ``tensor``, or None for inputs and constants."""
        return self._producers.get((tensor.subgraph, tensor.index))

    def source_op(self, tensor: TensorInfo) -> str | None:
        """The computing op behind ``tensor``, looking through requantize and reshape."""
        seen = set()
        while (op := self.producer(tensor)) is not None and op.op in _PASS_THROUGH and op.inputs:
            if (op.subgraph, op.index) in seen:
                break
            seen.add((op.subgraph, op.index))
            tensor = self.tensor(op.subgraph, op.inputs[0])
        return op.op if op is not None else None

    def variable_of(self, op: OperatorInfo) -> str:
        """The resource variable a READ_VARIABLE or ASSIGN_VARIABLE reads or writes: that of the
        VAR_HANDLE giving it its handle ("" when none does)."""
        if not op.inputs or op.inputs[0] < 0:
            return ""
        handle = self.producer(self.tensor(op.subgraph, op.inputs[0]))
        return handle.variable if handle is not None and handle.op == "VAR_HANDLE" else ""

    def consumers(self, tensor: TensorInfo) -> list[OperatorInfo]:
        return [
            op
            for op in self.operators
            if op.subgraph == tensor.subgraph and tensor.index in op.inputs
        ]

    def output_label(self, op: OperatorInfo) -> str:
        """The label of the first tensor ``op`` writes ("?" for an operator without outputs)."""
        for index in op.outputs:
            if index >= 0:
                return self.tensor(op.subgraph, index).label
        return "?"

    def operator_label(self, op: OperatorInfo) -> str:
        """How reports name an operator: ``CONV_2D 'conv1'``, or ``#12 SVDF`` when the tensor it
        writes has no name (see :func:`operator_label`)."""
        name = next((self.tensor(op.subgraph, i).name for i in op.outputs if i >= 0), "")
        return operator_label(op.op, name, op.index, op.subgraph)

    def operator_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.operators:
            counts[op.op] = counts.get(op.op, 0) + 1
        return dict(sorted(counts.items()))

    def dtype_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
        return dict(sorted(counts.items()))

    def tensor_table(self) -> pd.DataFrame:
        """One row per tensor: name, dtype, shape, quantization and the op that produces it."""
        import pandas as pd

        rows = []
        for t in self.tensors:
            producer = self.producer(t)
            rows.append(
                {
                    "subgraph": t.subgraph,
                    "index": t.index,
                    "name": t.name,
                    "dtype": t.dtype,
                    "shape": t.shape,
                    "shape_signature": t.shape_signature,
                    "constant": t.constant,
                    "bytes": t.data_bytes,
                    "scale": t.scale[0] if len(t.scale) == 1 else (t.scale or None),
                    "zero_point": t.zero_point[0] if len(t.zero_point) == 1 else (t.zero_point or None),
                    "per_channel": t.per_channel,
                    "producer": producer.op if producer else None,
                }
            )
        return pd.DataFrame(rows)


def unnamed_tensor_label(subgraph: int, index: int) -> str:
    """``tensor #12`` (``tensor #1:12`` outside the main subgraph): the name of a nameless tensor."""
    return f"tensor #{index}" if subgraph == 0 else f"tensor #{subgraph}:{index}"


def layer_name(tensor_name: str) -> str:
    """A tensor's name as reports show it: converters join a fused tensor's names with ';'
    (every op folded into it), and the first part names the layer."""
    return tensor_name.split(";")[0]


def operator_label(op: str, name: str, index: int | None, subgraph: int = 0) -> str:
    """How reports name an operator of type ``op`` that writes the tensor ``name``.

    Converters may leave every tensor unnamed (TFLite Micro's keyword_scrambled), so an
    operator whose output has no name is named by its position in the model, ``#12 SVDF``,
    never as ``''``; a fused tensor is named by its layer (:func:`layer_name`).
    """
    if name:
        return f"{op} '{layer_name(name)}'"
    if index is None:
        return f"an unnamed {op}"
    return f"#{index} {op}" if subgraph == 0 else f"#{subgraph}:{index} {op}"


def is_tflite(data: bytes) -> bool:
    """True when ``data`` carries the TFLite flatbuffer identifier."""
    return len(data) >= 8 and data[4:8] == _TFLITE_IDENTIFIER


def inspect_model(data: bytes) -> ModelInfo:
    """Read a TFLite flatbuffer. Raises ValueError when ``data`` is not a readable model."""
    from ai_edge_litert import schema_py_generated as schema

    if not is_tflite(data):
        raise ValueError("not a TFLite flatbuffer (the 'TFL3' identifier is missing)")
    try:
        return _read(schema, data)
    except _Invalid:
        raise
    except Exception as exc:  # the generated binding raises bare struct/index errors
        raise ValueError(f"the flatbuffer is damaged or truncated ({type(exc).__name__}: {exc})") from exc


class _Invalid(ValueError):
    """The flatbuffer reads, but what it says cannot be a model."""


def _read(schema: Any, data: bytes) -> ModelInfo:
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() == 0:
        raise _Invalid("the model has no subgraph")
    dtype_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    opcodes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 only fit the newer field; older files use only the deprecated one.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            opcodes.append(((custom or b"").decode("utf-8", "replace"), True))
        else:
            opcodes.append((op_names.get(builtin, f"BUILTIN_{builtin}"), False))

    tensors: list[TensorInfo] = []
    operators: list[OperatorInfo] = []
    resource_variables: dict[str, None] = {}
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for i in range(sg.TensorsLength()):
            tensors.append(_tensor(model, sg.Tensors(i), s, i, dtype_names))
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            if not 0 <= op.OpcodeIndex() < len(opcodes):
                raise _Invalid(f"operator {i} of subgraph {s} has operator code {op.OpcodeIndex()}, "
                               f"but the model declares {len(opcodes)}")
            name, custom = opcodes[op.OpcodeIndex()]
            variable = _variable_name(schema, op) if name == "VAR_HANDLE" and not custom else ""
            operators.append(
                OperatorInfo(
                    subgraph=s,
                    index=i,
                    op=name,
                    custom=custom,
                    inputs=_ints(op.InputsAsNumpy()),
                    outputs=_ints(op.OutputsAsNumpy()),
                    intermediates=_ints(op.IntermediatesAsNumpy()),
                    variable=variable,
                    init_subgraph=_init_subgraph(schema, op) if name == "CALL_ONCE" and not custom else -1,
                )
            )
            if name == "VAR_HANDLE" and not custom:
                resource_variables[variable or f"#{s}:{i}"] = None

    _check_references(model, operators)
    by_key = {(t.subgraph, t.index): t for t in tensors}
    main = model.Subgraphs(0)
    input_names, output_names = _signature_names(model)
    inputs = tuple(
        IOInfo(input_names.get(i, by_key[(0, i)].name), by_key[(0, i)])
        for i in _ints(main.InputsAsNumpy())
    )
    outputs = tuple(
        IOInfo(output_names.get(i, by_key[(0, i)].name), by_key[(0, i)])
        for i in _ints(main.OutputsAsNumpy())
    )
    return ModelInfo(len(data), tuple(tensors), tuple(operators), inputs, outputs, tuple(resource_variables))


def _variable_name(schema: Any, op: Any) -> str:
    """The variable a VAR_HANDLE operator names (``container/shared_name``; "" without options):
    the initializer subgraph and the main one each hold a VAR_HANDLE of the same variable."""
    table = op.BuiltinOptions()
    if op.BuiltinOptionsType() != schema.BuiltinOptions.VarHandleOptions or table is None:
        return ""
    options = schema.VarHandleOptions()
    options.Init(table.Bytes, table.Pos)
    container, shared = (options.Container() or b"").decode("utf-8", "replace"), (options.SharedName() or b"").decode(
        "utf-8", "replace")
    return f"{container}/{shared}" if container else shared


def _init_subgraph(schema: Any, op: Any) -> int:
    """The subgraph a CALL_ONCE operator runs (-1 without options)."""
    table = op.BuiltinOptions()
    if op.BuiltinOptionsType() != schema.BuiltinOptions.CallOnceOptions or table is None:
        return -1
    options = schema.CallOnceOptions()
    options.Init(table.Bytes, table.Pos)
    return int(options.InitSubgraphIndex())


def _check_references(model: Any, operators: list[OperatorInfo]) -> None:
    """Every tensor index an operator or a subgraph names must exist (-1: an optional input left out).

    The interpreter refuses such a model too; checked here so that no caller of ModelInfo
    meets an index that leads nowhere.
    """
    sizes = [model.Subgraphs(s).TensorsLength() for s in range(model.SubgraphsLength())]
    for op in operators:
        for index in (*op.inputs, *op.outputs, *op.intermediates):
            if not -1 <= index < sizes[op.subgraph]:
                raise _Invalid(f"operator {op.index} ({op.op}) of subgraph {op.subgraph} refers to tensor "
                               f"{index}, but the subgraph has {sizes[op.subgraph]} tensors")
    main = model.Subgraphs(0)
    for kind, indices in (("input", _ints(main.InputsAsNumpy())), ("output", _ints(main.OutputsAsNumpy()))):
        for index in indices:
            if not 0 <= index < sizes[0]:
                raise _Invalid(f"the model's {kind} is tensor {index}, but the subgraph has {sizes[0]} tensors")


def _tensor(model: Any, t: Any, subgraph: int, index: int, dtype_names: dict[int, str]) -> TensorInfo:
    q = t.Quantization()
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    qdim = 0
    if q is not None and q.ScaleLength() > 0:
        scale = tuple(float(v) for v in q.ScaleAsNumpy())
        zero_point = _ints(q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,) * len(scale)
        qdim = q.QuantizedDimension()
    data_bytes = 0
    if 0 < t.Buffer() < model.BuffersLength():
        buf = model.Buffers(t.Buffer())
        # Models over 2 GB keep data outside the flatbuffer, addressed by offset and size.
        data_bytes = buf.DataLength() or int(buf.Size())
    return TensorInfo(
        subgraph=subgraph,
        index=index,
        name=(t.Name() or b"").decode("utf-8", "replace"),
        dtype=dtype_names.get(t.Type(), f"type_{t.Type()}"),
        shape=_ints(t.ShapeAsNumpy()),
        shape_signature=_ints(t.ShapeSignatureAsNumpy()) or _ints(t.ShapeAsNumpy()),
        scale=scale,
        zero_point=zero_point,
        quantized_dimension=qdim,
        constant=data_bytes > 0,
        data_bytes=data_bytes,
        variable=bool(t.IsVariable()),
    )


def _signature_names(model: Any) -> tuple[dict[int, str], dict[int, str]]:
    """Tensor index -> signature name for the first signature of subgraph 0."""
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        if sig.SubgraphIndex() != 0:
            continue
        ins = {sig.Inputs(j).TensorIndex(): sig.Inputs(j).Name().decode() for j in range(sig.InputsLength())}
        outs = {sig.Outputs(j).TensorIndex(): sig.Outputs(j).Name().decode() for j in range(sig.OutputsLength())}
        return ins, outs
    return {}, {}


def _ints(values: Any) -> tuple[int, ...]:
    # The binding returns 0 (not an empty array) for an absent vector.
    if isinstance(values, int):
        return ()
    return tuple(int(v) for v in values)
