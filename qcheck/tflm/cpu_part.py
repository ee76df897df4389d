"""The part of a Vela-compiled model that runs on the Cortex-M, cut out as a model of its own.

Vela compiles what the NPU runs into CUSTOM ``ethos-u`` operators; every other operator of its
output (``<net>_vela.tflite``) runs in TensorFlow Lite Micro, on the CPU's kernels. The CPU part
is those operators with the tensors they touch: the tensors they read that an ``ethos-u``
operator writes (or that are the model's inputs) become its inputs, and the tensors they write
that an ``ethos-u`` operator reads (or that are the model's outputs) become its outputs. Loading
it in TFLite Micro tells whether the device can run the model at all without the NPU's kernel
standing in for those operators.

Pure: bytes in, bytes out, through LiteRT's generated schema (its object API) and the
``flatbuffers`` package LiteRT depends on; nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.vela import NPU_CUSTOM_CODE

if TYPE_CHECKING:
    from qcheck.tflite.inspect import ModelInfo, OperatorInfo

# Vela's plan of the whole model's arena (tensor index -> offset): meaningless for a model with
# other tensors, so the CPU part leaves it out and TFLM plans its tensors itself.
_OFFLINE_PLAN = b"OfflineMemoryAllocation"


@dataclass(frozen=True)
class CpuPart:
    """The CPU-placed operators of a compiled model as a model of their own (empty ``tflite``
    when Vela put everything on the NPU). Indices are those of the compiled model's main
    subgraph; inputs and outputs are listed in the sub-model's order."""

    tflite: bytes
    operators: tuple[int, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    npu_ops: int  # the compiled model's 'ethos-u' operators

    @property
    def empty(self) -> bool:
        return not self.operators


def is_npu(op: OperatorInfo) -> bool:
    """True for the operator that hands work to the Ethos-U NPU."""
    return op.custom and op.op == NPU_CUSTOM_CODE


def cut_cpu_part(compiled: bytes) -> CpuPart:
    """The CPU part of ``compiled`` (a model Vela wrote). Raises ValueError when it is not a
    readable model, or when it is one this cut does not handle (an 'ethos-u' operator outside
    the main subgraph, weights stored outside the flatbuffer)."""
    from qcheck.tflite.inspect import inspect_model

    info = inspect_model(compiled)  # checks every reference the cut follows
    main = [op for op in info.operators if op.subgraph == 0]
    if any(is_npu(op) for op in info.operators if op.subgraph != 0):
        raise ValueError("an 'ethos-u' operator lies outside the main subgraph: its CPU part cannot be cut out")
    npu = [op for op in main if is_npu(op)]
    cpu = [op for op in main if not is_npu(op)]
    if not cpu:
        return CpuPart(b"", (), (), (), len(npu))
    inputs, outputs = _boundary(info, npu, cpu)
    try:
        tflite = _build(compiled, cpu, inputs, outputs)
    except (IndexError, KeyError, TypeError) as exc:  # a buffer or operator code the file does not hold
        raise ValueError(f"the compiled model is damaged ({type(exc).__name__}: {exc}): its CPU part cannot be "
                         "cut out") from exc
    return CpuPart(tflite, tuple(op.index for op in cpu), inputs, outputs, len(npu))


def _boundary(info: ModelInfo, npu: list[OperatorInfo], cpu: list[OperatorInfo]) -> tuple[tuple[int, ...],
                                                                                           tuple[int, ...]]:
    """The CPU part's inputs and outputs, as tensor indices of the main subgraph, in the order
    the CPU operators first read or write them."""
    model_inputs = {io.tensor.index for io in info.inputs}
    model_outputs = {io.tensor.index for io in info.outputs}
    from_npu = {t for op in npu for t in op.outputs if t >= 0}
    to_npu = {t for op in npu for t in op.inputs if t >= 0}
    written = {t for op in cpu for t in op.outputs if t >= 0}
    read = [t for op in cpu for t in op.inputs if t >= 0]
    inputs = [t for t in dict.fromkeys(read) if t not in written and (t in from_npu or t in model_inputs)]
    outputs = [t for op in cpu for t in op.outputs if t >= 0 and (t in to_npu or t in model_outputs)]
    return tuple(inputs), tuple(dict.fromkeys(outputs))


def _build(compiled: bytes, cpu: list[OperatorInfo], inputs: tuple[int, ...], outputs: tuple[int, ...]) -> bytes:
    """The model of the ``cpu`` operators of the main subgraph; the other subgraphs (the bodies
    of IF and WHILE) are kept whole, since CPU operators may call them by index."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(compiled, 0)
    graph = model.subgraphs[0]
    kept_ops = [graph.operators[op.index] for op in cpu]
    touched = {int(t) for op in kept_ops for part in (op.inputs, op.outputs, op.intermediates) if part is not None
               for t in part if t >= 0}
    order = sorted(touched | set(inputs) | set(outputs))
    new_index = {old: new for new, old in enumerate(order)}

    def renumber(values: Any) -> Any:
        if values is None:
            return None
        return np.array([new_index[int(t)] if t >= 0 else -1 for t in values], dtype=np.int32)

    for op in kept_ops:
        op.inputs, op.outputs, op.intermediates = (renumber(op.inputs), renumber(op.outputs),
                                                   renumber(op.intermediates))
    graph.tensors = [graph.tensors[old] for old in order]
    graph.operators = kept_ops
    graph.inputs = np.array([new_index[t] for t in inputs], dtype=np.int32)
    graph.outputs = np.array([new_index[t] for t in outputs], dtype=np.int32)
    _keep_used_codes(model)
    _keep_used_buffers(model)
    model.signatureDefs = []  # they name the whole model's tensors by index
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _keep_used_codes(model: Any) -> None:
    """Drop the operator codes no operator uses ('ethos-u' among them), renumbering the rest."""
    operators = [op for graph in model.subgraphs for op in graph.operators or []]
    used = sorted({op.opcodeIndex for op in operators})
    new_code = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[old] for old in used]
    for op in operators:
        op.opcodeIndex = new_code[op.opcodeIndex]


def _keep_used_buffers(model: Any) -> None:
    """Drop the buffers no kept tensor uses (the NPU's command stream and weights), renumbering
    the rest; buffer 0, the empty one by convention, stays first."""
    tensors = [t for graph in model.subgraphs for t in graph.tensors or []]
    metadata = [m for m in model.metadata or [] if m.name != _OFFLINE_PLAN]
    held = len(model.buffers or [])
    for what, buffer in [*((f"tensor '{_text(t.name)}'", t.buffer) for t in tensors),
                         *((f"metadata '{_text(m.name)}'", m.buffer) for m in metadata)]:
        if buffer >= held:
            raise ValueError(f"{what} refers to buffer {buffer}, but the compiled model has {held} buffers: its CPU "
                             "part cannot be cut out")
    used = [0, *sorted({t.buffer for t in tensors if t.buffer > 0} | {m.buffer for m in metadata if m.buffer > 0})]
    new_buffer = {old: new for new, old in enumerate(used)}
    for buffer in (model.buffers[old] for old in used):
        if buffer.offset > 1:  # data placed after the flatbuffer (models over 2 GB): not carried by Pack
            raise ValueError("the compiled model stores tensor data outside its flatbuffer: its CPU part cannot be "
                             "cut out")
    model.buffers = [model.buffers[old] for old in used]
    for t in tensors:
        t.buffer = new_buffer[t.buffer]
    for m in metadata:
        m.buffer = new_buffer[m.buffer]
    model.metadata = metadata


def _text(name: bytes | str | None) -> str:
    """A name of the schema's object API (bytes) as text."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return name or ""


def early_reads(info: ModelInfo) -> tuple[tuple[OperatorInfo, OperatorInfo, str], ...]:
    """The READ_VARIABLE operators of the main graph that come before the CALL_ONCE whose
    initializer subgraph assigns their variable, each with that CALL_ONCE and the variable.

    TFLite Micro runs operators in the model's order and CALL_ONCE's initializer at its place
    (``CallOnceEval``, on the first invoke); a variable read before it holds what TFLM filled its
    buffer with when ASSIGN_VARIABLE was prepared (its zero point: ``MicroResourceVariables::
    Allocate``), not its initial value. The converter puts CALL_ONCE first; Vela 5.2 may not.
    """
    main = [op for op in info.operators if op.subgraph == 0]
    initialised: dict[str, OperatorInfo] = {}  # variable -> the first CALL_ONCE that assigns it
    for call in main:
        if call.op != "CALL_ONCE" or call.custom or call.init_subgraph < 0:
            continue
        for op in info.operators:
            if op.subgraph == call.init_subgraph and op.op == "ASSIGN_VARIABLE" and info.variable_of(op):
                initialised.setdefault(info.variable_of(op), call)
    found = []
    for read in main:
        variable = info.variable_of(read) if read.op == "READ_VARIABLE" else ""
        first = initialised.get(variable) if variable else None
        if first is not None and first.index > read.index:
            found.append((read, first, variable))
    return tuple(found)


def call_once_first(tflite: bytes) -> bytes:
    """``tflite`` with the CALL_ONCE operators of its main graph moved to its front, in their
    order, as the converter places them (CALL_ONCE reads and writes no tensor, so no operator
    waits on it): its resource variables initialised before anything reads them."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph = model.subgraphs[0]
    codes = [max(model.operatorCodes[op.opcodeIndex].builtinCode,
                 model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) for op in graph.operators]
    first = schema.BuiltinOperator.CALL_ONCE
    graph.operators = ([op for op, code in zip(graph.operators, codes) if code == first]
                       + [op for op, code in zip(graph.operators, codes) if code != first])
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
