"""``@pytest.mark.qcheck``: run a test against a model, with thresholds for the assertion helpers.

    @pytest.mark.qcheck(model="../models/kws.keras", data="../data/kws_val.npz", accuracy_drop="2%")
    def test_kws(qcheck_quantized, qcheck_data):
        qcheck.assert_accuracy_drop(qcheck_quantized, qcheck_data)  # judged against 2%

Paths are relative to the test file. A marker that names a model brings that model's data and
calibration (``[tool.qcheck]``'s when it names none), so ``data``, ``calibration`` and
``reference`` need ``model``. A threshold is a check's ``max`` (``size="300KB"``) or a table
(``vela={"max": 0, "accelerator": "ethos-u85-256"}``). The command line still wins over a marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from qcheck.config import RunSpec, Settings
from qcheck.errors import QcheckError, suggest
from qcheck.inputs import as_given
from qcheck.resolver import named_model_spec, run_spec

if TYPE_CHECKING:
    from qcheck.project import ProjectConfig
    from qcheck.files import InputFiles
    from qcheck.session import QcheckSession
    from qcheck.suites import Suite

MARKER = "qcheck"
RUN_KEYS = ("model", "data", "calibration", "reference")


@dataclass(frozen=True)
class MarkerRequest:
    """What one ``@pytest.mark.qcheck`` asks for, its paths made absolute."""

    model: str | None = None
    model_as_written: str | None = None
    data: str | None = None
    calibration: str | None = None
    reference: str | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_marker(mark: pytest.Mark, here: Path, origin: str) -> MarkerRequest:
    """Validate the marker's arguments; every problem is a QcheckError naming ``origin``."""
    from qcheck.checks import registry
    from qcheck.suites import Suite

    if mark.args:
        raise QcheckError(origin, "takes keyword arguments only, e.g. model=\"model.keras\", accuracy_drop=\"2%\"")
    checks = registry()
    paths: dict[str, str] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in mark.kwargs.items():
        if key in RUN_KEYS:
            if not isinstance(value, (str, Path)) or not str(value):
                raise QcheckError(origin, f"{key} must be a path, not {value!r}")
            path = as_given(here / value)  # a link keeps its name: it says the model's kind
            if not path.exists():
                raise QcheckError(origin, f"{key}: '{value}' does not exist (looked for {path})")
            paths[key] = str(path)
        elif key in checks:
            overrides[key] = dict(value) if isinstance(value, dict) else {"max": value}
        else:
            raise QcheckError(origin, f"unknown argument '{key}'{suggest(key, [*RUN_KEYS, *checks])}",
                              "it takes " + ", ".join(RUN_KEYS) + " and check names: " + ", ".join(sorted(checks)))
    needs_model = [key for key in ("data", "calibration", "reference") if key in paths]
    if needs_model and "model" not in paths:
        raise QcheckError(origin, f"{needs_model[0]}= needs model=: data goes with the model it belongs to",
                          "the command line's and [tool.qcheck]'s data apply to their own models")
    Suite("marker", origin, "", {}).with_overrides(overrides, origin)  # validates names, units, options
    model = mark.kwargs.get("model")
    return MarkerRequest(paths.get("model"), str(model) if model is not None else None, paths.get("data"),
                         paths.get("calibration"), paths.get("reference"), overrides)


@dataclass(frozen=True)
class InvalidMarker:
    """Stands for the run spec of a test whose marker is wrong: the test errors with ``message``."""

    message: str


class MarkedNode(Protocol):
    """What qcheck reads of a test's node (a ``pytest.Item`` has it): its marker, file and id."""

    @property
    def path(self) -> Path: ...

    @property
    def nodeid(self) -> str: ...

    def get_closest_marker(self, name: str) -> pytest.Mark | None: ...


def _request(node: MarkedNode) -> MarkerRequest | InvalidMarker | None:
    mark = node.get_closest_marker(MARKER)
    if mark is None:
        return None
    try:
        return read_marker(mark, node.path.parent, f"@pytest.mark.qcheck on {node.nodeid}")
    except QcheckError as exc:
        return InvalidMarker(str(exc))


def parametrization(definition: MarkedNode, settings: Settings, project: ProjectConfig,
                    inputs: InputFiles | None = None) -> tuple[list[RunSpec | InvalidMarker], list[str]]:
    """The run specs a test using qcheck's fixtures runs with, and their test ids.

    A wrong marker gives the test one ``InvalidMarker`` spec: that test errors at setup with the
    marker's problem, and the other tests of its module still run.
    """
    request = _request(definition)
    if isinstance(request, InvalidMarker):
        return [request], ["invalid-marker"]
    if request is None or request.model is None:
        return [run_spec(settings, model) for model in settings.models], list(settings.models)
    spec = named_model_spec(settings, request.model, data=request.data, calibration=request.calibration,
                            reference=request.reference, project=project)
    if inputs is not None:  # the user's file, even where the recipe calibrates on the data and the spec drops it
        inputs.add(request.calibration, "calibration data")
    return [spec], [request.model_as_written or request.model]


def marked_suite(suite: Suite, marker: dict[str, dict[str, Any]], command_line: dict[str, dict[str, Any]],
                 origin: str) -> Suite:
    """``suite`` with a marker's thresholds over it, and the command line's over those."""
    if not marker:
        return suite
    return suite.with_overrides(marker, origin).with_overrides(command_line, "the command line")


def suite_for_test(node: pytest.Item, qsession: QcheckSession) -> Suite:
    """The run's suite (command line over [tool.qcheck]) with the test's marker applied."""
    request = _request(node)
    if isinstance(request, InvalidMarker):
        pytest.fail(request.message, pytrace=False)
    if request is None:
        return qsession.suite
    return marked_suite(qsession.suite, request.overrides, qsession.settings.overrides,
                        f"@pytest.mark.qcheck on {node.nodeid}")
