"""The terminal summary: one table per model, rendered as lines (no printing here)."""

from __future__ import annotations

from collections.abc import Iterable

from qcheck.results import CheckResult
from qcheck.units import format_quantity

_VERDICT = {True: "PASS", False: "FAIL", None: "SKIP"}


def render(results: Iterable[CheckResult], *, verbose: bool = False) -> list[str]:
    """Lines of a table per model (and suite file): check, value, threshold, verdict; failures below."""
    by_model: dict[tuple[str, str], list[CheckResult]] = {}
    for result in results:
        by_model.setdefault((result.model, result.suite_file), []).append(result)
    lines: list[str] = []
    for (model, suite_file), model_results in by_model.items():
        model_results.sort(key=lambda r: (r.check, r.variant))
        failed = sum(r.passed is False for r in model_results)
        verdict = "FAIL" if failed else "PASS"
        label = f"{model} (from {suite_file})" if suite_file else model
        lines.append(f"{label}: {verdict} ({failed} of {len(model_results)} checks failed)")
        rows = [("check", "value", "threshold", "verdict")]
        for r in model_results:
            name = f"{r.check}[{r.variant}]" if r.variant else r.check
            rows.append((name, format_quantity(r.value, r.unit), format_quantity(r.threshold, r.unit), _VERDICT[r.passed]))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        for r in model_results:
            if r.passed is False or (verbose and r.passed is None):
                first = r.message.splitlines()[0]
                lines.append(f"  - {first}")
        notes = next((r.sections.get("notes") for r in model_results if r.sections.get("notes")), None)
        for note in notes or []:
            lines.append(f"  note: {note}")
    return lines
