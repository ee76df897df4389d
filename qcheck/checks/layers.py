"""Where is accuracy lost? ``layer_error``, and the layer names that accuracy failures cite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.errors import QcheckError
from qcheck.results import Measurement
from qcheck.tflite.inspect import layer_name
from qcheck.tflite.tensor_stats import (
    ROUNDING_ONLY,
    SUSPICIOUS,
    Analysis,
    ChannelSpread,
    TensorReport,
    likely_cause,
    worst_layers,
)


def _spans(spread: ChannelSpread, samples: int) -> str:
    if spread.median_range > 0:
        ratio = f"{spread.widest_range / spread.median_range:.0f}x the median channel's range"
    else:  # over very few samples most channels may not vary at all: no ratio to give
        ratio = (f"{spread.widest_range:.4g} while the median channel does not vary at all over the "
                 f"{samples} sample(s) analysed")
    low, high = spread.widest_low, spread.widest_high
    if high - low < spread.widest_range / 2:
        # Far from zero but hardly varying (e.g. a bias stuck at -3000): its values, not its
        # spread, stretch the per-tensor range.
        return (f"stays near {(low + high) / 2:.4g} (its values vary by only {high - low:.3g}), which "
                f"stretches the range to {ratio}")
    return f"spans {ratio}"


def _cause(report: TensorReport, samples: int) -> str:
    spread = report.spread
    assert spread is not None
    if report.range_from is None:
        return (f"likely cause: {report.op} '{layer_name(report.name)}' - channel {spread.widest} "
                f"{_spans(spread, samples)}, so its per-tensor scale ({report.scale:.4g}) leaves "
                f"{spread.under_one_step} of {spread.channels} channels less than one quantization step")
    # The crushed tensor was written by an operator that must keep its input's scale: the
    # range, and so the damage, comes from the operator that chose it.
    kinds = list(dict.fromkeys(report.range_through))
    passed_on = (f"{kinds[0]} keeps its input's scale" if len(kinds) == 1
                 else f"{', '.join(kinds[:-1])} and {kinds[-1]} keep their input's scale")
    where = f" (channel {report.range_channel} of its output)" if report.range_channel is not None else ""
    return (f"likely cause: {report.range_from}, which chose the range that {report.op} '{layer_name(report.name)}' "
            f"shares ({passed_on} and cannot choose one): there channel {spread.widest}"
            f"{where} {_spans(spread, samples)}, so the shared per-tensor scale ({report.scale:.4g}) leaves "
            f"{spread.under_one_step} of {spread.channels} channels less than one quantization step")


def different_models(analysis: Analysis) -> str | None:
    """Why per-layer error means nothing here, when the reference is not the model's float twin."""
    weights = analysis.weights
    if weights is None or not weights.different_models:
        return None
    return (f"the reference's weights differ from the model's by {weights.median_difference:.0%} (rms, median "
            f"over {weights.layers} layers; {weights.differing} of them have weights more than one quantization "
            "step from any the quantization could have made): these look like different models, so per-layer "
            "error is not meaningful and no layer is blamed")


def explain_layers(analysis: Analysis) -> str:
    """A sentence naming the worst layers and, when one is found, the layer that causes it."""
    mismatch = different_models(analysis)
    if mismatch is not None:
        return mismatch
    worst = [r for r in worst_layers(analysis) if (r.rmse_steps or 0) > SUSPICIOUS]
    parts = []
    if worst:
        listed = ", ".join(f"{r.op} '{layer_name(r.name)}' ({r.rmse_steps:.2f} steps)" for r in worst)
        parts.append(f"layers with the largest error vs the float model: {listed}")
    cause = likely_cause(analysis)
    if cause is not None:
        parts.append(_cause(cause, analysis.samples))
    return "; ".join(parts)


def layer_hint(analysis: Analysis) -> str:
    if different_models(analysis) is not None:
        return ("give as reference the float model this model was quantized from (--qcheck-reference), "
                "or the Keras model itself")
    cause = likely_cause(analysis)
    if cause is None:
        return "compare the named layers' weights and activations with the float model"
    if cause.range_from is not None:
        channel = f" (channel {cause.range_channel})" if cause.range_channel is not None else ""
        return (f"rebalance the outlier channel{channel} of {cause.range_from} (e.g. equalize it with the next "
                "layer's weights, or clip it in training) or quantize that operator's output per channel")
    return (f"rebalance the outlier channel of '{layer_name(cause.name)}' (e.g. equalize it with the next layer's "
            "weights, or clip it in training) or quantize that activation per channel")


# The per-tensor and per-layer tables are the model's facts (qcheck.facts.ModelFacts: tensors,
# layers, reference_weights), made once from the evaluation's analysis for the report.
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
    mismatch = different_models(analysis)
    if mismatch is not None:
        raise QcheckError(None, mismatch, layer_hint(analysis))
    worst = worst_layers(analysis, 1)[0]
    details = (f"worst layer {worst.op} '{layer_name(worst.name)}': {worst.rmse_steps:.2f} steps "
               f"(rounding alone is {ROUNDING_ONLY:.2f}, above {SUSPICIOUS} is suspicious; SQNR {worst.sqnr_db or 0:.1f} dB) over "
               f"{analysis.samples} samples, {analysis.matched} layers compared")
    explanation = explain_layers(analysis)
    return Measurement(worst.rmse_steps, details + (f"; {explanation}" if explanation else ""),
                       layer_hint(analysis))
