"""The session object: plans the command line's models, gathers results, writes the reports.

One instance per pytest run, made on first use (``qcheck.plugin.session_of``) and kept under a stash key.
Under pytest-xdist the workers run checks and send each result on ``report.user_properties``;
only the controller (or a run without xdist) gathers them and writes the reports.
"""

from __future__ import annotations

import json
from dataclasses import replace
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from qcheck.cache import Cache
from qcheck.config import CommandLine, RunSpec, Settings
from qcheck.errors import QcheckError
from qcheck.facts import FACTS_ATTRIBUTE, ReportFacts
from qcheck.files import InputFiles
from qcheck.pipeline import ModelRun
from qcheck.progress import Progress
from qcheck.project import ProjectConfig
from qcheck.resolver import accelerators, run_spec
from qcheck.results import RESULT_PROPERTY, CheckResult
from qcheck.runner import PlannedCheck, Runner, plan
from qcheck.suites import CheckSpec, Suite

if TYPE_CHECKING:
    from qcheck.remedies import Remedies


class SuiteFilePlan(Protocol):
    """A read ``qcheck_*.toml`` (:class:`qcheck.suite_files.SuiteFile`): the checks it plans."""

    def plan(self, command_line: CommandLine, project: ProjectConfig) -> Iterator[tuple[str, PlannedCheck]]: ...


class SuiteFileReader(Protocol):
    """:func:`qcheck.suite_files.read_suite_file`: the plugin hands it over (that module builds on this one)."""

    def __call__(self, path: Path, source: str, settings: Settings, project: ProjectConfig,
                 command_line: CommandLine) -> SuiteFilePlan: ...


class QcheckSession:
    """The run's settings and suite, its :class:`~qcheck.runner.Runner`, and the gathered results."""

    def __init__(self, settings: Settings, suite: Suite, progress: Progress | None = None, *,
                 project: ProjectConfig | None = None, broken: dict[str, str] | None = None,
                 read_suite_file: SuiteFileReader | None = None) -> None:
        self.settings = settings
        self.suite = suite
        self.project = project or ProjectConfig()  # [tool.qcheck]: what suite files and markers fall back on
        self.broken = broken if broken is not None else {}  # node id -> error of each unreadable qcheck_*.toml
        self.progress = progress or Progress()  # silent without a pytest config
        self.cache = Cache(settings.cache_dir)
        self.results: list[CheckResult] = []
        self.facts: list[ReportFacts] = []  # each model's, sent once by the process that ran its checks
        self.written: list[str] = []  # what the reports wrote, for the terminal summary
        self.inputs = InputFiles()  # what no artifact or report may be written over
        self.inputs.add(settings.suite, "suite")
        # Not in the models' RunSpecs where the recipe calibrates on the data (calibration_from), yet the user's.
        self.inputs.add(settings.calibration, "calibration data")
        self.runner = Runner(settings.out_dir, self.cache, settings.timeout, self.progress, inputs=self.inputs,
                             first=[run_spec(settings, model) for model in settings.models])
        self.remedies: list[Remedies] = []  # the recipes tried for failing models (--qcheck-remedies)
        # The qcheck_*.toml files collected, by source (qcheck.suite_files); the others whose results
        # come in (from xdist workers) are read with ``read_suite_file``, which the plugin hands over.
        self.suite_files: dict[str, SuiteFilePlan] = {}
        self.read_suite_file = read_suite_file

    def plan(self) -> Iterator[PlannedCheck]:
        """The checks of the command line's (or ``[tool.qcheck]``'s) models."""
        for model in self.settings.models:
            for planned in plan(run_spec(self.settings, model), self.suite, self.accelerators):
                yield self._with_baseline(planned) if planned.spec.name == "baseline" else planned

    def _with_baseline(self, planned: PlannedCheck) -> PlannedCheck:
        """The baseline check's folder and update mode are the run's to say (the command line or
        ``[tool.qcheck]``), never a suite file's: an untrusted suite cannot choose where qcheck writes."""
        from qcheck.baseline import target_options

        options = target_options(dict(planned.options), self.suite, self.settings.baseline_dir,
                                 self.settings.baseline_update, self.runner.stem(planned.run), self.inputs,
                                 self.accelerators)
        return replace(planned, options=options)

    def accelerators(self, spec: CheckSpec) -> tuple[str, ...]:
        return accelerators(spec, self.suite, command_line=self.settings.accelerators)

    def run(self, spec: RunSpec) -> ModelRun:
        """The pipeline for ``spec``, shared by every item and fixture using it."""
        return self.runner.model_run(spec)

    def check(self, planned: PlannedCheck) -> CheckResult:
        """Measure and judge one planned check; every failure becomes a failed result. A failed
        accuracy or saturation names the remedies that could be tried (qcheck.remedies)."""
        result = self.runner.execute(planned)
        if result.passed is not False:
            return result  # only a failure names remedies: a run that passes does not load them
        from qcheck.remedies.runner import with_hint

        return with_hint(result, self.run(planned.run), self.settings.remedies or planned.remedies)

    def protect(self, items: Iterable[pytest.Item]) -> None:
        """Add the collected items' files (test modules, suite files) and models to the inputs,
        before anything is written: a model named only in a suite file is an input too."""
        for item in items:
            self.inputs.add(item.path, "collected file")
            planned = getattr(item, "planned", None)
            spec = planned.run if isinstance(planned, PlannedCheck) else None
            callspec = getattr(item, "callspec", None)
            if spec is None and callspec is not None:
                spec = callspec.params.get("qcheck_run_spec")
            if isinstance(spec, RunSpec):
                self.runner.protect(spec)
                # Named in the order collected, the same in every xdist worker: named on first use,
                # two suite files' models of one file name were both "m" on their two workers, and
                # each wrote over the other's artifacts (its _quant.tflite, Vela's output).
                self.runner.stem(spec)

    def clashes(self) -> list[str]:
        """Artifacts of the command line's models that would be written over one of the inputs."""
        return self.runner.clashes()

    def expect(self, planned: Iterable[PlannedCheck]) -> None:
        """The checks this process is to run (after -k/-m): slow work they need starts ahead."""
        self.runner.expect(planned)

    # -- gathering ---------------------------------------------------------------------------

    def gather(self, report: pytest.TestReport) -> None:
        """Keep the check results ``report`` carries (a worker's, under xdist), from
        ``qcheck.plugin``'s ``pytest_runtest_logreport``."""
        sent = getattr(report, FACTS_ATTRIBUTE, None)  # with the result of a model's last check
        if sent is not None:
            self.facts.append(ReportFacts.decode(str(sent)))
        for name, value in report.user_properties:
            # A check that could not be measured errors in its item's setup (see qcheck.items).
            if name == RESULT_PROPERTY and (report.when == "call" or (report.when == "setup" and report.failed)):
                result = CheckResult.from_json(str(value))
                self.results.append(result)
                if self.settings.pytest_html_extras:
                    _attach_summary(report, self._model_entry(result))

    def _model_entry(self, result: CheckResult) -> dict[str, Any]:
        """The report entry of ``result``'s model (and suite file) from the results gathered so far."""
        from qcheck.report.json_report import build_report

        same = [r for r in self.results if (r.model, r.suite_file) == (result.model, result.suite_file)]
        report = build_report(same, self.suite, facts=self.facts)
        entry: dict[str, Any] = report["models"][0]
        return entry

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.runner.join()  # no Vela process outlives the session
        if hasattr(session.config, "workerinput"):
            return  # xdist worker: the controller writes the reports
        self._try_remedies(session.config.rootpath)
        settings = self.settings
        broken = self.broken
        from qcheck.shards import SHARD_KEY

        shard = session.config.stash.get(SHARD_KEY, None)  # a shard's report is written even when empty
        if not (self.results or broken or shard) or not (settings.json_path or settings.html_path or settings.csv_dir):
            return
        from qcheck.report.json_report import build_report

        report = build_report(self.results, self.suite, broken, self.facts)
        if shard is not None:
            report["shard"] = shard.report_section()  # for python -m qcheck merge
        if self.remedies:
            from qcheck.remedies import to_dict as remedies_dict

            report["remedies"] = [remedies_dict(r) for r in self.remedies]
        for result in self.results:
            self.inputs.add(result.model, "model")  # under xdist, the controller learns them here
        failed = False
        for path, write, what in ((settings.json_path, _write_json, "the JSON report"),
                                  (settings.html_path, _write_html, "the HTML report"),
                                  (settings.csv_dir, _write_csv, "the CSV tables")):
            if path is None:
                continue
            try:
                self.written.append(write(path, report, self.inputs))
            except (OSError, QcheckError) as exc:
                # The other reports are still written; the run fails, since what CI keeps is missing.
                failed = True
                self.written.append(f"ERROR: could not write {what} to {path}: {_why(exc, path)}")
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _try_remedies(self, rootpath: Path) -> None:
        """Other recipes for each model whose accuracy or saturation failed, where the command line
        or the suite the checks came from asks (qcheck.remedies): the command line's models and
        those of the suite files alike, each measured with the checks it was planned with."""
        from qcheck.remedies import REMEDIED_CHECKS

        failed = [r for r in self.results if r.passed is False]
        if not failed or not (self.settings.remedies or any(r.check in REMEDIED_CHECKS for r in failed)):
            return  # nothing to remedy: a run that passes does not load them
        from qcheck.remedies import Remedies, not_remedied
        from qcheck.remedies.runner import needs_remedies, table_name, try_remedies

        names: set[str] = set()  # the tables' artifact names (qcheck.remedies.runner.table_name)
        for suite_file, checks in self._planned_by_model(rootpath):
            if not (self.settings.remedies or checks[0].remedies):
                continue
            if not needs_remedies(self.results, checks[0].model, suite_file):
                # Asked for, and the model failed only checks no recipe addresses: say so, not nothing.
                others = sorted({r.check for r in failed if r.model == checks[0].model and r.suite_file == suite_file})
                if others:
                    self.remedies.append(Remedies(checks[0].model, (), (not_remedied(others),),
                                                  suite_file=suite_file))
            else:
                try:
                    name = table_name(checks[0].model, suite_file, rootpath, names)
                    self.remedies.append(try_remedies(self, checks, suite_file, name))
                except Exception as exc:  # a bug in qcheck: the reports are still written
                    self.remedies.append(Remedies(checks[0].model, (), (
                        f"remedies could not be tried: internal error in qcheck ({type(exc).__name__}: {exc}); "
                        "please report it with the model",), suite_file=suite_file))

    def _planned_by_model(self, rootpath: Path) -> Iterator[tuple[str, list[PlannedCheck]]]:
        """(suite file or "", the checks planned for one model) for the command line's models, then
        for those of the suite files whose results are gathered (read again where this process did
        not collect them: the xdist controller)."""
        for model in self.settings.models:
            yield "", list(plan(run_spec(self.settings, model), self.suite, self.accelerators))
        for source in sorted({r.suite_file for r in self.results if r.suite_file}):
            suite_file = self.suite_files.get(source)
            if suite_file is None and self.read_suite_file is not None:
                try:
                    suite_file = self.read_suite_file(rootpath / source, source, self.settings, self.project,
                                                      self.settings.command_line)
                except QcheckError:
                    continue  # reported when the file was collected
            if suite_file is None:
                continue
            by_run: dict[RunSpec, list[PlannedCheck]] = {}
            for _, planned in suite_file.plan(self.settings.command_line, self.project):
                by_run.setdefault(planned.run, []).append(planned)
            for checks in by_run.values():
                yield source, checks

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        broken = self.broken
        if hasattr(terminalreporter.config, "workerinput") or not (self.results or broken or self.settings.notes):
            return
        from qcheck.report.terminal import render

        terminalreporter.section("qcheck")
        for line in render(self.results, verbose=terminalreporter.verbosity > 0, facts=self.facts):
            terminalreporter.line(line)
        for remedies in self.remedies:
            from qcheck.remedies import render as render_remedies

            for line in render_remedies(remedies):
                terminalreporter.line(f"qcheck: {line}")
        for note in self.settings.notes:
            terminalreporter.line(f"qcheck: {note}")
        for path in sorted(broken):
            terminalreporter.line(f"qcheck: {path} did not run: it has an error (see ERROR collecting {path} above)")
        for line in self.written:
            terminalreporter.line(f"qcheck: {line}")


def _attach_summary(report: pytest.TestReport, entry: dict[str, Any]) -> None:
    """Add the model's summary to the item's report as a pytest-html extra (its ``extras`` API)."""
    try:
        from pytest_html import extras
    except ImportError:
        return
    from qcheck.report.html import render_summary

    report.extras = [*getattr(report, "extras", []), extras.html(render_summary(entry))]  # type: ignore[attr-defined]


def _write_json(path: Path, report: dict[str, Any], inputs: InputFiles) -> str:
    from qcheck.files import write_json

    write_json(path, report, named_by_user=True, never=inputs)
    return f"JSON report written to {path}"


def _write_html(path: Path, report: dict[str, Any], inputs: InputFiles) -> str:
    from datetime import UTC, datetime

    from qcheck.report.html import write_report

    write_report(path, report, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), never=inputs)
    return f"HTML report written to {path}"


def _write_csv(folder: Path, report: dict[str, Any], inputs: InputFiles) -> str:
    from qcheck.report.csv_tables import write_tables

    written = write_tables(folder, report, never=inputs)
    return f"{len(written)} CSV table(s) written to {folder}"


def _why(exc: OSError | QcheckError, path: Path) -> str:
    """What went wrong writing the report at ``path``, naming the file when it is another one."""
    if isinstance(exc, QcheckError):
        return exc.render() if exc.path != str(path) else QcheckError(None, exc.problem, exc.hint).render()
    where = exc.filename if exc.filename and exc.filename != str(path) else None
    return f"{exc.strerror or exc}" + (f" ({where})" if where else "")


def encode(result: CheckResult) -> str:
    """A result as JSON text for ``user_properties`` (xdist sends it to the controller)."""
    return json.dumps({**result.to_dict(), "sections": result.sections}, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)
