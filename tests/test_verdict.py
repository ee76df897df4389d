"""qcheck.verdict: a measurement against its threshold, as a pure function."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcheck.checks import CheckDef, registry
from qcheck.results import Measurement
from qcheck.suites import CheckSpec
from qcheck.units import format_quantity
from qcheck.verdict import error_result, judge

ACCURACY = registry()["accuracy_drop"]  # a real check: unit "fraction"
SIZE = registry()["size"]  # unit "bytes"


def _unused(evidence: object, options: object) -> Measurement:
    """A check with a lower bound, for the min threshold."""
    raise AssertionError("never measured here")


AGREEMENT = CheckDef("agreement", "fraction", _unused)

finite = st.floats(min_value=0, max_value=1e12)


def test_value_at_max_passes_and_above_fails() -> None:
    spec = CheckSpec("accuracy_drop", max=0.03)
    at = judge("m.keras", ACCURACY, spec, Measurement(0.03, "drop of 3 points"))
    assert at.passed is True
    assert (at.model, at.check, at.value, at.threshold, at.unit) == ("m.keras", "accuracy_drop", 0.03, 0.03, "fraction")
    assert at.message.startswith("accuracy_drop passed: 3.00% (max 3.00%)")
    assert "drop of 3 points" in at.message
    above = judge("m.keras", ACCURACY, spec, Measurement(0.031, "drop", hint="use more calibration data"))
    assert above.passed is False
    assert "accuracy_drop failed: 3.10% > max 3.00%" in above.message
    assert "drop" in above.message
    assert "try: use more calibration data" in above.message


def test_a_value_at_the_threshold_but_for_float_rounding_passes() -> None:
    # 1 - 0.97 is 0.030000000000000027: a drop of exactly 3 points printed "3.00% > max 3.00%"
    drop = 1.0 - 0.97
    assert drop > 0.03
    result = judge("m.keras", ACCURACY, CheckSpec("accuracy_drop", max=0.03), Measurement(drop, "drop"))
    assert result.passed is True, result.message
    above = judge("m.keras", ACCURACY, CheckSpec("accuracy_drop", max=0.03), Measurement(0.0300001, "drop"))
    assert above.passed is False
    below = judge("m", AGREEMENT, CheckSpec("agreement", min=0.97), Measurement(1.0 - 0.03, "agreement"))
    assert below.passed is True, below.message


def _rounding_apart(value: float, bound: float) -> bool:
    return math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def test_value_at_min_passes_and_below_fails() -> None:
    spec = CheckSpec("agreement", min=0.9)
    at = judge("m", AGREEMENT, spec, Measurement(0.9))
    assert at.passed is True
    assert at.threshold == 0.9
    assert "(min 90.00%)" in at.message
    below = judge("m", AGREEMENT, spec, Measurement(0.89, hint="calibrate better"))
    assert below.passed is False
    assert "89.00% < min 90.00%" in below.message
    assert "calibrate better" in below.message


def test_no_hint_no_try_line() -> None:
    result = judge("m", ACCURACY, CheckSpec("accuracy_drop", max=0.0), Measurement(0.5, "details"))
    assert result.passed is False
    assert "try:" not in result.message


def test_hint_is_not_shown_on_success() -> None:
    result = judge("m", ACCURACY, CheckSpec("accuracy_drop", max=1.0), Measurement(0.5, hint="do things"))
    assert result.passed is True
    assert "do things" not in result.message


def test_no_threshold_passes_and_says_so() -> None:
    result = judge("m", SIZE, CheckSpec("size"), Measurement(300_000, "the file"))
    assert result.passed is True
    assert result.threshold is None
    assert f"size passed: {format_quantity(300_000, 'bytes')} (no threshold set)" in result.message


def test_both_bounds() -> None:
    spec = CheckSpec("agreement", max=0.5, min=0.2)
    assert judge("m", AGREEMENT, spec, Measurement(0.3)).passed is True
    assert judge("m", AGREEMENT, spec, Measurement(0.6)).passed is False
    low = judge("m", AGREEMENT, spec, Measurement(0.1))
    assert low.passed is False
    assert "< min 20.00%" in low.message
    assert low.threshold == 0.5  # max is reported when both are set


def test_skip_is_not_a_verdict() -> None:
    sections = {"accuracy": {"": {"drop": 0}}}
    result = judge("m", ACCURACY, CheckSpec("accuracy_drop", max=0.03),
                   Measurement(0.5, skip="needs evaluation data", sections=sections), variant="v")
    assert result.passed is None
    assert result.value is None
    assert result.threshold == 0.03
    assert result.message == "accuracy_drop not run: needs evaluation data"
    assert result.variant == "v"
    assert result.sections == sections


def test_nothing_measured_is_a_skip() -> None:
    result = judge("m", ACCURACY, CheckSpec("accuracy_drop", max=0.03), Measurement(None))
    assert result.passed is None
    assert "nothing was measured" in result.message


def test_skip_reports_the_min_threshold_like_pass_and_fail_do() -> None:
    spec = CheckSpec("agreement", min=0.9)
    measured = judge("m", AGREEMENT, spec, Measurement(0.95))
    skipped = judge("m", AGREEMENT, spec, Measurement(None, skip="no data"))
    errored = error_result("m", AGREEMENT, spec, RuntimeError("boom"))
    assert measured.threshold == errored.threshold == 0.9
    assert skipped.threshold == 0.9


def test_nan_measurement_does_not_pass() -> None:
    result = judge("m", ACCURACY, CheckSpec("accuracy_drop", max=0.03), Measurement(math.nan))
    assert result.passed is not True


@given(value=finite, bound=finite)
def test_max_verdict_for_any_values(value: float, bound: float) -> None:
    result = judge("m", SIZE, CheckSpec("size", max=bound), Measurement(value, "d", hint="h"))
    assert result.passed is (value <= bound or _rounding_apart(value, bound))
    assert result.value == value
    assert result.threshold == bound
    assert format_quantity(value, "bytes") in result.message
    assert format_quantity(bound, "bytes") in result.message
    assert ("try: h" in result.message) is (result.passed is False)


@given(value=finite, bound=finite)
def test_min_verdict_for_any_values(value: float, bound: float) -> None:
    result = judge("m", SIZE, CheckSpec("size", min=bound), Measurement(value))
    assert result.passed is (value >= bound or _rounding_apart(value, bound))
    assert result.threshold == bound
    assert format_quantity(bound, "bytes") in result.message


def test_error_result() -> None:
    spec = CheckSpec("accuracy_drop", max=0.03)
    result = error_result("m.keras", ACCURACY, spec, ValueError("labels go up to 12"), variant="u55")
    assert result.passed is False
    assert result.value is None
    assert result.threshold == 0.03
    assert result.unit == "fraction"
    assert result.variant == "u55"
    assert result.message == "accuracy_drop could not be measured: labels go up to 12"
    assert error_result("m", SIZE, CheckSpec("size"), OSError("x")).threshold is None


@pytest.mark.parametrize("name", ["fully_quantized", "float32_tensors", "accuracy_drop", "saturation", "size", "vela"])
def test_every_registered_check_judges_with_its_own_unit(name: str) -> None:
    check = registry()[name]
    result = judge("m", check, CheckSpec(name, max=0), Measurement(0))
    assert result.passed is True
    assert result.unit == check.unit
    assert result.message.startswith(f"{name} passed: {format_quantity(0, check.unit)}")
