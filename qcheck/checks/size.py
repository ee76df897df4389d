"""How big is the deployed file? ``size``, with the constant bytes of each layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.units import format_quantity

_TOP = 3  # layers named in the hint; the JSON report has them all


@check("size", unit="bytes")
def size(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Size of the .tflite file in bytes (not the flash or NPU-encoded weights Vela reports)."""
    from qcheck.tflite.breakdown import constant_bytes

    info = evidence.info()
    layers = evidence.size_breakdown()  # the report has it among the model's facts
    constants = constant_bytes(info)
    details = (f"the .tflite file is {_bytes(info.size_bytes)}: {_bytes(constants)} of constant data "
               f"(weights, biases, shapes) and {_bytes(info.size_bytes - constants)} of graph structure, "
               "names, quantization parameters and metadata")
    top = layers[:_TOP]
    if top:
        share = sum(layer.total_bytes for layer in top) / constants
        listed = "; ".join(
            f"{layer.describe()} {_bytes(layer.total_bytes)}"
            + (f" (weights {_bytes(layer.weights_bytes)}, bias {_bytes(layer.bias_bytes)})" if layer.bias_bytes else "")
            for layer in top
        )
        hint = (f"shrink the layers with the most constant data, {len(top)} of them hold {share:.0%}: {listed}; "
                "or prune")
    else:
        hint = "the file holds no constant data: its size is the graph itself"
    return Measurement(float(info.size_bytes), details, hint)


def _bytes(value: float) -> str:
    return format_quantity(value, "bytes")
