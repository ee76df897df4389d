"""How big is the deployed file? ``size``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.units import format_quantity


@check("size", unit="bytes")
def size(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Size of the quantized .tflite file in bytes."""
    info = evidence.info()
    weights = sum(t.data_bytes for t in info.tensors if t.constant)
    return Measurement(
        float(info.size_bytes),
        f".tflite file is {format_quantity(info.size_bytes, 'bytes')} "
        f"({format_quantity(weights, 'bytes')} of it constant tensors: weights, biases, shapes)",
        "shrink the widest layers, or prune; int8 weights are already 4x smaller than float",
    )
