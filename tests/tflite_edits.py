"""Edit real ``.tflite`` models into the odd cases the target tests need.

Edits go through LiteRT's generated schema (its object API) and the ``flatbuffers`` package
LiteRT depends on, so every result is a well-formed TFLite flatbuffer that qcheck can inspect.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def edit_model(source: Path, target: Path, change: Callable[[Any, Any], None]) -> Path:
    """Write ``source`` with ``change(model, schema)`` applied to its object tree to ``target``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(source.read_bytes(), 0))
    change(model, schema)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target.write_bytes(bytes(builder.Output()))
    return target


def without_declared_inputs(source: Path, target: Path) -> Path:
    """The graph's input tensor stays, but the subgraph no longer lists it as an input.

    Vela 5.2 refuses such a model (exit code 1, "Does not have valid TFLite Semantics").
    """

    def change(model: Any, schema: Any) -> None:
        model.subgraphs[0].inputs = np.array([], dtype=np.int32)
        model.signatureDefs = []

    return edit_model(source, target, change)


def with_unknown_last_op(source: Path, target: Path, builtin: str = "STABLEHLO_TANH") -> Path:
    """Append an operator of type ``builtin`` (one Vela and TFLite Micro have no kernel for)
    after the graph's output, which it becomes."""

    def change(model: Any, schema: Any) -> None:
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, builtin)
        code.deprecatedBuiltinCode = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
        code.version = 1
        append_after_output(model, schema, code, b"appended")

    return edit_model(source, target, change)


def append_after_output(model: Any, schema: Any, code: Any, name: bytes, tensor_type: int | None = None) -> None:
    """Inside an edit: an operator of ``code`` reads the graph's output and writes a new tensor
    ``name`` (of ``tensor_type``, else the output's type), which becomes the output."""
    model.operatorCodes.append(code)
    graph = model.subgraphs[0]
    old_output = int(graph.outputs[0])
    tensor = schema.TensorT()
    tensor.name = name
    tensor.type = graph.tensors[old_output].type if tensor_type is None else tensor_type
    tensor.shape = np.array(graph.tensors[old_output].shape, dtype=np.int32)
    tensor.quantization = graph.tensors[old_output].quantization
    tensor.buffer = 0
    graph.tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs = np.array([old_output], dtype=np.int32)
    op.outputs = np.array([len(graph.tensors) - 1], dtype=np.int32)
    graph.operators.append(op)
    graph.outputs = np.array([len(graph.tensors) - 1], dtype=np.int32)
    model.signatureDefs = []


def with_mismatched_weights(source: Path, target: Path) -> Path:
    """Double the declared width of the second FULLY_CONNECTED's weights without their data.

    Vela 5.2 crashes on this int8 model with a floating point exception (SIGFPE).
    """

    def change(model: Any, schema: Any) -> None:
        graph = model.subgraphs[0]
        weights = graph.tensors[int(graph.operators[1].inputs[1])]
        weights.shape = np.array([weights.shape[0], weights.shape[1] * 2], dtype=np.int32)

    return edit_model(source, target, change)
