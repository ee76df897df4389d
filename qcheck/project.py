"""Project defaults: ``[tool.qcheck]`` in ``pyproject.toml`` and the ``qcheck_*`` ini keys.

Both name the same settings, with paths relative to the file that holds them. A setting given
in both places is an error, not a silent choice. The command line, ``@pytest.mark.qcheck`` and
``qcheck_*.toml`` suite files override these defaults; built-in defaults apply where nothing is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qcheck.errors import QcheckError, suggest
from qcheck.inputs import as_given
from qcheck.toml_files import check_depth, parse_toml, read_text, resolve, shown
from qcheck.units import positive_int

# [tool.qcheck] key -> the ini key that sets the same thing.
INI_KEYS = {
    "models": "qcheck_models",
    "data": "qcheck_data",
    "calibration": "qcheck_calibration",
    "suite": "qcheck_suite",
    "accelerator": "qcheck_accelerator",
    "out": "qcheck_out",
    "cache_dir": "qcheck_cache_dir",
    "baseline": "qcheck_baseline",
}
MAX_PYPROJECT_BYTES = 16 * 1024 * 1024  # pytest has read it already; only a bound against the absurd
_PATH_KEYS = ("data", "calibration", "reference", "out", "cache_dir", "baseline")
# Folders qcheck writes into: from a configuration file (which an untrusted repository may hold),
# they must stay inside that file's folder, the project; only the command line may send them elsewhere.
_WRITTEN_KEYS = ("out", "cache_dir", "baseline")
TOOL_KEYS = frozenset({*INI_KEYS, "calibration_samples", "reference"})


@dataclass(frozen=True)
class ProjectConfig:
    """The project's defaults, paths made absolute. ``None`` or empty: not set."""

    models: tuple[str, ...] = ()
    data: str | None = None
    calibration: str | None = None
    calibration_samples: int | None = None
    reference: str | None = None
    suite: str | None = None  # a built-in suite's name or an absolute path
    accelerators: tuple[str, ...] = ()
    out: str | None = None
    cache_dir: str | None = None
    baseline: str | None = None  # the baseline folder (qcheck.baseline)


def find_pyproject(rootpath: Path, inipath: Path | None) -> Path | None:
    """The ``pyproject.toml`` whose ``[tool.qcheck]`` applies: the ini file, or the one at the root."""
    if inipath is not None and inipath.name == "pyproject.toml":
        return inipath
    candidate = rootpath / "pyproject.toml"
    return candidate if candidate.is_file() else None


def looks_like_path(ref: str) -> bool:
    """A suite reference naming a file rather than a built-in suite (as :mod:`qcheck.suites` reads it)."""
    return ref.endswith(".toml") or "/" in ref or "\\" in ref


def read_tool_table(pyproject: Path) -> dict[str, Any]:
    """``[tool.qcheck]`` of ``pyproject`` (empty when absent); raises QcheckError when unreadable."""
    doc = parse_toml(read_text(pyproject, pyproject, MAX_PYPROJECT_BYTES), pyproject, whole=False)
    tool = doc.get("tool", {})
    table = tool.get("qcheck", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise QcheckError(pyproject, "[tool.qcheck] must be a table")
    check_depth(table, pyproject, "tool.qcheck")  # only qcheck's table: the other tools' are theirs
    return table


def project_config(pyproject: Path | None, ini: Mapping[str, Any], ini_file: Path | None,
                   overridden: frozenset[str] = frozenset()) -> ProjectConfig:
    """Merge ``[tool.qcheck]`` of ``pyproject`` and the ini keys' values (keyed like ``qcheck_data``).

    ``ini`` values are as pytest returns them: ``qcheck_models`` already absolute paths, the others
    strings relative to ``ini_file``'s folder; empty means not set. Folders qcheck writes into
    (``out``, ``cache_dir``) must lie inside the configuration file's folder, unless the command
    line sets them instead (their keys in ``overridden``).
    """
    values: dict[str, Any] = {}
    if pyproject is not None:
        values = {key: _tool_value(pyproject, key, value, overridden)
                  for key, value in read_tool_table(pyproject).items()}
    for key, ini_key in INI_KEYS.items():
        raw = ini.get(ini_key)
        if not raw:
            continue
        if key in values:
            raise QcheckError(pyproject, f"[tool.qcheck] {key} is also set by {ini_key} in {ini_file}; keep one")
        values[key] = _ini_value(key, raw, ini_file.parent if ini_file else Path.cwd(), ini_file, overridden)
    return ProjectConfig(
        models=tuple(values.get("models", ())),
        data=values.get("data"),
        calibration=values.get("calibration"),
        calibration_samples=values.get("calibration_samples"),
        reference=values.get("reference"),
        suite=values.get("suite"),
        accelerators=tuple(values.get("accelerator", ())),
        out=values.get("out"),
        cache_dir=values.get("cache_dir"),
        baseline=values.get("baseline"),
    )


def unique_models(models: tuple[str, ...], here: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``models`` with each file once, as first written, and a note for each repeat.

    ``m.keras`` given twice (or as ``./m.keras`` too, or through a symlink) is one model: checked
    twice, it would run every check twice; under pytest-xdist the repeats had the same node ids
    and ran once. Either way, the user hears what happened.
    """
    first: dict[str, str] = {}  # resolved path -> as first written
    kept: list[str] = []
    notes: list[str] = []
    for model in models:
        try:
            key = str((here / model).resolve())
        except (OSError, RuntimeError, ValueError):
            key = model  # not a path qcheck can resolve: the model's own check says why
        if key not in first:
            first[key] = model
            kept.append(model)
        elif first[key] == model:
            notes.append(f"{model} is given more than once; its checks run once")
        else:
            notes.append(f"{model} is the same file as {first[key]}; its checks run once, as {first[key]}")
    return tuple(kept), tuple(dict.fromkeys(notes))


def _tool_value(pyproject: Path, key: str, value: Any, overridden: frozenset[str]) -> Any:
    here = pyproject.parent
    where = f"[tool.qcheck] {key}"
    if key not in TOOL_KEYS:
        raise QcheckError(pyproject, f"[tool.qcheck]: unknown key '{key}'{suggest(key, sorted(TOOL_KEYS))}",
                          "known keys: " + ", ".join(sorted(TOOL_KEYS)))
    if key == "models":
        models = [value] if isinstance(value, str) else value
        if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
            raise QcheckError(pyproject, f"{where} must be a list of model paths, not {shown(value)}")
        return [_model_path(here, m, pyproject, where) for m in models]
    if key == "calibration_samples":
        try:
            return positive_int(value)
        except ValueError as exc:
            raise QcheckError(pyproject, f"{where} {exc}") from None
    if key == "accelerator":
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise QcheckError(pyproject, f"{where} must be a name or a list of names, not {shown(value)}")
        return [n.strip() for n in names if n.strip()]
    if not isinstance(value, str) or not value:
        raise QcheckError(pyproject, f"{where} must be a non-empty string, not {shown(value)}")
    if key == "suite":
        return str(resolve(here, value, pyproject, where)) if looks_like_path(value) else value
    assert key in _PATH_KEYS
    if key == "reference":
        return _model_path(here, value, pyproject, where)
    path = resolve(here, value, pyproject, where)
    if key in _WRITTEN_KEYS and key not in overridden:
        _confine(path, here, pyproject, where, f"--qcheck-{key.replace('_', '-')}")
    return str(path)


def _model_path(here: Path, written: str, pyproject: Path, where: str) -> str:
    """A model's path from pyproject.toml: absolute, a link keeping its name (it says the kind)."""
    resolve(here, written, pyproject, where)  # refuses what is not a path, naming the key
    return str(as_given(here / written))


def _ini_value(key: str, raw: Any, here: Path, ini_file: Path | None = None,
               overridden: frozenset[str] = frozenset()) -> Any:
    if key == "models":
        return [str(as_given(p)) for p in raw]
    text = str(raw)
    if key == "accelerator":
        return [n.strip() for n in text.split(",") if n.strip()]
    if key == "suite" and not looks_like_path(text):
        return text
    path = (here / text).resolve()
    if key in _WRITTEN_KEYS and key not in overridden:
        _confine(path, here, ini_file, INI_KEYS[key], f"--qcheck-{key.replace('_', '-')}")
    return str(path)


def _confine(path: Path, project: Path, source: Path | None, where: str, option: str) -> None:
    """Raise QcheckError unless ``path`` (links resolved) lies inside the ``project`` folder.

    A configuration file may come with an untrusted repository: ``out = "../victim"``, an absolute
    path, or a link inside the project that leads out, would have qcheck write and replace files
    anywhere. Paths qcheck only reads (models, data, ...) may point anywhere.
    """
    if not path.is_relative_to(project.resolve()):
        raise QcheckError(source, f"{where} leads to {path}, outside the project folder {project}; qcheck writes there, "
                          "and a configuration file may only send its writes inside its own project",
                          f"use a folder inside {project}, or give {option} on the command line")
