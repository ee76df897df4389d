"""Parse thresholds written with units: "3%", "0.03", "300KB", "1.5 MiB", "5ms"."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from qcheck.errors import suggest
from qcheck.toml_files import shown

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z%]*)\s*$")

# Decimal units for KB/MB (as marketing and datasheets use them) and binary for KiB/MiB,
# as Vela reports them; B alone is bytes.
_BYTES: dict[str, float] = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SECONDS: dict[str, float] = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
_FRACTION: dict[str, float] = {"": 1.0, "%": 0.01}

UNITS: dict[str, dict[str, float]] = {"bytes": _BYTES, "seconds": _SECONDS, "fraction": _FRACTION, "count": {"": 1}}


def parse_quantity(text: str | int | float, unit: str) -> float:
    """Return ``text`` as a number in the base ``unit`` (bytes, seconds, fraction, count).

    Raises ValueError with a sentence fit for a user when the text is not a quantity of
    that kind, is negative, or is not finite.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a number, got {text!r}")
    if isinstance(text, (int, float)):
        try:
            value, suffix = float(text), ""
        except OverflowError:  # TOML integers have no size limit
            raise ValueError(f"{text!r} is not a finite number") from None
    else:
        match = _QUANTITY.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a quantity (examples: {_examples(unit)})")
        value, suffix = float(match.group(1)), match.group(2).lower()
    factors = UNITS[unit]
    if suffix not in factors:
        raise ValueError(
            f"{text!r}: unit {suffix!r} does not fit a {unit} threshold "
            f"(examples: {_examples(unit)})"
        )
    result = value * factors[suffix]
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is not a finite number")
    if result < 0:
        raise ValueError(f"{text!r} is negative; thresholds are zero or more")
    if unit == "fraction" and result > 1:
        raise ValueError(f"{text!r} is more than 100%; write a share like '3%' or 0.03")
    return result


def _examples(unit: str) -> str:
    return {
        "bytes": "'300KB', '1.5MiB', 4096",
        "seconds": "'5ms', '0.01s'",
        "fraction": "'3%', 0.03",
        "count": "0, 3",
    }[unit]


def format_quantity(value: float | None, unit: str) -> str:
    """Human-readable form of a value in base units, for messages and tables."""
    if value is None:
        return "-"
    if unit == "fraction":
        return f"{value * 100:.2f}%"
    if unit == "bytes":
        if value >= 1024**2:
            return f"{value / 1024**2:.2f} MiB"
        if value >= 1024:
            return f"{value / 1024:.2f} KiB"
        return f"{value:.0f} B"
    if unit == "seconds":
        return f"{value * 1e3:.3f} ms"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.4g}"


def positive_int(value: Any) -> int:
    """``value`` if it is a whole number of at least 1 (a count of samples, examples, ...)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number of at least 1, not {shown(value)}")
    return value


def one_of(*choices: str) -> Callable[[Any], str]:
    """A check option's validator: the value must be one of ``choices`` (a typo names the closest)."""

    def validate(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            near = suggest(value, choices) if isinstance(value, str) else ""
            raise ValueError(f"must be one of {', '.join(repr(c) for c in choices)}, not {shown(value)}{near}")
        return value

    return validate
