"""The JSON report: deterministic, versioned, one entry per model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from qcheck import __version__
from qcheck.files import write_json
from qcheck.results import SCHEMA_VERSION, CheckResult
from qcheck.suites import Suite

# Model-level sections that checks contribute, merged across the checks of one model
# (docs/report-schema.md describes each).
_SECTIONS = ("quantization_info", "accuracy", "saturation", "vela", "notes", "layers", "tensors",
             "size_breakdown", "calibration", "tflm", "arena", "artifacts", "robustness", "consistency",
             "input_contract")


def build_report(results: Iterable[CheckResult], suite: Suite,
                 suite_file_errors: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The report document (schema_version 1) from the gathered results.

    ``suite_file_errors`` maps each ``qcheck_*.toml`` that could not be read to its error: its
    checks did not run, so the report does not pass.
    """
    errors = [{"file": path, "message": message} for path, message in sorted((suite_file_errors or {}).items())]
    # One entry per model and suite file: the same model in two suite files is checked twice,
    # perhaps with other data and thresholds, and its results must not merge.
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: (r.model, r.suite_file, r.check, r.variant)):
        entry = models.setdefault((r.model, r.suite_file), {"model": r.model, "suite": r.suite_file or suite.name,
                                                            "suite_file": r.suite_file, "checks": []})
        entry["checks"].append(r.to_dict())
        for key in _SECTIONS:
            if key not in r.sections:
                continue
            value = r.sections[key]
            if isinstance(value, dict) and isinstance(entry.get(key), dict):
                entry[key] = {**entry[key], **value}
            else:
                entry[key] = value
    for entry in models.values():
        checks = entry["checks"]
        entry["passed"] = all(c["passed"] is not False for c in checks)
    return {
        "schema_version": SCHEMA_VERSION,
        "qcheck_version": __version__,
        "passed": all(m["passed"] for m in models.values()) and not errors,
        "models": list(models.values()),
        "suite_file_errors": errors,
    }


def write_report(path: Path, results: Iterable[CheckResult], suite: Suite) -> None:
    write_json(path, build_report(results, suite))
