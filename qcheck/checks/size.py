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
    from qcheck.tflite.breakdown import constant_bytes, size_breakdown

    info = evidence.info()
    layers = size_breakdown(info)
    constants = constant_bytes(info)
    fmt = lambda v: format_quantity(v, "bytes")  # noqa: E731
    details = (f"the .tflite file is {fmt(info.size_bytes)}: {fmt(constants)} of constant data (weights, "
               f"biases, shapes) and {fmt(info.size_bytes - constants)} of graph structure, names and metadata")
    top = [layer for layer in layers[:_TOP] if layer.total_bytes]
    if top:
        share = sum(layer.total_bytes for layer in top) / constants
        listed = "; ".join(
            f"{layer.describe()} {fmt(layer.total_bytes)}"
            + (f" (weights {fmt(layer.weights_bytes)}, bias {fmt(layer.bias_bytes)})" if layer.bias_bytes else "")
            for layer in top
        )
        hint = (f"shrink the layers with the most constant data, {len(top)} of them hold {share:.0%}: {listed}; "
                "or prune")
    else:
        hint = "the file holds no constant data: its size is the graph itself"
    return Measurement(
        float(info.size_bytes),
        details,
        hint,
        sections={"size_breakdown": [layer.to_dict() for layer in layers]},
    )
