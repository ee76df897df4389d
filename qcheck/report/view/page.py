"""The page and its model entries, assembled from the sections' views."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from qcheck.report.charts import Chart
from qcheck.report.view.accuracy import Head, accuracy_chart, head
from qcheck.report.view.census import Census, census
from qcheck.report.view.layers import layers, size_breakdown, tensors
from qcheck.report.view.links import Link, artifacts
from qcheck.report.view.targets import VelaTarget, tflm, vela_target
from qcheck.report.view.values import ChartBlock, Table, check_verdict, find_check, model_verdict, number
from qcheck.units import format_quantity


@dataclass(frozen=True)
class CheckRow:
    """One check of a model, as the checks table shows it."""

    name: str
    variant: str
    verdict: str  # pass, fail, error, skip
    value: str
    threshold: str
    message: str
    baseline: str = ""  # the baseline's value of this figure (--qcheck-baseline), "" without one
    change: str = ""  # since the baseline, with an arrow: "▲ +48 B worse"
    trend: str = ""  # same, better, worse, regressed: the change's colour


@dataclass(frozen=True)
class ModelView:
    """Everything the page shows about one model; absent sections are None or empty."""

    anchor: str
    name: str
    short_name: str
    suite_file: str  # the qcheck_*.toml that checked it; "" for the run's own suite
    passed: bool
    verdict: str  # pass, fail (a threshold failed), error (checks could not be measured)
    counts: Mapping[str, int]
    failed: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]  # (the checks, the cause), one per cause
    checks: tuple[CheckRow, ...]
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    heads: tuple[Head, ...]
    accuracy_chart: Chart | None
    census: Census | None
    layers: ChartBlock | None
    tensors: ChartBlock | None
    saturation: tuple[tuple[str, str], ...]
    vela: tuple[VelaTarget, ...]
    size: ChartBlock | None
    tflm: Table | None
    artifacts: tuple[Link, ...]


@dataclass(frozen=True)
class OverviewRow:
    """One model's line in the overview table (several models only)."""

    anchor: str
    name: str
    passed: bool
    verdict: str
    counts: Mapping[str, int]
    failed: str
    accuracy_drop: str
    size: str
    cpu_ops: str


@dataclass(frozen=True)
class Page:
    """The whole page: the run's verdict, the overview and the models."""

    passed: bool
    verdict: str
    qcheck_version: str
    schema_version: int
    suites: str
    models: tuple[ModelView, ...]
    overview: tuple[OverviewRow, ...]  # empty for a single model


def page(report: Mapping[str, Any], links_from: Path | None = None) -> Page:
    """The view of a whole report; artifact links are relative to the folder ``links_from``."""
    models = tuple(model_view(entry, i, links_from) for i, entry in enumerate(report.get("models", []), 1))
    overview = tuple(_overview_row(entry, view) for entry, view in zip(report.get("models", []), models, strict=True))
    suites = sorted({str(m.get("suite", "")) for m in report.get("models", []) if m.get("suite")})
    return Page(
        passed=bool(report.get("passed", True)),
        verdict=("fail" if any(m.verdict == "fail" for m in models) else
                 "error" if any(m.verdict == "error" for m in models) else "pass" if report.get("passed", True)
                 else "fail"),
        qcheck_version=str(report.get("qcheck_version", "")),
        schema_version=int(report.get("schema_version", 0)),
        suites=", ".join(suites),
        models=models,
        overview=overview if len(models) > 1 else (),
    )


def model_view(entry: Mapping[str, Any], index: int = 1, links_from: Path | None = None) -> ModelView:
    """The view of one model entry of the report."""
    checks = list(entry.get("checks", []))
    name = str(entry.get("model", ""))
    counts = {"pass": 0, "fail": 0, "error": 0, "skip": 0}
    for c in checks:
        counts[check_verdict(c)] += 1
    return ModelView(
        anchor=f"model-{index}",
        name=name,
        short_name=PurePosixPath(name.replace("\\", "/")).name or name,
        suite_file=str(entry.get("suite_file") or ""),
        passed=bool(entry.get("passed", counts["fail"] + counts["error"] == 0)),
        verdict=model_verdict(counts),
        counts=counts,
        failed=tuple(_check_label(c) for c in checks if check_verdict(c) == "fail"),
        errors=tuple((", ".join(str(n) for n in e.get("checks", [])), str(e.get("cause", "")))
                     for e in entry.get("errors", [])),
        checks=tuple(_check_row(c) for c in checks),
        notes=tuple(str(n) for n in entry.get("notes", [])),
        warnings=tuple(str(w) for w in (entry.get("calibration") or {}).get("warnings", [])),
        heads=tuple(head(output, data) for output, data in sorted((entry.get("accuracy") or {}).items())),
        accuracy_chart=accuracy_chart(entry.get("accuracy") or {}, find_check(checks, "accuracy_drop")),
        census=census(entry.get("quantization_info")),
        layers=layers(entry.get("layers") or []),
        tensors=tensors(entry.get("tensors") or [], find_check(checks, "saturation")),
        saturation=tuple((label, format_quantity(share, "fraction"))
                         for label, share in sorted((entry.get("saturation") or {}).items())),
        vela=tuple(vela_target(acc, data, checks) for acc, data in sorted((entry.get("vela") or {}).items())),
        size=size_breakdown(entry.get("size_breakdown") or []),
        tflm=tflm(entry.get("tflm"), entry.get("arena"), entry.get("tflm_parity"), entry.get("tflm_cpu"),
                  entry.get("tflm_cpu_parity")),
        artifacts=artifacts(entry.get("artifacts") or {}, links_from),
    )


def _check_label(check: Mapping[str, Any]) -> str:
    variant = check.get("variant") or ""
    return f"{check.get('name')}[{variant}]" if variant else str(check.get("name"))


def _check_row(check: Mapping[str, Any]) -> CheckRow:
    unit = str(check.get("unit", "count"))
    return CheckRow(
        name=str(check.get("name", "")),
        variant=str(check.get("variant") or ""),
        verdict=check_verdict(check),
        value=format_quantity(number(check.get("value")), unit),
        threshold=format_quantity(number(check.get("threshold")), unit),
        message=str(check.get("message", "")),
        **_baseline_cells(check.get("baseline"), unit),
    )


def _baseline_cells(entry: Any, unit: str) -> dict[str, str]:
    """The baseline columns of a check's row: its value then, and the change with an arrow."""
    from qcheck.baseline.report import cells

    if not isinstance(entry, Mapping):
        return {}
    base, change = cells(dict(entry), unit)
    delta = number(entry.get("delta"))
    arrow = "" if not delta else "▲ " if delta > 0 else "▼ "
    return {"baseline": base, "change": arrow + change, "trend": str(entry.get("verdict", ""))}


def _overview_row(entry: Mapping[str, Any], view: ModelView) -> OverviewRow:
    checks = entry.get("checks", [])
    drop = find_check(checks, "accuracy_drop")
    size = find_check(checks, "size")
    cpu = [v for c in checks if c.get("name") == "vela" and (v := number(c.get("value"))) is not None]
    return OverviewRow(
        anchor=view.anchor,
        name=view.name,
        passed=view.passed,
        verdict=view.verdict,
        counts=view.counts,
        failed=", ".join(view.failed),
        accuracy_drop=format_quantity(number(drop.get("value")), "fraction") if drop else "-",
        size=format_quantity(number(size.get("value")), "bytes") if size else "-",
        cpu_ops=f"{max(cpu):.0f}" if cpu else "-",
    )
