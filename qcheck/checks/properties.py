"""Property-based checks with Hypothesis: ``robustness`` and ``consistency``.

Both go beyond the evaluation set: Hypothesis draws inputs (:mod:`qcheck.strategies`) with a
fixed, derandomized budget and shrinks what it finds, and the failure shows the shrunk
counter-example. The searches run in a child process (:mod:`qcheck.property_search`). Both are
off in the default suite; turn them on with ``[checks.robustness] enabled = true``.
"""

from __future__ import annotations

import importlib.util
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.config import RunSpec
from qcheck.errors import QcheckError
from qcheck.inputs import as_given
from qcheck.isolation import call_isolated
from qcheck.results import Measurement
from qcheck.units import positive_int

DEFAULT_EXAMPLES = 100
DEFAULT_SAMPLES = 200
DEFAULT_STEPS = 1.0


def _needs_hypothesis(name: str) -> None:
    if importlib.util.find_spec("hypothesis") is None:
        raise QcheckError(None, f"the {name} check needs Hypothesis, which is not installed",
                          "pip install 'pytest-qcheck[properties]' (or hypothesis)")


def _quantized_input(evidence: Evidence) -> bool:
    info = evidence.info()
    return (len(info.inputs) == 1 and info.inputs[0].tensor.dtype in ("int8", "uint8", "int16")
            and bool(info.inputs[0].tensor.scale))


def _input_kind(evidence: Evidence) -> str:
    """What the model's input is, when it is not one quantized integer input."""
    from qcheck.property_search import describe_unquantized_input

    info = evidence.info()
    if len(info.inputs) != 1:
        names = ", ".join(f"'{io.name}'" for io in sorted(info.inputs, key=lambda io: io.name))
        return (f"the model has {len(info.inputs)} inputs ({names}): multi-input models are not supported by "
                "this check yet")
    return describe_unquantized_input(info.inputs[0].tensor)


@check("robustness", unit="count", options={"examples": positive_int}, sections=("robustness",))
def robustness(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Properties some valid input breaks: it runs, outputs stay in range, same input same output."""
    from qcheck.property_search import RobustnessOutcome

    _needs_hypothesis("robustness")
    examples = int(options.get("examples", DEFAULT_EXAMPLES))
    if not _quantized_input(evidence):
        return Measurement(None, skip="needs one quantized (integer) input to draw valid inputs from "
                                      f"({_input_kind(evidence)}; see fully_quantized)")
    outcome: RobustnessOutcome = call_isolated(
        "qcheck.property_search:search_robustness", evidence.tflite(), examples,
        what=f"searching inputs that break {evidence.model}", timeout=evidence.timeout,
    )
    section = {"robustness": {"examples": outcome.examples,
                              "violations": [{"property": v.prop, "counter_example": v.counter_example}
                                             for v in outcome.violations]}}
    if not outcome.violations:
        return Measurement(0.0, f"no counter-example in {outcome.examples} valid inputs drawn by Hypothesis: "
                                "every one runs, keeps its outputs inside their range and gives the same "
                                "output when run again", sections=section)
    found = "; ".join(f"{v.prop}: {v.counter_example}" for v in outcome.violations)
    return Measurement(
        float(len(outcome.violations)),
        f"Hypothesis found a valid input breaking {len(outcome.violations)} of 3 properties "
        f"(shrunk counter-example, {outcome.examples} examples tried): {found}",
        "an output clipped for a valid input: calibrate with data that covers every input the model "
        "will see (the whole sensor range), or clip inputs before the model; different outputs for "
        "the same input: the model keeps state (variables) between calls, reset it per inference",
        sections=section,
    )


def float_model(evidence: Evidence) -> Path | None:
    """The float model to compare with: the model itself, or the reference of a ``.tflite``."""
    spec = getattr(evidence, "spec", None)  # ModelRun and the assertion helpers' evidence carry it
    if not isinstance(spec, RunSpec):
        return None
    if evidence.kind != "tflite":
        return as_given(spec.model)
    return as_given(spec.reference) if spec.reference else None


def _steps(value: Any) -> float:
    """consistency.steps: how far samples are perturbed, in quantization steps (0 < steps <= 1000)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) <= 1000:
        raise ValueError(f"must be a number of quantization steps above 0 (at most 1000), not {value!r}")
    return float(value)


@check("consistency", unit="fraction", options={"steps": _steps, "samples": positive_int, "examples": positive_int},
       sections=("consistency",))
def consistency(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Share of perturbed evaluation samples on which the float and quantized top-1 agree."""
    from qcheck.property_search import ConsistencyOutcome
    from qcheck.stats import proportion_interval

    _needs_hypothesis("consistency")
    steps = float(options.get("steps", DEFAULT_STEPS))  # validated when the suite loads
    samples = int(options.get("samples", DEFAULT_SAMPLES))
    examples = int(options.get("examples", DEFAULT_EXAMPLES))
    data = evidence.evaluation_data()
    if data is None:
        return Measurement(None, skip="needs evaluation data: pass --qcheck-data=val.npz")
    path = float_model(evidence)
    if path is None:
        return Measurement(None, skip=evidence.no_reference_reason())
    if not _quantized_input(evidence):
        return Measurement(None, skip="needs one quantized (integer) input: perturbations are measured "
                                      f"in its quantization steps ({_input_kind(evidence)})")
    spec = getattr(evidence, "spec", None)
    outcome: ConsistencyOutcome = call_isolated(
        "qcheck.property_search:search_consistency", evidence.tflite(), path, data.x, steps=float(steps),
        samples=samples, examples=examples, unsafe=bool(getattr(spec, "unsafe_deserialization", False)),
        what=f"perturbing evaluation samples of {evidence.model}", timeout=evidence.timeout,
    )
    if not outcome.heads:
        return Measurement(None, skip="no classification head (every output has one value per sample)")
    share = outcome.agree_perturbed / outcome.samples
    heads = ", ".join(f"'{h}'" for h in outcome.heads)
    details = (f"float and quantized top-1 ({heads}) agree on {outcome.agree_perturbed} of {outcome.samples} "
               f"evaluation samples each moved by up to {outcome.steps:g} input quantization step(s) "
               f"(unperturbed: {outcome.agree_clean} of {outcome.samples})")
    if outcome.counter_example:
        details += (f"; shrunk counter-example (Hypothesis, {outcome.examples} examples): "
                    f"{outcome.counter_example}")
    else:
        details += f"; Hypothesis found no perturbation that splits them in {outcome.examples} examples"
    return Measurement(
        share,
        details,
        "decisions this close to a class boundary flip with quantization noise: look for layers with "
        "outlier channels or a coarse output scale (a large offset shared by every logit), and "
        "calibrate with representative samples",
        sections={"consistency": {"samples": outcome.samples, "agree_clean": outcome.agree_clean,
                                  "agree_perturbed": outcome.agree_perturbed, "steps": outcome.steps,
                                  "heads": list(outcome.heads), "counter_example": outcome.counter_example}},
        interval=proportion_interval(outcome.agree_perturbed, outcome.samples),
        samples=outcome.samples,
    )
