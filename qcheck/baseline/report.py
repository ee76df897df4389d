"""The baseline beside each figure in the reports: pure functions over gathered results."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qcheck.results import CheckResult
from qcheck.units import format_quantity

_WORDS = {"better": "better", "worse": "worse, within tolerance", "regressed": "REGRESSED", "same": "same"}


def baseline_section(results: Iterable[CheckResult]) -> dict[str, Any] | None:
    """The ``baseline`` section among one model's results (the baseline check's), if any."""
    for result in results:
        section = result.sections.get("baseline")
        if result.check == "baseline" and isinstance(section, dict):
            return section
    return None


def figure_of(section: dict[str, Any] | None, check: str, variant: str = "") -> dict[str, Any] | None:
    """The baseline entry of the figure ``check`` measures (Vela's for the baseline's accelerator only)."""
    if section is None:
        return None
    entry = section.get("figures", {}).get(check)
    if not isinstance(entry, dict) or (variant and variant != section.get("accelerator")):
        return None
    return entry


def cells(entry: dict[str, Any] | None, unit: str) -> tuple[str, str]:
    """The table cells (baseline value, change) of a figure's baseline ``entry``."""
    if entry is None or entry.get("baseline") is None:
        return ("", "")
    base = format_quantity(entry["baseline"], unit)
    verdict = str(entry.get("verdict", ""))
    if verdict == "worse" and "tolerance" not in entry:
        verdict = "worse, judged on the paired samples"  # accuracy: the heads' paired test judges it
    delta = entry.get("delta")
    if verdict == "same" or delta is None:
        return (base, _WORDS.get(verdict, verdict))
    amount = f"{abs(delta) * 100:.2f} points" if unit == "fraction" else format_quantity(abs(delta), unit)
    return (base, f"{'+' if delta > 0 else '-'}{amount} {_WORDS.get(verdict, verdict)}")


def junit_properties(section: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``qcheck_baseline.<figure>`` properties for --junitxml: "baseline -> now (verdict)" in base units."""
    if section is None:
        return []
    found = []
    for name, entry in sorted(section.get("figures", {}).items()):
        found.append((f"qcheck_baseline.{name}",
                      f"{entry.get('baseline')} -> {entry.get('now')} ({entry.get('verdict')})"))
    for name, entry in sorted(section.get("heads", {}).items()):
        found.append((f"qcheck_baseline.head.{name}", f"{entry.get('baseline')} -> {entry.get('now')} "
                                                      f"({entry.get('verdict')})"))
    return found


def update_lines(section: dict[str, Any] | None) -> list[str]:
    """What ``--qcheck-baseline-update`` did for one model: written, updated (with each change) or unchanged."""
    if section is None or "updated" not in section:
        return []
    if section.get("created"):
        return [f"baseline written (new): {section.get('file')}", *(f"  {line}" for line in section.get("changes", []))]
    if not section.get("updated"):
        return [f"baseline unchanged: {section.get('file')}"]
    return [f"baseline updated: {section.get('file')}", *(f"  {line}" for line in section.get("changes", []))]
