"""``qcheck_*.toml`` files in a repository: suites that name the models they check.

pytest collects them as it collects ``test_*.py``. Each check on each model a file names is an
item whose node id points at the file (``models/qcheck_kws.toml::accuracy_drop[kws.keras]``).
The format is a suite's (``extends``, ``description``, ``[checks.<name>]``) plus what to run it on:

    model = "../models/kws.keras"        # or models = [...]
    data = "../data/kws_val.npz"         # optional where [tool.qcheck] sets it
    calibration = "../data/kws_cal.npz"  # optional
    calibration_samples = 300            # optional
    reference = "../models/kws.keras"    # optional: the float model of a .tflite
    stateful = "keep"                    # optional: the data is one long sequence (default "reset")

Paths are relative to the file. A file without ``extends`` extends the project's suite
(``[tool.qcheck] suite``, else the built-in default); ``--qcheck-suite`` replaces what it extends,
and the command line's thresholds apply over the file's. Errors name the file and the key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qcheck.config import CommandLine, Quantization, RunSpec, Settings
from qcheck.errors import QcheckError
from qcheck.items import QcheckItem
from qcheck.project import ProjectConfig
from qcheck.resolver import accelerators, calibration_samples, named_model_spec, project_accelerators, suite_extends
from qcheck.runner import PlannedCheck, plan
from qcheck.session import QcheckSession
from qcheck.suites import CheckSpec, Suite, suite_from_document
from qcheck.toml_files import parse_toml, read_text, resolve, shown
from qcheck.units import positive_int

RUN_KEYS = frozenset({"model", "models", "data", "calibration", "calibration_samples", "reference", "stateful"})


@dataclass(frozen=True)
class SuiteFile:
    """A validated ``qcheck_*.toml``: its resolved suite and the models it checks."""

    suite: Suite
    models: tuple[tuple[str, RunSpec], ...]  # (the model as the file writes it, what it runs with)
    own_accelerators: frozenset[str]  # checks whose table in this file sets an accelerator
    lines: dict[str, int]  # check name -> 0-based line of its [checks.<name>] table
    # The files it names, as (path, what): the runs may drop one (a calibration set where the
    # recipe calibrates on the data), yet no artifact may be written over it.
    inputs: tuple[tuple[str, str], ...] = ()

    def plan(self, command_line: CommandLine, project: ProjectConfig) -> Iterator[tuple[str, PlannedCheck]]:
        """(item name, planned check) for every enabled check on every model."""
        def accelerators_of(spec: CheckSpec) -> tuple[str, ...]:
            return accelerators(spec, self.suite, command_line=command_line.accelerators,
                                own_table=spec.name in self.own_accelerators,
                                project=project_accelerators(command_line, project))

        for written, run in self.models:
            for planned in plan(run, self.suite, accelerators_of):
                yield f"{planned.spec.name}[{'-'.join(p for p in (written, planned.variant) if p)}]", planned


def read_suite_file(path: Path, source: str, settings: Settings, project: ProjectConfig,
                    command_line: CommandLine) -> SuiteFile:
    """Parse and validate ``path``; ``source`` names it in messages. Raises QcheckError."""
    text = read_text(path, source)
    doc = parse_toml(text, source)
    suite_doc = {key: value for key, value in doc.items() if key not in RUN_KEYS}
    suite_doc["extends"] = suite_extends(command_line, doc.get("extends"), project)
    suite = suite_from_document(suite_doc, source, path.stem, path.parent, (str(path.resolve()),),
                                extra_keys=RUN_KEYS)
    if command_line.overrides:
        suite = suite.with_overrides(command_line.overrides, "the command line")
    checks_doc = doc.get("checks", {})
    own = frozenset(name for name, table in checks_doc.items() if "accelerator" in table)
    models = _models(doc, path.parent, source, settings, project, command_line,
                     suite.quantization_for(settings.activations))
    here = path.parent
    named = tuple((_path(doc, key, here, source), what) for key, what in
                  (("data", "data"), ("calibration", "calibration data"), ("reference", "reference model")))
    return SuiteFile(suite, models, own, _table_lines(text, set(checks_doc)),
                     tuple((p, what) for p, what in named if p is not None))


def _models(doc: dict[str, Any], here: Path, source: str, settings: Settings, project: ProjectConfig,
            command_line: CommandLine, quantization: Quantization) -> tuple[tuple[str, RunSpec], ...]:
    if "model" in doc and "models" in doc:
        raise QcheckError(source, "sets both 'model' and 'models'; keep one")
    if "model" in doc:
        written = [_string(doc["model"], source, "model")]
    elif "models" in doc:
        models = doc["models"]
        if not isinstance(models, list) or not models:
            raise QcheckError(source, f"models must be a non-empty list of paths, not {shown(models)}")
        written = [_string(m, source, f"models[{i}]") for i, m in enumerate(models)]
    else:
        raise QcheckError(source, "names no model", 'add model = "path/to/model.keras" (or models = [...]), '
                                                    "relative to this file")
    duplicates = sorted(m for m, n in Counter(written).items() if n > 1)
    if duplicates:
        raise QcheckError(source, f"models: {shown(duplicates[0])} is listed twice")
    data, calibration = _path(doc, "data", here, source), _path(doc, "calibration", here, source)
    reference = _path(doc, "reference", here, source)
    samples = doc.get("calibration_samples")
    if samples is not None:
        try:
            positive_int(samples)
        except ValueError as exc:
            raise QcheckError(source, f"calibration_samples {exc}") from None
    samples = calibration_samples(command_line, samples, project, quantization.calibration_samples)
    stateful = doc.get("stateful", settings.stateful)
    if stateful not in ("reset", "keep"):
        raise QcheckError(source, f"stateful must be \"reset\" or \"keep\", not {stateful!r}")
    specs = []
    seen: dict[str, str] = {}  # resolved path -> as written
    for i, model in enumerate(written):
        key = "model" if "model" in doc else f"models[{i}]"
        resolved = _existing(here, model, source, key)
        if resolved in seen:
            raise QcheckError(source, f"models: {shown(seen[resolved])} and {shown(model)} are the same file; "
                                      "list it once")
        seen[resolved] = model
        specs.append((model, named_model_spec(settings, resolved, data=data, calibration=calibration,
                                              reference=reference, project=project, calibration_samples=samples,
                                              stateful=stateful, quantization=quantization)))
    return tuple(specs)


def _string(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise QcheckError(source, f"{key} must be a path (a string), not {shown(value)}")
    return value


def _path(doc: dict[str, Any], key: str, here: Path, source: str) -> str | None:
    if key not in doc:
        return None
    return _existing(here, _string(doc[key], source, key), source, key)


def _existing(here: Path, written: str, source: str, key: str) -> str:
    path = resolve(here, written, source, key)
    if not path.exists():
        raise QcheckError(source, f"{key}: {shown(written)} does not exist (looked for {path})")
    return str(path)


def _table_lines(text: str, names: set[str]) -> dict[str, int]:
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines()):
        header = line.split("#", 1)[0].strip()
        if header.startswith("[checks.") and header.endswith("]"):
            name = header[len("[checks."):-1].strip().strip('"')
            if name in names:
                lines.setdefault(name, number)
    return lines


# -- pytest collection ----------------------------------------------------------------------------


class QcheckFile(pytest.File):
    """A ``qcheck_*.toml`` file: one item per check and model it names."""

    def __init__(self, *, qsession: Callable[[], QcheckSession], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._qsession = qsession  # the run's session, made when first needed (qcheck.plugin.session_of)

    def collect(self) -> Iterator[SuiteFileItem]:
        qsession = self.qsession = self._qsession()
        project = qsession.project
        cli = qsession.settings.command_line
        suite_file = read_suite_file(self.path, self._source(), qsession.settings, project, cli)
        qsession.suite_files[self._source()] = suite_file  # its models' remedies are planned from it
        for named, what in suite_file.inputs:
            qsession.inputs.add(named, what)
        for name, planned in suite_file.plan(cli, project):
            yield SuiteFileItem.from_parent(self, name=name, planned=planned, suite_file=self._source(),
                                            line=suite_file.lines.get(planned.spec.name))

    def _source(self) -> str:
        """The file as messages name it: relative to the root folder, like its node id."""
        rootpath = self.config.rootpath
        return self.path.relative_to(rootpath).as_posix() if self.path.is_relative_to(rootpath) else str(self.path)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str | Any:  # type: ignore[override]
        if isinstance(excinfo.value, QcheckError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class SuiteFileItem(QcheckItem):
    """A check on a model, as a suite file asks for it; failures point at the file."""

    def __init__(self, *, line: int | None = None, suite_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._line = line
        self.suite_file = suite_file

    @property
    def qsession(self) -> QcheckSession:
        parent = self.parent
        assert isinstance(parent, QcheckFile)
        return parent.qsession

    def reportinfo(self) -> tuple[str, int | None, str]:
        return str(self.path), self._line, self.name
