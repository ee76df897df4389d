"""Values read from the report document, which may be missing: numbers, verdicts, checks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qcheck.report.charts import Chart


@dataclass(frozen=True)
class Table:
    """A plain table for the details under a chart (every cell already text)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class ChartBlock:
    """A chart, a sentence saying how to read it, and the full table under a disclosure."""

    chart: Chart
    note: str
    table: Table


def verdict(passed: Any) -> str:
    """A check's ``passed`` as a word the page styles: pass, fail, or skip (could not run)."""
    return "pass" if passed is True else "fail" if passed is False else "skip"


def check_verdict(check: Mapping[str, Any]) -> str:
    """A check entry as a word the page styles: pass, fail, error (could not be measured) or skip."""
    return "error" if check.get("status") == "error" else verdict(check.get("passed"))


def model_verdict(counts: Mapping[str, int]) -> str:
    """fail when a threshold failed, error when a check could not be measured, else pass."""
    return "fail" if counts.get("fail") else "error" if counts.get("error") else "pass"


def find_check(checks: Iterable[Mapping[str, Any]], name: str, variant: str = "") -> Mapping[str, Any] | None:
    """The check ``name`` (for accelerator ``variant``) among a model's checks, if it ran."""
    return next((c for c in checks if c.get("name") == name and (c.get("variant") or "") == variant), None)


def number(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def points(value: float | None) -> str:
    """A fraction in percentage points, two decimals: 0.0123 -> "1.23"."""
    return "-" if value is None else f"{value * 100:.2f}"


def percent(value: Any) -> str:
    """A fraction as a percentage with one decimal, "-" when missing."""
    found = number(value)
    return "-" if found is None else f"{found:.1%}"


def fixed(value: Any, digits: int) -> str:
    """A number with ``digits`` decimals, "-" when missing."""
    found = number(value)
    return "-" if found is None else f"{found:.{digits}f}"
