"""The session object: runs checks on the models, gathers results, writes the reports.

One instance per pytest run, made on first use (``qcheck.plugin.session_of``) and kept under a stash key.
Under pytest-xdist the workers run checks and send each result on ``report.user_properties``;
only the controller (or a run without xdist) gathers them and writes the reports.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qcheck.cache import Cache
from qcheck.checks import CheckDef, registry
from qcheck.config import DEFAULT_ACCELERATOR, RunSpec, Settings
from qcheck.errors import QcheckError, StepFailed
from qcheck.facts import FACTS_ATTRIBUTE, ReportFacts
from qcheck.files import InputFiles, safe_stem
from qcheck.pipeline import DataSource, ModelRun
from qcheck.progress import Progress
from qcheck.results import RESULT_PROPERTY, CheckResult
from qcheck.suites import CheckSpec, Suite
_SLOW_STEP = 1.0  # seconds: a check that took longer says so in the progress lines


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

    def __init__(self, settings: Settings, suite: Suite, progress: Progress | None = None) -> None:
        self.settings = settings
        self.suite = suite
        self.progress = progress or Progress()  # silent without a pytest config
        self._sources: dict[tuple[Any, ...], DataSource] = {}
        self._runs: dict[RunSpec, ModelRun] = {}
        self.cache = Cache(settings.cache_dir)
        self._stems: dict[RunSpec, str] = {}
        self.results: list[CheckResult] = []
        self.facts: list[ReportFacts] = []  # each model's, sent once by the process that ran its checks
        self.written: list[str] = []  # what the reports wrote, for the terminal summary
        self.notes: dict[str, list[str]] = {}
        self._ahead: dict[RunSpec, list[PlannedCheck]] = {}  # checks with slow work to start early
        self._ahead_threads: list[threading.Thread] = []
        self.inputs = InputFiles()  # what no artifact or report may be written over
        for model in settings.models:
            self._protect(settings.run_spec(model))
        self.inputs.add(settings.suite, "suite")
        self._causes: dict[str, list[tuple[BaseException, str]]] = {}  # per model: (cause, check that said it)

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
        vela = self.suite.checks.get("vela")
        fallback = vela.options.get("accelerator", DEFAULT_ACCELERATOR) if vela is not None else DEFAULT_ACCELERATOR
        return (str(spec.options.get("accelerator", fallback)),)

    # -- running -----------------------------------------------------------------------------

    def run(self, spec: RunSpec) -> ModelRun:
        """The pipeline for ``spec``, created on first use and shared by every item using it."""
        if spec not in self._runs:
            key = (spec.data, spec.calibration, spec.calibration_samples, spec.images)
            if key not in self._sources:
                self._sources[key] = DataSource(*key)
            self._protect(spec)
            self._runs[spec] = ModelRun(spec, self._stem(spec), self.settings.out_dir, self._sources[key],
                                        self.settings.timeout, self.cache, self.progress, inputs=self.inputs)
        return self._runs[spec]

    def _protect(self, spec: RunSpec) -> None:
        for path, what in ((spec.model, "model"), (spec.reference, "reference model"), (spec.data, "data"),
                           (spec.calibration, "calibration data")):
            self.inputs.add(path, what)

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
                self._protect(spec)

    def clashes(self) -> list[str]:
        """Artifacts of the command line's models that would be written over one of the inputs
        (``--qcheck-out=.`` beside a model named ``m_quant.tflite``): found before anything runs."""
        found = []
        for model in self.settings.models:
            spec = self.settings.run_spec(model)
            stem, out = self._stem(spec), self.settings.out_dir
            names = [f"{stem}_quantization_info.json"]
            if Path(model).suffix.lower() != ".tflite":  # a .tflite is checked as it is, not converted
                names.insert(0, f"{stem}_quant.tflite")
            for name in names:
                owner = self.inputs.owner(out / name)
                if owner is not None:
                    found.append(f"{out / name}: {model}'s artifact would be written over the {owner}; "
                                 "qcheck never writes over its inputs: choose another --qcheck-out")
        return found

    def _stem(self, spec: RunSpec) -> str:
        """Artifact names from the model's file name, made unique within the session.

        The command line's models are named first, in their order, whichever is used first:
        every xdist worker must give a model the same name, or two models that share a file
        name would write over each other's artifacts.
        """
        if spec not in self._stems:
            for model in self.settings.models:
                self._assign_stem(self.settings.run_spec(model))
            self._assign_stem(spec)
        return self._stems[spec]

    def _assign_stem(self, spec: RunSpec) -> None:
        if spec not in self._stems:
            path = Path(spec.model)
            stem = safe_stem(path.stem if path.suffix else path.name)
            taken = set(self._stems.values())
            candidate, n = stem, 2
            while candidate in taken:
                candidate, n = f"{stem}-{n}", n + 1
            self._stems[spec] = candidate

    def expect(self, planned: Iterable[PlannedCheck]) -> None:
        """The checks this process is to run (after -k/-m), so that slow work they will need
        starts ahead: Vela compiles on a background thread while the model's evaluation runs.

        Under pytest-xdist every worker collects every item; with qcheck's per-model groups a
        model's checks all run on the worker that starts its first one.
        """
        checks = registry()
        for item in planned:
            if checks[item.spec.name].prepare is not None:
                self._ahead.setdefault(item.run, []).append(item)

    def _start_ahead(self, run: RunSpec) -> None:
        planned = self._ahead.pop(run, [])
        if not planned:
            return
        evidence, checks = self.run(run), registry()

        def prepare() -> None:
            for item in planned:
                start = checks[item.spec.name].prepare
                assert start is not None
                try:
                    start(evidence, self._options(item))
                except Exception:
                    pass  # the check asks for the same work, and reports what went wrong

        thread = threading.Thread(target=prepare, name=f"qcheck-ahead-{self._stem(run)}", daemon=True)
        thread.start()
        self._ahead_threads.append(thread)

    def _options(self, planned: PlannedCheck) -> dict[str, Any]:
        check = registry()[planned.spec.name]
        options = dict(planned.spec.options)
        if check.per_accelerator and planned.spec.name != "vela" and "vela" in self.suite.checks:
            # The memory checks describe the same compilation as vela: its target options
            # (system_config, memory_mode, config_file) apply unless the check sets its own.
            inherited = {k: v for k, v in self.suite.checks["vela"].options.items() if k in check.options}
            options = {**inherited, **options}
        if planned.variant:
            options["accelerator"] = planned.variant
        return options

    def check(self, planned: PlannedCheck) -> CheckResult:
        """Measure and judge one planned check; every failure becomes a failed result."""
        from qcheck.verdict import error_result, judge

        check: CheckDef = registry()[planned.spec.name]
        options = self._options(planned)
        self._start_ahead(planned.run)
        evidence = self.run(planned.run)
        label = f"{planned.spec.name}[{planned.variant}]" if planned.variant else planned.spec.name
        self.progress.step(planned.model, f"check {label} ...")
        started = time.monotonic()
        try:
            measurement = check.measure(evidence, options)
        except (QcheckError, StepFailed) as exc:
            see = self._first_to_report(planned.model, exc, label)
            return error_result(planned.model, check, planned.spec, exc, planned.variant, see=see)
        except OSError as exc:  # the file system said no (a file where a folder goes, a full disk): not a bug
            return error_result(planned.model, check, planned.spec, _os_failure(exc), planned.variant)
        except Exception as exc:  # a bug in qcheck: this check errors with its text, the session goes on
            return error_result(planned.model, check, planned.spec, _internal(exc), planned.variant)
        finally:
            elapsed = time.monotonic() - started
            if elapsed >= _SLOW_STEP:
                self.progress.step(planned.model, f"check {label} measured in {elapsed:.1f} s")
        return judge(planned.model, check, planned.spec, measurement, planned.variant)

    def _first_to_report(self, model: str, cause: BaseException, label: str) -> str:
        """The check that already reported ``cause`` for ``model`` in full, or "" if this one is first.

        A failed step is remembered and raised again, the same exception, to every check that
        needs it (:class:`qcheck.pipeline.Memo`): a model that cannot be loaded is one error, said
        once, and its other checks point to it.
        """
        seen = self._causes.setdefault(model, [])
        for known, first in seen:
            if known is cause:
                return first
        seen.append((cause, label))
        return ""

    # -- gathering ---------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)  # before pytest-html reads the report's extras
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
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
        for thread in self._ahead_threads:
            thread.join()  # no Vela process outlives the session
        if hasattr(session.config, "workerinput"):
            return  # xdist worker: the controller writes the reports
        settings = self.settings
        broken = _broken_suite_files(session.config)
        if not (self.results or broken) or not (settings.json_path or settings.html_path or settings.csv_dir):
            return
        from qcheck.report.json_report import build_report

        report = build_report(self.results, self.suite, broken, self.facts)
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

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        broken = _broken_suite_files(terminalreporter.config)
        if hasattr(terminalreporter.config, "workerinput") or not (self.results or broken or self.settings.notes):
            return
        from qcheck.report.terminal import render

        terminalreporter.section("qcheck")
        for line in render(self.results, verbose=terminalreporter.verbosity > 0, facts=self.facts):
            terminalreporter.line(line)
        for note in self.settings.notes:
            terminalreporter.line(f"qcheck: {note}")
        for path in sorted(broken):
            terminalreporter.line(f"qcheck: {path} did not run: it has an error (see ERROR collecting {path} above)")
        for line in self.written:
            terminalreporter.line(f"qcheck: {line}")


def _broken_suite_files(config: pytest.Config) -> dict[str, str]:
    """The ``qcheck_*.toml`` files that could not be collected: node id -> the error."""
    from qcheck.plugin import SUITE_ERRORS_KEY

    return config.stash.get(SUITE_ERRORS_KEY, {})


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


def _os_failure(exc: OSError) -> StepFailed:
    """A file-system error as the path and what the system said about it."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return StepFailed(f"{paths or 'a file'}: {exc.strerror or exc} (check the folders qcheck writes into: "
                      "a file where a folder goes, a full disk, permissions)")


def _internal(exc: Exception) -> StepFailed:
    """An unexpected exception as one line that says where it happened, for a bug report."""
    import traceback

    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return StepFailed(f"internal error in qcheck ({type(exc).__name__}: {exc}, at {Path(frame.filename).name}:"
                      f"{frame.lineno}); please report it with the model")


def encode(result: CheckResult) -> str:
    """A result as JSON text for ``user_properties`` (xdist sends it to the controller)."""
    return json.dumps({**result.to_dict(), "sections": result.sections}, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)
