"""The test items: one per check, model and (for target checks) accelerator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

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
