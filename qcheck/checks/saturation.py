"""Do values hit the integer limits? ``saturation`` of the quantized input and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.checks import check
from qcheck.checks.accuracy import QUANTIZED_ELSEWHERE
from qcheck.checks.evidence import Evidence
from qcheck.errors import QcheckError, StepFailed
from qcheck.results import Measurement
from qcheck.tflite.inspect import ModelInfo, TensorInfo, layer_name
from qcheck.tflite.run import HeadOutput, InputClipping
from qcheck.units import one_of

if TYPE_CHECKING:
    from qcheck.tflite.convert import FloatReference

# Ops that move or requantize values without computing: look through them for the real source.
_PASS_THROUGH = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
# After these, values at the limits are the function's own range, not clipping.
_BOUNDED_OPS = frozenset({"SOFTMAX", "LOG_SOFTMAX"})


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


def _head_tensors(info: ModelInfo, heads: Mapping[str, HeadOutput]) -> dict[str, TensorInfo]:
    """The model's output tensor behind each head. Heads are keyed by the float reference's names
    when it has its own (a .tflite checked against a Keras model: 'dense_9' for 'Identity'): a
    head not named as a tensor is paired with the one output left, else with the one output left
    of its shape."""
    by_name = {io.name: io.tensor for io in info.outputs}
    found = {head: by_name[head] for head in heads if head in by_name}
    left = [io.tensor for io in info.outputs if io.name not in heads]
    unnamed = [head for head in heads if head not in found]
    if len(unnamed) == 1 and len(left) == 1:
        found[unnamed[0]] = left[0]
        return found
    for head in unnamed:
        shape = tuple(heads[head].raw.shape[1:])
        same = [t for t in left if tuple(t.shape[1:]) == shape]
        if len(same) == 1 and sum(tuple(heads[h].raw.shape[1:]) == shape for h in unnamed) == 1:
            found[head] = same[0]
    return found


def _optional_reference(evidence: Evidence) -> tuple[FloatReference | None, str]:
    """The float model's outputs, which sharpen the outputs' measure but are not needed for it:
    when they cannot be had, saturation is measured without them and says why (the checks that
    need the float model report its failure)."""
    try:
        return evidence.reference(), ""
    except (QcheckError, StepFailed) as exc:
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f", because the float model could not be run: {cause}"


@check("saturation", unit="fraction", options={"scope": one_of("io", "all")},
       sections=("saturation",))
def saturation(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Share of input and output values clipped at the integer limits.

    ``scope = "all"`` also judges every intermediate tensor compared with the float model.
    The default judges input and outputs only: clipped logits before a softmax, say, are often
    harmless (the bundled digits CNN clips 10% of them and loses no accuracy); they are still
    listed in the report and named in the message.
    """
    scope = str(options.get("scope", "io"))  # validated when the suite loads
    run = evidence.evaluation()
    if run is None:
        return Measurement(None, skip="needs evaluation data: pass --qcheck-data=val.npz")
    info = evidence.info()
    reference, unavailable = _optional_reference(evidence)
    analysis = run.analysis
    # A reference that is not the model's float twin (trained separately) has outputs and
    # activations of its own: values outside this model's ranges say nothing of its clipping.
    weights = analysis.weights if analysis is not None else None
    not_twin = weights is not None and weights.different_models
    if not_twin and reference is not None:
        assert weights is not None
        reference, unavailable = None, (
            f", because the reference is not this model's float twin (its weights differ from the model's by "
            f"{weights.median_difference:.0%}: a different model)")
    shares: dict[str, float] = {}
    notes = []
    # One input: "input"; several: each by name, with its own scale and zero point.
    inputs = {f"input '{name}'": c for name, c in sorted(run.inputs.items())} or {
        "input": InputClipping(run.input_clipped, run.input_values, run.input_params, run.input_entry)}
    for label, clipping in inputs.items():
        if clipping.params is None:
            continue
        shares[label] = clipping.share
        lo, hi = clipping.params.float_range
        where = ""
        if clipping.entry is not None:  # int8 inside, float32 at the input: clipped by the entry QUANTIZE
            where = (f" at the entry QUANTIZE's {clipping.params.dtype} output '{clipping.entry}', "
                     "where the float32 input is quantized")
        notes.append(f"{label}: {clipping.share:.2%} clipped{where} (representable {lo:.4g}..{hi:.4g})")
    exempt = []
    outputs = _head_tensors(info, run.outputs)
    for head, out in run.outputs.items():
        tensor = outputs.get(head)
        if out.params is None:
            continue
        if tensor is None:
            notes.append(f"output '{head}': not measured (no output tensor of the model could be paired with it)")
            continue
        if info.source_op(tensor) in _BOUNDED_OPS:
            exempt.append(head)
            continue
        f = reference.outputs.get(head) if reference is not None else None
        share = _at_limits(out.raw, out.params.dtype, out.params.zero_point, f, out.params.float_range)
        shares[f"output '{head}'"] = share
        notes.append(f"output '{head}': {share:.2%} clipped")
    if exempt:
        notes.append("softmax output(s) exempt: " + ", ".join(f"'{h}'" for h in exempt))
    if reference is None:
        notes.append("outputs judged without the float model (values pinned at a limit)" + unavailable)
    sections: dict[str, Any] = {"saturation": dict(shares)}
    if not_twin:
        notes.append("intermediate tensors not judged: they were compared with the reference's, "
                     "which is a different model")
    elif analysis is not None:
        bounded = {t.name for t in info.tensors if t.subgraph == 0 and info.source_op(t) in _BOUNDED_OPS}
        clipped = sorted((r for r in analysis.tensors if r.rmse_steps is not None and (r.saturation or 0.0) > 0
                          and r.name not in bounded), key=lambda r: -(r.saturation or 0.0))
        if clipped:
            listed = ", ".join(f"{r.op} '{layer_name(r.name)}' {r.saturation:.2%}" for r in clipped[:3])
            notes.append(f"most clipped intermediate tensors: {listed}")
            if scope == "all":
                for r in clipped:
                    shares[f"{r.op} '{layer_name(r.name)}'"] = r.saturation or 0.0
    calibration = evidence.calibration_diagnosis()  # the report has it among the model's facts
    if calibration is not None:
        notes.extend(calibration.warnings)
    if not shares:
        return Measurement(None, skip="the model has no quantized input or output to measure",
                           sections=sections)
    worst = max(shares, key=lambda k: shares[k])
    return Measurement(
        shares[worst],
        f"worst: {worst}; " + "; ".join(notes),
        ("inputs clipped: check that the data is preprocessed as the model's input expects (its representable "
         "range is above); " + QUANTIZED_ELSEWHERE) if evidence.kind == "tflite" else
        "inputs clipped: the calibration data does not cover the evaluation data's range "
        "(preprocess both the same way); outputs clipped: calibrate with more representative samples",
        sections=sections,
    )
