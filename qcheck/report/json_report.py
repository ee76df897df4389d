"""The JSON report: deterministic, versioned, one entry per model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qcheck import __version__
from qcheck.baseline.report import figure_of
from qcheck.facts import ReportFacts, by_model, merge_sections
from qcheck.results import SCHEMA_VERSION, CheckResult
from qcheck.suites import Suite


def build_report(results: Iterable[CheckResult], suite: Suite,
                 suite_file_errors: Mapping[str, str] | None = None,
                 facts: Iterable[ReportFacts] = ()) -> dict[str, Any]:
    """The report document (schema_version 1) from the gathered results and model facts.

    Each model entry has its checks, the sections its checks made (each check declares its own),
    and the sections of its model's facts (:class:`qcheck.facts.ModelFacts`): everything they
    carry is written, nothing is chosen here. ``suite_file_errors`` maps each ``qcheck_*.toml``
    that could not be read to its error: its checks did not run, so the report does not pass.
    """
    errors = [{"file": path, "message": message} for path, message in sorted((suite_file_errors or {}).items())]
    # One entry per model and suite file: the same model in two suite files is checked twice,
    # perhaps with other data and thresholds, and its results must not merge.
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: (r.model, r.suite_file, r.check, r.variant)):
        entry = models.setdefault((r.model, r.suite_file), {"model": r.model, "suite": r.suite_file or suite.name,
                                                            "suite_file": r.suite_file, "checks": []})
        entry["checks"].append(r.to_dict())
        merge_sections(entry, r.sections)
    for key, sections in by_model(facts).items():
        if key in models:  # facts of a model none of whose checks reported are left out
            merge_sections(models[key], sections)
    for entry in models.values():
        checks = entry["checks"]
        for check in checks:  # the baseline's value beside each figure (qcheck.baseline)
            found = figure_of(entry.get("baseline"), check["name"], check["variant"])
            if found is not None:
                check["baseline"] = found
        entry["passed"] = all(c["passed"] is not False for c in checks)
        entry["status"] = model_status(checks)
        entry["errors"] = _errors(checks)
    return {
        "schema_version": SCHEMA_VERSION,
        "qcheck_version": __version__,
        "passed": all(m["passed"] for m in models.values()) and not errors,
        "models": list(models.values()),
        "suite_file_errors": errors,
    }


def model_status(checks: list[dict[str, Any]]) -> str:
    """``failed`` when a threshold failed, ``error`` when a check could not be measured, else ``passed``."""
    statuses = {c.get("status") for c in checks}
    return "failed" if "failed" in statuses else "error" if "error" in statuses else "passed"


def _errors(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cause that kept checks from being measured, once, with the checks it stopped."""
    causes: dict[str, list[str]] = {}
    for c in checks:
        if c.get("error") is not None:
            causes.setdefault(c["error"], []).append(f"{c['name']}[{c['variant']}]" if c["variant"] else c["name"])
    return [{"cause": cause, "checks": names} for cause, names in causes.items()]

