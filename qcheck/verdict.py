"""Judge a measurement against its threshold: a pure function, no I/O."""

from __future__ import annotations

import math
import re
from pathlib import PurePath
from collections.abc import Callable

from qcheck.checks import CheckDef
from qcheck.results import CheckResult, Measurement
from qcheck.suites import CheckSpec
from qcheck.units import format_quantity


def judge(model: str, check: CheckDef, spec: CheckSpec, measurement: Measurement, variant: str = "") -> CheckResult:
    """Compare ``measurement`` with ``spec``'s ``max``/``min``; None when nothing was measured."""
    def fmt(v: float | None) -> str:
        return format_quantity(v, check.unit)

    value = measurement.value
    threshold = spec.max if spec.max is not None else spec.min
    if measurement.skip is not None or value is None:
        reason = measurement.skip or "nothing was measured"
        return CheckResult(model, check.name, None, None, threshold, check.unit,
                           f"{check.name} not run: {reason}", variant, measurement.sections)
    if not math.isfinite(value):
        # NaN compares False with everything: it must not slip through as a pass.
        return CheckResult(model, check.name, False, None, threshold, check.unit,
                           f"{check.name} failed: the measured value is {value}. {measurement.details}",
                           variant, measurement.sections)
    failures = list(measurement.failures)
    if spec.max is not None and value > spec.max and not _same(value, spec.max):
        failures.append(f"{fmt(value)} > max {fmt(spec.max)}")
    if spec.min is not None and value < spec.min and not _same(value, spec.min):
        failures.append(f"{fmt(value)} < min {fmt(spec.min)}")
    details = measurement.details + _resolution(measurement, spec, fmt)
    if failures:
        message = f"{check.name} failed: {', '.join(failures)}. {details}"
        if measurement.hint:
            message += f"\n  try: {measurement.hint}"
        passed = False
    else:
        bound = (f"max {fmt(spec.max)}" if spec.max is not None
                 else f"min {fmt(spec.min)}" if spec.min is not None else "no threshold set")
        message = f"{check.name} passed: {fmt(value)} ({bound}). {details}"
        passed = True
    return CheckResult(model, check.name, passed, value, threshold, check.unit, message, variant,
                       measurement.sections)


def _same(value: float, bound: float) -> bool:
    """Equal but for floating-point rounding: 1 - 0.97 is 0.030000000000000027, and a drop of
    exactly 3 points must meet a threshold of 3%, as the message's "3.00% > max 3.00%" would
    otherwise claim the opposite of what it shows."""
    return math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def _resolution(measurement: Measurement, spec: CheckSpec, fmt: Callable[[float | None], str]) -> str:
    """A warning when the confidence interval straddles the threshold: too few samples to tell."""
    if measurement.interval is None:
        return ""
    low, high = measurement.interval
    samples = f"{measurement.samples} samples are" if measurement.samples else "the data is"
    for bound in (spec.max, spec.min):
        if bound is not None and low <= bound <= high:
            return (f". {samples} too few to tell which side of {fmt(bound)} the true value lies: "
                    f"its 95% interval is {fmt(low)} to {fmt(high)}")
    if spec.max is not None and spec.max > 0 and high - low > spec.max:
        # Resolved on this side, but an interval wider than the threshold itself says the
        # evaluation set is too small for a threshold this fine.
        return (f". {samples} too few for a threshold of {fmt(spec.max)}: the 95% interval, {fmt(low)} to "
                f"{fmt(high)}, is wider than the threshold")
    return ""


def error_result(model: str, check: CheckDef, spec: CheckSpec, error: BaseException, variant: str = "",
                 *, see: str = "") -> CheckResult:
    """A check whose measurement raised: status ``error`` (not a failed threshold), with the cause.

    ``see`` names the check that already reported the same cause in full (one error per cause
    and model): this result then says in a few words what failed and points there.
    """
    cause = _ADDRESS.sub("", str(error))  # no "<... object at 0x7f...>": it differs on every run
    if see:
        from qcheck.pipeline import failed_step

        what = failed_step(error)
        head = f"{PurePath(model).name} {what}" if what else cause.splitlines()[0] if cause else type(error).__name__
        head = head if len(head) <= _POINTER_WIDTH else head[: _POINTER_WIDTH - 3].rstrip() + "..."
        message = f"{check.name} could not be measured: {head} (see {see})"
    else:
        message = f"{check.name} could not be measured: {cause}"
    return CheckResult(model, check.name, False, None, spec.max if spec.max is not None else spec.min,
                       check.unit, message, variant, error=cause or type(error).__name__)


_POINTER_WIDTH = 100  # characters of the cause repeated by the checks that point to its full text
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+\b")
