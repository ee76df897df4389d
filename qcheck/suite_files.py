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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qcheck.config import DEFAULT_ACCELERATOR, DEFAULT_CALIBRATION_SAMPLES, Quantization, RunSpec, Settings
from qcheck.errors import QcheckError
from qcheck.items import QcheckItem
from qcheck.project import ProjectConfig, looks_like_path
from qcheck.session import PlannedCheck, QcheckSession
from qcheck.suites import CheckSpec, Suite, suite_from_document
from qcheck.toml_files import parse_toml, read_text, resolve, shown
from qcheck.units import positive_int

RUN_KEYS = frozenset({"model", "models", "data", "calibration", "calibration_samples", "reference", "stateful"})


@dataclass(frozen=True)
class CommandLine:
    """What the command line sets that would otherwise come from a suite file or the project."""

    suite: str | None = None  # a built-in suite's name or an absolute path
    accelerators: tuple[str, ...] = ()
    calibration_samples: int | None = None
    overrides: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class SuiteFile:
    """A validated ``qcheck_*.toml``: its resolved suite and the models it checks."""

    suite: Suite
    models: tuple[tuple[str, RunSpec], ...]  # (the model as the file writes it, what it runs with)
    own_accelerators: frozenset[str]  # checks whose table in this file sets an accelerator
    lines: dict[str, int]  # check name -> 0-based line of its [checks.<name>] table

    def plan(self, command_line: CommandLine, project: ProjectConfig) -> Iterator[tuple[str, PlannedCheck]]:
        """(item name, planned check) for every enabled check on every model."""
        from qcheck.checks import registry

        checks = registry()
        for written, run in self.models:
            for spec in self.suite.enabled():
                if not checks[spec.name].per_accelerator:
                    yield f"{spec.name}[{written}]", PlannedCheck(run, spec)
                    continue
                for accelerator in self.accelerators(spec, command_line, project):
                    yield f"{spec.name}[{written}-{accelerator}]", PlannedCheck(run, spec, accelerator)

    def accelerators(self, spec: CheckSpec, command_line: CommandLine, project: ProjectConfig) -> tuple[str, ...]:
        """The command line's, else this file's own table's, else the project's, else the suite's."""
        if command_line.accelerators:
            return command_line.accelerators
        if spec.name in self.own_accelerators or not project.accelerators:
            return (str(spec.options.get("accelerator", DEFAULT_ACCELERATOR)),)
        return project.accelerators


def read_suite_file(path: Path, source: str, settings: Settings, project: ProjectConfig,
                    command_line: CommandLine) -> SuiteFile:
    """Parse and validate ``path``; ``source`` names it in messages. Raises QcheckError."""
    text = read_text(path, source)
    doc = parse_toml(text, source)
    suite_doc = {key: value for key, value in doc.items() if key not in RUN_KEYS}
    if command_line.suite is not None:
        suite_doc["extends"] = command_line.suite
    elif "extends" not in doc:
        suite_doc["extends"] = project.suite or "default"
    suite = suite_from_document(suite_doc, source, path.stem, path.parent, (str(path.resolve()),),
                                extra_keys=RUN_KEYS)
    if command_line.overrides:
        suite = suite.with_overrides(command_line.overrides, "the command line")
    checks_doc = doc.get("checks", {})
    own = frozenset(name for name, table in checks_doc.items() if "accelerator" in table)
    models = _models(doc, path.parent, source, settings, project, command_line,
                     suite.quantization_for(settings.activations))
    return SuiteFile(suite, models, own,
                     _table_lines(text, set(checks_doc)))


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
    data = _path(doc, "data", here, source) or project.data
    calibration = _path(doc, "calibration", here, source) or project.calibration
    reference = _path(doc, "reference", here, source) or project.reference
    samples = doc.get("calibration_samples")
    if samples is not None:
        try:
            positive_int(samples)
        except ValueError as exc:
            raise QcheckError(source, f"calibration_samples {exc}") from None
    samples = (quantization.calibration_samples or command_line.calibration_samples or samples
               or project.calibration_samples or DEFAULT_CALIBRATION_SAMPLES)  # the recipe's first
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
        specs.append((model, RunSpec(resolved, data, calibration, samples, reference, settings.io_dtype,
                                     settings.unsafe_deserialization, settings.images, stateful, quantization)))
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


def command_line(config: pytest.Config, settings: Settings) -> CommandLine:
    """The settings of this run's command line that a suite file's would otherwise decide."""
    opt = config.option
    suite = opt.qcheck_suite
    if suite and looks_like_path(suite):
        suite = str((config.invocation_params.dir / suite).resolve())
    accelerators = tuple(a.strip() for a in (opt.qcheck_accelerator or "").split(",") if a.strip())
    return CommandLine(suite or None, accelerators, opt.qcheck_calibration_samples, settings.overrides)


class QcheckFile(pytest.File):
    """A ``qcheck_*.toml`` file: one item per check and model it names."""

    def collect(self) -> Iterator[SuiteFileItem]:
        from qcheck.plugin import project_of, session_of

        qsession = session_of(self.config)
        project = project_of(self.config)
        cli = command_line(self.config, qsession.settings)
        suite_file = read_suite_file(self.path, self._source(), qsession.settings, project, cli)
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
        from qcheck.plugin import session_of

        return session_of(self.config)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return str(self.path), self._line, self.name
