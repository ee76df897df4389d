"""The test items: one per check, model and (for target checks) accelerator."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from qcheck.config import RunSpec
from qcheck.facts import FACTS_ATTRIBUTE, ReportFacts
from qcheck.results import RESULT_PROPERTY, CheckResult
from qcheck.runner import PlannedCheck
from qcheck.session import QcheckSession, encode


class CheckFailed(AssertionError):
    """A check's verdict was 'failed'; its message is the whole report (no traceback)."""


class QcheckModels(pytest.Collector):
    """The checks of the models given on the command line or in the ini file."""

    def __init__(self, *, qsession: QcheckSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.qsession = qsession

    def collect(self) -> Iterator[QcheckItem]:
        for planned in self.qsession.plan():
            yield QcheckItem.from_parent(self, name=planned.item_name, planned=planned)


class QcheckItem(pytest.Item):
    """Runs one planned check; passes, fails with the check's message, or skips with its reason.

    The check is measured in the item's setup, so that a check that could not be measured (a
    step it needs failed: the model does not load, the interpreter crashed) is a pytest *error*,
    as a broken fixture is, and not a failure: ERROR in the terminal, ``<error>`` in --junitxml.
    """

    suite_file = ""  # where the check came from, when a qcheck_*.toml asked for it

    def __init__(self, *, planned: PlannedCheck, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = planned
        self._result: CheckResult | None = None
        self.add_marker(pytest.mark.qcheck_check(planned.spec.name))
        # Under pytest-xdist's loadgroup scheduling, all checks of a model run on one worker,
        # so each model is converted and evaluated once, and models spread over the workers.
        # Without xdist the mark is unknown (a warning, an error under --strict-markers).
        if self.config.pluginmanager.hasplugin("xdist"):
            self.add_marker(pytest.mark.xdist_group(name=planned.model))

    @property
    def qsession(self) -> QcheckSession:
        parent = self.parent
        assert isinstance(parent, QcheckModels)
        return parent.qsession

    def setup(self) -> None:
        result = self.qsession.check(self.planned)
        if self.suite_file:
            result = replace(result, suite_file=self.suite_file)
        self._result = result
        if result.status == "error":
            self._record(result)
            pytest.fail(result.message, pytrace=False)

    def runtest(self) -> None:
        result = self._result
        assert result is not None  # measured in setup
        self._record(result)
        if result.passed is None:
            pytest.skip(result.message)
        if not result.passed:
            raise CheckFailed(result.message)

    def _record(self, result: CheckResult) -> None:
        self.user_properties.append((RESULT_PROPERTY, encode(result)))
        # Plain properties for --junitxml readers (CI dashboards).
        self.user_properties.append(("qcheck_value", "" if result.value is None else result.value))
        self.user_properties.append(("qcheck_threshold", "" if result.threshold is None else result.threshold))
        self.user_properties.append(("qcheck_unit", result.unit))
        self.user_properties.append(("qcheck_status", result.status))
        if result.check == "baseline":
            from qcheck.baseline.report import junit_properties

            self.user_properties.extend(junit_properties(result.sections.get("baseline")))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return self.planned.model, None, f"qcheck {self.name}"


# Whether the item is the last of its model's checks in a row: set before it runs.
_LAST_OF_MODEL = pytest.StashKey[bool]()
# The key of an xdist worker's output holding the facts of models it stopped before finishing.
_UNSENT_OUTPUT = "qcheck_unsent_facts"


class FactsCourier:
    """Sends each model's facts (:class:`qcheck.facts.ModelFacts`) once, with the result of the
    last of its checks that this process runs.

    A model's checks run in a row (under pytest-xdist on one worker, see :mod:`qcheck.xdist_groups`),
    so the item whose next item checks another model, or that has none, is the last: the report
    that carries its result carries the model's facts too (in :data:`qcheck.facts.FACTS_ATTRIBUTE`,
    sent to the controller by pytest-xdist and left out of --junitxml), and the session adds them
    to the model's report entry. When the run stops before a model's last check (``-x``), the
    process that writes the reports takes that model's facts at the end (from an xdist worker,
    through the worker's output).
    """

    def __init__(self, qsession: QcheckSession) -> None:
        self._qsession = qsession
        self._unsent: dict[tuple[RunSpec, str], QcheckItem] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        if isinstance(item, QcheckItem):
            item.stash[_LAST_OF_MODEL] = _model_of(nextitem) != _model_of(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        # The report its result travels with (see QcheckItem: an error is recorded in setup).
        if isinstance(item, QcheckItem) and (report.when == "call" or (report.when == "setup" and report.failed)):
            if item.stash.get(_LAST_OF_MODEL, True):
                setattr(report, FACTS_ATTRIBUTE, _facts(item).encode())
                self._unsent.pop((item.planned.run, item.suite_file), None)
            else:
                self._unsent[(item.planned.run, item.suite_file)] = item
        return report

    @pytest.hookimpl(tryfirst=True)  # before the session writes the reports
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self._unsent:
            self._qsession.runner.join()  # what was started ahead (Vela) is in the facts, whenever -x stopped
        unsent = [_facts(item) for item in self._unsent.values()]
        self._unsent.clear()
        output = getattr(session.config, "workeroutput", None)
        if output is not None:
            # An xdist worker stopped before a model's last check (-x): no report of its will
            # carry the facts, so they go with the worker's output, which the controller reads
            # when the worker finishes (pytest_testnodedown, before the controller's reports).
            output[_UNSENT_OUTPUT] = [facts.encode() for facts in unsent]
        else:
            self._qsession.facts.extend(unsent)

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, on the controller
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        sent = getattr(node, "workeroutput", {}).get(_UNSENT_OUTPUT, [])
        self._qsession.facts.extend(ReportFacts.decode(str(text)) for text in sent)


def _model_of(item: pytest.Item | None) -> tuple[RunSpec, str] | None:
    """The model run and suite file whose facts ``item`` adds to (None: not a check item)."""
    return (item.planned.run, item.suite_file) if isinstance(item, QcheckItem) else None


def _facts(item: QcheckItem) -> ReportFacts:
    """The facts of ``item``'s model, for its report entry (model as given, suite file)."""
    try:
        sections = item.qsession.run(item.planned.run).facts().sections()
    except Exception as exc:  # a bug in qcheck: inside pytest's hooks it would end the session
        sections = {"notes": [f"internal error in qcheck gathering the model's facts for the report "
                              f"({type(exc).__name__}: {exc}); please report it with the model"]}
    return ReportFacts(item.planned.model, item.suite_file, sections)
