"""Can a microcontroller runtime load it? ``static_shapes``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement


@check("static_shapes", unit="count")
def static_shapes(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Dynamic dimensions (shape_signature -1) in the model's inputs and outputs."""
    info = evidence.info()
    dynamic = [(kind, io) for kind, ios in (("input", info.inputs), ("output", info.outputs))
               for io in ios if io.tensor.dynamic]
    if not dynamic:
        return Measurement(0.0, "every input and output has a static shape")
    listed = "; ".join(f"{kind} '{io.name}' {list(io.tensor.shape_signature)}" for kind, io in dynamic)
    hint = ("convert from a model whose Input has a fixed batch, e.g. keras.Input(shape, batch_size=1); "
            "Vela silently rewrites a dynamic batch to 1 and TFLite Micro fails on Reshape")
    if evidence.kind == "tflite":
        hint = "this .tflite is reported as it is, not rewritten: " + hint
    return Measurement(float(len(dynamic)), f"dynamic dimensions in {listed}", hint)
