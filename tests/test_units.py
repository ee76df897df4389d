"""qcheck.units: thresholds written with units, and their display form."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcheck.units import UNITS, format_quantity, parse_quantity

BYTE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
              "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
SECOND_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}

# Finite, non-negative, and small enough that multiplying by 1024**3 stays finite.
non_negative = st.floats(min_value=0, max_value=1e290, allow_nan=False, allow_infinity=False)
spacing = st.sampled_from(["", " ", "  "])


def case_variants(suffix: str) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted({suffix, suffix.lower(), suffix.upper()}))


# --- parse_quantity: the happy path -------------------------------------------------------------

@given(v=non_negative, unit=st.sampled_from(sorted(BYTE_UNITS)).flatmap(
    lambda u: st.tuples(st.just(u), case_variants(u))), space=spacing)
def test_bytes_with_any_prefix(v: float, unit: tuple[str, str], space: str) -> None:
    canonical, written = unit
    assert parse_quantity(f"{v}{space}{written}", "bytes") == v * BYTE_UNITS[canonical]


def test_decimal_and_binary_byte_prefixes_differ() -> None:
    assert parse_quantity("300KB", "bytes") == 300_000
    assert parse_quantity("300KiB", "bytes") == 300 * 1024
    assert parse_quantity("1.5 MiB", "bytes") == 1.5 * 1024 * 1024
    assert parse_quantity("2MB", "bytes") == 2_000_000
    assert parse_quantity(4096, "bytes") == 4096


@given(v=st.floats(min_value=0, max_value=1e290), unit=st.sampled_from(sorted(SECOND_UNITS)))
def test_seconds_with_any_prefix(v: float, unit: str) -> None:
    assert parse_quantity(f"{v}{unit}", "seconds") == v * SECOND_UNITS[unit]


@given(p=st.floats(min_value=0, max_value=100), space=spacing)
def test_percent_is_a_hundredth(p: float, space: str) -> None:
    assert parse_quantity(f"{p}{space}%", "fraction") == p * 0.01


@given(f=st.floats(min_value=0, max_value=1))
def test_plain_fraction_as_text_or_number(f: float) -> None:
    assert parse_quantity(f, "fraction") == f
    assert parse_quantity(repr(f), "fraction") == f


def test_examples_from_the_docs() -> None:
    assert parse_quantity("3%", "fraction") == pytest.approx(0.03)
    assert parse_quantity("0.03", "fraction") == 0.03
    assert parse_quantity("5ms", "seconds") == pytest.approx(0.005)
    assert parse_quantity("  100%  ", "fraction") == 1.0
    assert parse_quantity(".5", "count") == 0.5
    assert parse_quantity("1e3", "count") == 1000
    assert parse_quantity("+2", "count") == 2
    assert parse_quantity(0, "count") == 0


@given(n=st.integers(min_value=0, max_value=2**63 - 1), unit=st.sampled_from(["bytes", "count", "seconds"]))
def test_python_integers_are_taken_as_base_units(n: int, unit: str) -> None:
    assert parse_quantity(n, unit) == float(n)


# --- parse_quantity: refusals -------------------------------------------------------------------

@given(v=st.floats(min_value=1e-300, max_value=1e290), unit=st.sampled_from(sorted(UNITS)))
def test_negative_is_refused(v: float, unit: str) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_quantity(f"-{v}", unit)
    with pytest.raises(ValueError, match="negative"):
        parse_quantity(-v, unit)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_non_finite_numbers_are_refused(value: float, unit: str) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        parse_quantity(value, unit)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN%", "infinity"])
def test_non_finite_words_are_not_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(text, "fraction")


@pytest.mark.parametrize(("text", "unit"), [("1e400", "count"), ("1e308KB", "bytes"), ("1e308GiB", "bytes")])
def test_overflow_to_infinity_is_refused(text: str, unit: str) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        parse_quantity(text, unit)


def test_huge_integer_is_refused_with_value_error() -> None:
    # tomllib reads integer literals of any size, so a suite file can hold this.
    with pytest.raises(ValueError):
        parse_quantity(10**400, "bytes")


@pytest.mark.parametrize("value", ["101%", "100.01%", 1.5, "1.0001", 2])
def test_fraction_above_one_is_refused(value: str | float) -> None:
    with pytest.raises(ValueError, match="more than 100%"):
        parse_quantity(value, "fraction")


@pytest.mark.parametrize(("text", "unit", "suffix"), [
    ("3KB", "fraction", "kb"),
    ("3%", "bytes", "%"),
    ("5ms", "bytes", "ms"),
    ("300KB", "seconds", "kb"),
    ("3%", "count", "%"),
    ("3 pints", "count", "pints"),
])
def test_wrong_unit_is_refused_with_examples(text: str, unit: str, suffix: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(text, unit)
    message = str(info.value)
    assert repr(text) in message
    assert f"unit {suffix!r} does not fit a {unit} threshold" in message
    assert "examples:" in message


@pytest.mark.parametrize("text", ["lots", "", "   ", "3 4", "KB3", "3.4.5", "--3", "%", "0x10", "1_000"])
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_garbage_is_not_a_quantity(text: str, unit: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(text, unit)
    assert repr(text) in str(info.value)
    assert "is not a quantity (examples:" in str(info.value)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_booleans_are_refused(value: bool, unit: str) -> None:
    with pytest.raises(ValueError, match="expected a number"):
        parse_quantity(value, unit)


@given(value=st.one_of(st.text(max_size=20), st.floats(), st.integers(-(2**63), 2**63), st.booleans()),
       unit=st.sampled_from(sorted(UNITS)))
def test_any_input_is_a_finite_non_negative_number_or_a_value_error(value: object, unit: str) -> None:
    try:
        result = parse_quantity(value, unit)  # type: ignore[arg-type]
    except ValueError as exc:
        assert str(exc)
        return
    assert math.isfinite(result)
    assert result >= 0
    if unit == "fraction":
        assert result <= 1


# --- format_quantity ---------------------------------------------------------------------------

@pytest.mark.parametrize("unit", sorted(UNITS))
def test_format_none_is_a_dash(unit: str) -> None:
    assert format_quantity(None, unit) == "-"


def test_format_by_unit() -> None:
    assert format_quantity(0.03, "fraction") == "3.00%"
    assert format_quantity(0, "fraction") == "0.00%"
    assert format_quantity(1023, "bytes") == "1023 B"
    assert format_quantity(1024, "bytes") == "1.00 KiB"
    assert format_quantity(1536, "bytes") == "1.50 KiB"
    assert format_quantity(1024**2, "bytes") == "1.00 MiB"
    assert format_quantity(0.005, "seconds") == "5.000 ms"
    assert format_quantity(3.0, "count") == "3"
    assert format_quantity(2.5, "count") == "2.5"


@given(n=st.integers(min_value=0, max_value=2**40))
def test_formatted_bytes_read_back_within_rounding(n: int) -> None:
    text = format_quantity(n, "bytes")
    back = parse_quantity(text, "bytes")
    if n < 1024:
        assert back == n
    else:  # two decimals of KiB or MiB, and the number shown is at least 1
        assert abs(back - n) <= 0.005 * n


@given(f=st.floats(min_value=0, max_value=1))
def test_formatted_fraction_reads_back_within_rounding(f: float) -> None:
    assert abs(parse_quantity(format_quantity(f, "fraction"), "fraction") - f) <= 0.00005 + 1e-12


@given(s=st.floats(min_value=0, max_value=1e6))
def test_formatted_seconds_read_back_within_rounding(s: float) -> None:
    assert abs(parse_quantity(format_quantity(s, "seconds"), "seconds") - s) <= 0.0005e-3 + 1e-9 * s
