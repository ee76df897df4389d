"""The terminal summary: one table per model, rendered as lines (no printing here)."""

from __future__ import annotations

from collections.abc import Iterable

from qcheck.baseline.report import baseline_section, cells, figure_of, update_lines
from qcheck.facts import ReportFacts
from qcheck.facts import by_model as facts_by_model
from qcheck.results import CheckResult
from qcheck.units import format_quantity

_VERDICT = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
_CAUSE_LINES = 6  # lines of a cause shown under the table; the JSON report has all of it


def render(results: Iterable[CheckResult], *, verbose: bool = False, facts: Iterable[ReportFacts] = ()) -> list[str]:
    """Lines of a table per model (and suite file): check, value, threshold, verdict; failures
    explained below, each cause that kept checks from being measured said once, with the
    checks it stopped, and the notes of the model's ``facts``."""
    notes = {key: list(sections.get("notes") or []) for key, sections in facts_by_model(facts).items()}
    by_model: dict[tuple[str, str], list[CheckResult]] = {}
    for result in results:
        by_model.setdefault((result.model, result.suite_file), []).append(result)
    lines: list[str] = []
    for (model, suite_file), model_results in by_model.items():
        model_results.sort(key=lambda r: (r.check, r.variant))
        label = f"{model} (from {suite_file})" if suite_file else model
        lines.append(f"{label}: {_model_verdict(model_results)}")
        rows: list[tuple[str, ...]] = [("check", "value", "threshold", "verdict")]
        for r in model_results:
            rows.append((_label(r), format_quantity(r.value, r.unit), format_quantity(r.threshold, r.unit),
                         _VERDICT[r.status]))
        section = baseline_section(model_results)
        if section is not None and section.get("figures"):  # the baseline beside each figure
            rows = [rows[0] + ("baseline", "change")] + [
                row + cells(figure_of(section, r.check, r.variant), r.unit)
                for row, r in zip(rows[1:], model_results, strict=True)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        for r in model_results:
            if r.status == "failed" or (verbose and r.status == "skipped"):
                first = r.message.splitlines()[0]
                lines.append(f"  - {first}")
        lines.extend(_errors(model_results))
        lines.extend(f"  {line}" for line in update_lines(section))
        for note in notes.get((model, suite_file), []):
            lines.append(f"  note: {note}")
    return lines


def _label(result: CheckResult) -> str:
    return f"{result.check}[{result.variant}]" if result.variant else result.check


def _model_verdict(results: list[CheckResult]) -> str:
    """FAIL when a threshold failed, ERROR when checks could not be measured, else PASS."""
    failed = sum(r.status == "failed" for r in results)
    errors = sum(r.status == "error" for r in results)
    counts = [f"{failed} of {len(results)} checks failed"] if failed or not errors else []
    if errors:
        counts.append(f"{errors} of {len(results)} could not be measured" if not failed
                      else f"{errors} could not be measured")
    verdict = "FAIL" if failed else "ERROR" if errors else "PASS"
    return f"{verdict} ({', '.join(counts)})"


def _errors(results: list[CheckResult]) -> list[str]:
    """One entry per cause: the checks it kept from being measured, then the cause itself."""
    causes: dict[str, list[str]] = {}
    for r in results:
        if r.error is not None:
            causes.setdefault(r.error, []).append(_label(r))
    lines = []
    for cause, checks in causes.items():
        head, *rest = cause.splitlines() or [""]
        which = "every check" if len(checks) == len(results) > 1 else ", ".join(checks)
        lines.append(f"  - could not be measured ({which}): {head}")
        lines.extend(f"    {line.strip()}" for line in rest[: _CAUSE_LINES - 1])
        if len(rest) >= _CAUSE_LINES:
            lines.append(f"    ... ({len(rest) - _CAUSE_LINES + 1} more lines in the JSON report)")
    return lines
