"""The session object: runs checks on the models, gathers results, writes the reports.

One instance per pytest run, registered in ``pytest_configure`` and reached through a stash key.
Under pytest-xdist the workers run checks and send each result on ``report.user_properties``;
only the controller (or a run without xdist) gathers them and writes the reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qcheck.cache import Cache
from qcheck.checks import CheckDef, registry
from qcheck.config import RunSpec, Settings
from qcheck.errors import QcheckError, StepFailed
from qcheck.files import safe_stem
from qcheck.pipeline import DataSource, ModelRun
from qcheck.results import CheckResult
from qcheck.suites import CheckSpec, Suite

RESULT_PROPERTY = "qcheck_result"


@dataclass(frozen=True)
class PlannedCheck:
    """One test item to be: a check on a model, for one accelerator where that matters."""

    run: RunSpec
    spec: CheckSpec
    variant: str = ""

    @property
    def model(self) -> str:
        return self.run.model

    @property
    def item_name(self) -> str:
        params = "-".join(p for p in (self.model, self.variant) if p)
        return f"{self.spec.name}[{params}]"


class QcheckSession:
    """Holds the run's settings and suite, the per-model pipelines and the gathered results."""

    def __init__(self, settings: Settings, suite: Suite) -> None:
        self.settings = settings
        self.suite = suite
        self._sources: dict[tuple[str | None, str | None, int], DataSource] = {}
        self._runs: dict[RunSpec, ModelRun] = {}
        self.cache = Cache(settings.cache_dir)
        self._stems: dict[RunSpec, str] = {}
        self.results: list[CheckResult] = []
        self.notes: dict[str, list[str]] = {}

    # -- planning ----------------------------------------------------------------------------

    def plan(self) -> Iterator[PlannedCheck]:
        checks = registry()
        for model in self.settings.models:
            run = self.settings.run_spec(model)
            for spec in self.suite.enabled():
                check = checks[spec.name]
                if check.per_accelerator:
                    for accelerator in self.accelerators(spec):
                        yield PlannedCheck(run, spec, accelerator)
                else:
                    yield PlannedCheck(run, spec)

    def accelerators(self, spec: CheckSpec) -> tuple[str, ...]:
        if self.settings.accelerators:
            return self.settings.accelerators
        return (str(spec.options.get("accelerator", "ethos-u55-128")),)

    # -- running -----------------------------------------------------------------------------

    def run(self, spec: RunSpec) -> ModelRun:
        """The pipeline for ``spec``, created on first use and shared by every item using it."""
        if spec not in self._runs:
            key = (spec.data, spec.calibration, spec.calibration_samples)
            if key not in self._sources:
                self._sources[key] = DataSource(*key)
            self._runs[spec] = ModelRun(spec, self._stem(spec), self.settings.out_dir, self._sources[key],
                                        self.settings.timeout, self.cache)
        return self._runs[spec]

    def _stem(self, spec: RunSpec) -> str:
        """Artifact names from the model's file name, made unique within the session."""
        if spec not in self._stems:
            path = Path(spec.model)
            stem = safe_stem(path.stem if path.suffix else path.name)
            taken = set(self._stems.values())
            candidate, n = stem, 2
            while candidate in taken:
                candidate, n = f"{stem}-{n}", n + 1
            self._stems[spec] = candidate
        return self._stems[spec]

    def check(self, planned: PlannedCheck) -> CheckResult:
        """Measure and judge one planned check; every failure becomes a failed result."""
        from qcheck.verdict import error_result, judge

        check: CheckDef = registry()[planned.spec.name]
        options = dict(planned.spec.options)
        if planned.variant:
            options["accelerator"] = planned.variant
        evidence = self.run(planned.run)
        try:
            measurement = check.measure(evidence, options)
        except (QcheckError, StepFailed) as exc:
            return error_result(planned.model, check, planned.spec, exc, planned.variant)
        result = judge(planned.model, check, planned.spec, measurement, planned.variant)
        return _with_sections(result, evidence.sections())

    # -- gathering ---------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY and report.when == "call":
                self.results.append(CheckResult.from_json(value))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):
            return  # xdist worker: the controller writes the reports
        if self.settings.json_path is not None and self.results:
            from qcheck.report.json_report import write_report

            write_report(self.settings.json_path, self.results, self.suite)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(terminalreporter.config, "workerinput") or not self.results:
            return
        from qcheck.report.terminal import render

        terminalreporter.section("qcheck")
        for line in render(self.results, verbose=terminalreporter.verbosity > 0):
            terminalreporter.line(line)
        if self.settings.json_path is not None:
            terminalreporter.line(f"qcheck: JSON report written to {self.settings.json_path}")


def _with_sections(result: CheckResult, sections: dict[str, Any]) -> CheckResult:
    from dataclasses import replace

    return replace(result, sections={**sections, **result.sections})


def encode(result: CheckResult) -> str:
    """A result as JSON text for ``user_properties`` (xdist sends it to the controller)."""
    return json.dumps({**result.to_dict(), "sections": result.sections}, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)
