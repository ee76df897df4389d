"""Do values hit the integer limits? ``saturation`` of the quantized input and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.tflite.inspect import ModelInfo, TensorInfo

# Ops that move or requantize values without computing: look through them for the real source.
_PASS_THROUGH = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
# After these, values at the limits are the function's own range, not clipping.
_BOUNDED_OPS = frozenset({"SOFTMAX", "LOG_SOFTMAX"})


def source_op(info: ModelInfo, tensor: TensorInfo) -> str | None:
    """The computing op behind ``tensor``, looking through requantize and reshape."""
    seen = set()
    while (op := info.producer(tensor)) is not None and op.op in _PASS_THROUGH and op.inputs:
        if (op.subgraph, op.index) in seen:
            break
        seen.add((op.subgraph, op.index))
        tensor = info.tensor(op.subgraph, op.inputs[0])
    return op.op if op is not None else None


def _at_limits(raw: np.ndarray, dtype: str, zero_point: int, float_values: np.ndarray | None,
               float_range: tuple[float, float]) -> float:
    """Share of an output's values clipped at the dtype limits.

    With the float model's outputs the test is exact: the float value lies outside the range
    the output can represent. Without them, values pinned at a limit count, except at a limit
    equal to the zero point (a ReLU's floor is not clipping).
    """
    if float_values is not None:
        lo, hi = float_range
        return float(np.mean((float_values < lo) | (float_values > hi)))
    info = np.iinfo(dtype)
    limits = [v for v in (info.min, info.max) if v != zero_point]
    return float(np.mean(np.isin(raw, limits)))


@check("saturation", unit="fraction")
def saturation(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Share of input and output values clipped at the integer limits."""
    run = evidence.evaluation()
    if run is None:
        return Measurement(None, skip="needs evaluation data: pass --qcheck-data=val.npz")
    info = evidence.info()
    reference = evidence.reference()
    shares: dict[str, float] = {}
    notes = []
    if run.input_params is not None:
        shares["input"] = run.input_clipped_share
        lo, hi = run.input_params.float_range
        notes.append(f"input: {run.input_clipped_share:.2%} clipped (representable {lo:.4g}..{hi:.4g})")
    exempt = []
    outputs = {io.name: io.tensor for io in info.outputs}
    for head, out in run.outputs.items():
        tensor = outputs.get(head)
        if out.params is None or tensor is None:
            continue
        if source_op(info, tensor) in _BOUNDED_OPS:
            exempt.append(head)
            continue
        f = reference.outputs.get(head) if reference is not None else None
        share = _at_limits(out.raw, out.params.dtype, out.params.zero_point, f, out.params.float_range)
        shares[f"output '{head}'"] = share
        notes.append(f"output '{head}': {share:.2%} clipped")
    if exempt:
        notes.append("softmax output(s) exempt: " + ", ".join(f"'{h}'" for h in exempt))
    if not shares:
        return Measurement(None, skip="the model has no quantized input or output to measure")
    worst = max(shares, key=lambda k: shares[k])
    if reference is None:
        notes.append("outputs judged without the float model (values pinned at a limit)")
    return Measurement(
        shares[worst],
        f"worst: {worst}; " + "; ".join(notes),
        "inputs clipped: the calibration data does not cover the evaluation data's range "
        "(preprocess both the same way); outputs clipped: calibrate with more representative samples",
        sections={"saturation": {k: v for k, v in shares.items()}},
    )
