"""Was the model calibrated on data like the evaluation data? Diagnostics that checks cite.

"The int8 model always predicts the same value" is usually a representative set preprocessed
differently from inference (scaled by 255 once too often, normalized twice). It shows as
calibration and evaluation inputs spanning different ranges, and as constant outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qcheck.checks.evidence import Evidence

_MAX_SAMPLES = 2000  # samples read for the percentiles
_MAX_VALUES = 1_000_000  # values sampled among them
_RANGE_RATIO = 1.5  # spreads differing by more than this are worth a warning


@dataclass(frozen=True)
class Spread:
    """Where most of an array's values lie (0.1 and 99.9 percentiles) and its mean."""

    low: float
    high: float
    mean: float

    @classmethod
    def of(cls, x: Any) -> Spread:
        """From up to 2000 samples of ``x`` (an array or a LazyArray read from disk)."""
        if len(x) > _MAX_SAMPLES:
            x = x[np.sort(np.random.default_rng(0).choice(len(x), _MAX_SAMPLES, replace=False))]
        flat = np.asarray(x, dtype=np.float32).reshape(-1)
        if flat.size > _MAX_VALUES:
            flat = flat[np.random.default_rng(0).choice(flat.size, _MAX_VALUES, replace=False)]
        low, high = np.percentile(flat, [0.1, 99.9])
        return cls(float(low), float(high), float(flat.mean()))

    @property
    def width(self) -> float:
        return self.high - self.low

    def describe(self) -> str:
        return f"{self.low:.4g}..{self.high:.4g}"


@dataclass(frozen=True)
class CalibrationDiagnosis:
    samples: int
    calibration: Spread | None
    evaluation: Spread | None  # both None for a multi-input model: see ``inputs``
    constant_outputs: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())
    # A multi-input model's (calibration, evaluation) spreads by input name.
    inputs: dict[str, tuple[Spread | None, Spread]] = field(default_factory=dict)
    # The inputs ("" for a single input) whose calibration span differs from the evaluation span.
    mismatched: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def spread(s: Spread | None) -> dict[str, float] | None:
            return None if s is None else {"low": s.low, "high": s.high, "mean": s.mean}

        table: dict[str, Any] = {
            "samples": self.samples, "calibration_input": spread(self.calibration),
            "evaluation_input": spread(self.evaluation), "constant_outputs": list(self.constant_outputs),
            "warnings": list(self.warnings)}
        if self.inputs:
            table["inputs"] = {name: {"calibration_input": spread(cal), "evaluation_input": spread(ev)}
                               for name, (cal, ev) in self.inputs.items()}
        return table


def _per_input(calibration: Any, evaluation: Any) -> list[tuple[str, Any, Any]]:
    """(input name, calibration samples, evaluation samples) per input; the name is "" for a
    single-input model."""
    from qcheck.named_inputs import NamedInputs

    if not isinstance(evaluation, NamedInputs):
        return [("", calibration, evaluation)]
    cal = calibration.arrays if isinstance(calibration, NamedInputs) else {}
    return [(name, cal.get(name), evaluation.arrays[name]) for name in evaluation.names]


def _spreads(calibration: Any, evaluation: Any, name: str, warnings: list[str],
             mismatched: list[str]) -> tuple[Spread | None, Spread]:
    """The spreads of one input's calibration and evaluation samples, warning (and adding ``name``
    to ``mismatched``) when they differ."""
    cal = Spread.of(calibration) if calibration is not None and len(calibration) else None
    ev = Spread.of(evaluation)
    if cal is not None and cal.width > 0 and ev.width > 0:
        ratio = ev.width / cal.width
        if ratio > _RANGE_RATIO or ratio < 1 / _RANGE_RATIO:
            where = f"input '{name}': " if name else ""
            mismatched.append(name)
            warnings.append(
                f"{where}calibration inputs span {cal.describe()} but evaluation inputs {ev.describe()} "
                f"(0.1th to 99.9th percentiles of their values; the evaluation span is {ratio:.2f}x the calibration "
                "span): the representative set looks preprocessed differently from inference "
                "(scaled, or normalized twice)")
    return cal, ev


def calibration_diagnosis(evidence: Evidence) -> CalibrationDiagnosis | None:
    """Compare calibration and evaluation inputs; find constant outputs. None without data."""
    from qcheck.data import few_calibration_samples

    data = evidence.evaluation_data()
    run = evidence.evaluation()
    if data is None or run is None:
        return None
    calibration = evidence.calibration_data()
    warnings: list[str] = []
    mismatched: list[str] = []
    few = few_calibration_samples(len(calibration)) if calibration is not None else None
    if few:
        warnings.append(few)
    spreads = {name: _spreads(cal_x, ev_x, name, warnings, mismatched) for name, cal_x, ev_x in _per_input(calibration, data.x)}
    cal, ev = spreads[""] if "" in spreads else (None, None)
    constant = tuple(head for head, out in run.outputs.items()
                     if len(out.raw) > 1 and np.all(out.raw == out.raw[:1]))
    for head in constant:
        warnings.append(f"output '{head}' is the same for all {len(data)} evaluation samples")
    return CalibrationDiagnosis(len(calibration) if calibration is not None else 0, cal, ev, constant,
                                tuple(warnings), {name: pair for name, pair in spreads.items() if name},
                                tuple(mismatched))
