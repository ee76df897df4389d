"""Where is accuracy lost? ``layer_error``, and the layer names that accuracy failures cite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.tflite.tensor_stats import ROUNDING_ONLY, SUSPICIOUS, Analysis, TensorReport, likely_cause, worst_layers


def _short(name: str) -> str:
    # Fused tensor names list every op folded into them; the first is the layer's output.
    return name.split(";")[0]


def _cause(report: TensorReport) -> str:
    spread = report.spread
    assert spread is not None
    ratio = spread.widest_range / spread.median_range if spread.median_range > 0 else float("inf")
    return (f"likely cause: {report.op} '{_short(report.name)}' - channel {spread.widest} spans "
            f"{ratio:.0f}x the median channel's range, so its per-tensor scale ({report.scale:.4g}) leaves "
            f"{spread.under_one_step} of {spread.channels} channels less than one quantization step")


def explain_layers(analysis: Analysis) -> str:
    """A sentence naming the worst layers and, when one is found, the layer that causes it."""
    worst = [r for r in worst_layers(analysis) if (r.rmse_steps or 0) > SUSPICIOUS]
    parts = []
    if worst:
        listed = ", ".join(f"{r.op} '{_short(r.name)}' ({r.rmse_steps:.2f} steps)" for r in worst)
        parts.append(f"layers with the largest error vs the float model: {listed}")
    cause = likely_cause(analysis)
    if cause is not None:
        parts.append(_cause(cause))
    return "; ".join(parts)


def layer_hint(analysis: Analysis) -> str:
    cause = likely_cause(analysis)
    if cause is None:
        return "compare the named layers' weights and activations with the float model"
    return (f"rebalance the outlier channel of '{_short(cause.name)}' (e.g. equalize it with the next layer's "
            "weights, or clip it in training) or quantize that activation per channel")


def layer_sections(analysis: Analysis) -> dict[str, Any]:
    """The per-tensor and per-layer tables for reports."""
    tensors = [r.to_dict() for r in analysis.tensors]
    layers = [r.to_dict() for r in analysis.tensors if r.rmse_steps is not None]
    return {"tensors": tensors, "layers": layers}


@check("layer_error", unit="count")
def layer_error(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Worst per-layer error in quantization steps (rmse/scale vs the float model)."""
    run = evidence.evaluation()
    if run is None:
        return Measurement(None, skip="needs evaluation data: pass --qcheck-data=val.npz")
    analysis = run.analysis
    if analysis is None or analysis.matched == 0:
        return Measurement(None, skip="no float twin to compare layers with: "
                           "give a Keras model, or a float .tflite as --qcheck-reference")
    worst = worst_layers(analysis, 1)[0]
    details = (f"worst layer {worst.op} '{_short(worst.name)}': {worst.rmse_steps:.2f} steps "
               f"(rounding alone is {ROUNDING_ONLY:.2f}, above {SUSPICIOUS} is suspicious; SQNR {worst.sqnr_db or 0:.1f} dB) over "
               f"{analysis.samples} samples, {analysis.matched} layers compared")
    explanation = explain_layers(analysis)
    return Measurement(worst.rmse_steps, details + (f"; {explanation}" if explanation else ""),
                       layer_hint(analysis), sections=layer_sections(analysis))
