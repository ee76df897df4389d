"""The parts of a quantization recipe that change how TensorFlow's converter quantizes.

``per_channel_dense`` maps to the converter's
``_experimental_disable_per_channel_quantization_for_dense_layers`` (TensorFlow 2.21);
``keep_float`` to the MLIR quantizer's ``denylisted_nodes`` (what the QuantizationDebugger's
denylist uses): the converter calibrates only, then the calibrated model is quantized with the
named layers' operators left float. Layers are named as in Keras; the float model's tensor names
carry them (``<model>/<layer>/<op>``, a fused tensor's names joined with ';'), and that is how they
are mapped to the operators to keep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcheck.errors import QcheckError

_SUFFIX = re.compile(r"_\d+$")  # Keras 3 names a layer's scope "conv1_1" when "conv1" was taken


@dataclass
class Recipe:
    """The converter settings of a recipe beyond the activation type, applied to one conversion."""

    per_channel_dense: bool = True
    keep_float: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # what was kept float, for the report

    def apply(self, converter: Any, path: Path) -> None:
        """Set ``converter`` up to follow the recipe (before ``convert()``)."""
        if not self.per_channel_dense:
            if not hasattr(converter, "_experimental_disable_per_channel_quantization_for_dense_layers"):
                raise QcheckError(path, "per_channel_dense = false needs a TensorFlow converter with "
                                  "_experimental_disable_per_channel_quantization_for_dense_layers (TensorFlow 2.21 "
                                  "has it); this one does not", "drop per_channel_dense from [quantization]")
            converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        if self.keep_float:
            self._keep_float(converter, path)

    def _keep_float(self, converter: Any, path: Path) -> None:
        quantize = getattr(converter, "_quantize", None)
        if not callable(quantize) or not hasattr(converter, "_experimental_calibrate_only"):
            raise QcheckError(path, "keep_float needs TensorFlow's calibrate-only conversion (TensorFlow 2.21 has it); "
                              "this converter does not", "drop keep_float from [quantization]")

        def keeping(model: Any, input_type: Any, output_type: Any, *args: Any) -> Any:
            from tensorflow.lite.python import convert

            nodes = self._nodes(bytes(model), path)
            converter._experimental_calibrate_only = True
            try:
                calibrated = quantize(model, input_type, output_type, *args)
            finally:
                converter._experimental_calibrate_only = False
            return convert.mlir_quantize(
                calibrated,
                disable_per_channel=converter._experimental_disable_per_channel,
                input_data_type=input_type,
                output_data_type=output_type,
                denylisted_nodes=nodes,
                disable_per_channel_for_dense_layers=not self.per_channel_dense,
            )

        converter._quantize = keeping

    def _nodes(self, float_tflite: bytes, path: Path) -> list[str]:
        """The output tensor names of the operators of the ``keep_float`` layers."""
        nodes: list[str] = []
        kept = layer_operators(float_tflite, self.keep_float, path, "keep_float", nodes)
        self.notes = (f"kept float as keep_float asks: {', '.join(kept)}",)
        return list(dict.fromkeys(nodes))


def layer_operators(float_tflite: bytes, layers: tuple[str, ...], path: Path, key: str,
                    nodes: list[str] | None = None) -> list[str]:
    """``'conv1' (CONV_2D)`` for each Keras layer in ``layers``, from the operators of the float
    model whose output tensor names carry it; the tensor names are added to ``nodes``.

    A layer no operator comes from is an error naming the layers the model has; so is a name
    every operator comes from (the model's own name, not a layer's).
    """
    from qcheck.tflite.inspect import inspect_model

    info = inspect_model(float_tflite)
    outputs = [(op.op, name) for op in info.operators if op.subgraph == 0
               for name in (info.tensor(op.subgraph, i).name for i in op.outputs if i >= 0) if name]
    described: list[str] = []
    for layer in layers:
        found = [(op, name) for op, name in outputs if layer in layers_of(name)]
        if found and len(found) == len(outputs) and len(outputs) > 1:
            raise QcheckError(path, f"{key} names '{layer}', which every operator of the converted model "
                              "comes from (the model's own name?): name its layers instead: "
                              + ", ".join(sorted(model_layers(outputs))))
        if not found:
            raise QcheckError(path, f"{key} names the layer '{layer}', which no operator of the converted "
                              "model comes from; its layers are: " + ", ".join(sorted(model_layers(outputs))),
                              "name Keras layers as model.summary() shows them")
        if nodes is not None:
            nodes.extend(name for _, name in found)
        described.append(f"'{layer}' ({', '.join(dict.fromkeys(op for op, _ in found))})")
    return described


def layers_of(tensor_name: str) -> set[str]:
    """The Keras layer names a converted tensor's name may come from.

    ``flatten_outlier_1/conv1_1/Relu;...`` comes from ``conv1`` (Keras 3 adds ``_1`` to a scope
    whose name was taken): every part of each ';'-joined name counts, with and without the suffix.
    """
    names: set[str] = set()
    for fused in tensor_name.split(";"):
        for part in fused.split("/")[:-1] or fused.split("/"):
            names.add(part)
            names.add(_SUFFIX.sub("", part))
    return names


def layer_scope(tensor_name: str) -> str:
    """The Keras layer a converted tensor comes from: ``<...>/<layer>/<op>``, Keras 3's ``_1`` dropped;
    "" for a name with no layer in it (``StatefulPartitionedCall_1:0``)."""
    parts = tensor_name.split(";")[0].split("/")
    return _SUFFIX.sub("", parts[-2]) if len(parts) >= 2 else ""


def model_layers(outputs: list[tuple[str, str]]) -> set[str]:
    """Layer names to suggest: the scope that holds each operator (``.../<layer>/<op>``)."""
    return {layer for _, name in outputs if (layer := layer_scope(name))}
