"""Suites are data: TOML files that name checks and their thresholds.

A suite has an optional ``extends`` (a built-in suite's name or a path relative to the file),
an optional ``description`` and one ``[checks.<name>]`` table per check, with ``max``/``min``
thresholds (units allowed: "3%", "300KB"), ``enabled`` and the check's own options, and an
optional ``[quantization]`` table saying how a float model is converted, the recipe
(``activations = "int16"`` for int16x8, ``calibration_samples``, ``per_channel_dense``,
``keep_float``, ``int16_layers``), and an optional ``[remedies]`` table (``enabled``). Every error
names the file and the key, and a misspelt name gets a suggestion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from qcheck.checks import CheckDef, registry
from qcheck.config import ACTIVATIONS, CALIBRATION_FROM, Quantization
from qcheck.errors import QcheckError, suggest
from qcheck.toml_files import check_depth, parse_toml, read_text, resolve, shown
from qcheck.units import parse_quantity

_SUITE_KEYS = {"extends", "description", "checks", "quantization", "remedies"}
# [quantization] key -> the values it takes (the fields of qcheck.config.Quantization); an empty
# tuple: any value of the key's type (QUANTIZATION_TYPES).
QUANTIZATION_KEYS: dict[str, tuple[str, ...]] = {"activations": ACTIVATIONS, "calibration_samples": (),
                                                 "per_channel_dense": (), "keep_float": (), "int16_layers": (),
                                                 "calibration_from": CALIBRATION_FROM}
QUANTIZATION_TYPES = {"calibration_samples": "a whole number of samples, at least 1",
                      "per_channel_dense": "true or false", "keep_float": "a list of Keras layer names",
                      "int16_layers": "a list of Keras layer names"}
# Keys of the recipe that qcheck knows but cannot follow, with the reason.
UNAVAILABLE_QUANTIZATION_KEYS: dict[str, str] = {}
_COMMON_CHECK_KEYS = {"max", "min", "enabled"}
MAX_EXTENDS = 32  # suites in one ``extends`` chain; each is read with Python's stack


@dataclass(frozen=True)
class CheckSpec:
    """One check as a suite configures it."""

    name: str
    max: float | None = None
    min: float | None = None
    enabled: bool | None = None  # None: not set here, so inherited (and on by default)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A resolved suite: ``extends`` already applied."""

    name: str
    source: str
    description: str
    checks: dict[str, CheckSpec]
    # The [quantization] keys this suite or one it extends sets; unset keys take their defaults.
    quantization: dict[str, Any] = field(default_factory=dict)
    # [remedies] enabled = true: try other recipes when accuracy_drop or saturation fails (qcheck.remedies).
    remedies: bool = False

    def quantization_for(self, activations: str | None = None, recipe: dict[str, Any] | None = None) -> Quantization:
        """How a float model is converted under this suite, ``recipe`` (validated by :func:`recipe_table`)
        and ``activations`` (the command line's) over it."""
        table = {**self.quantization, **(recipe or {})}
        if activations is not None:
            table["activations"] = activations
        return Quantization(**table)

    def enabled(self) -> list[CheckSpec]:
        return [spec for spec in self.checks.values() if spec.enabled is not False]

    def with_overrides(self, overrides: dict[str, dict[str, Any]], origin: str) -> Suite:
        """A copy with ``{check: {key: value}}`` applied (e.g. from the command line)."""
        checks = dict(self.checks)
        for name, table in overrides.items():
            checks[name] = _merge(checks.get(name), _parse_table(name, table, origin, f"checks.{name}"))
        return replace(self, checks=checks)


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("qcheck.builtin_suites").iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str, *, base_dir: Path | None = None) -> Suite:
    """Load a built-in suite by name or a suite file by path, following ``extends``."""
    return _load(name_or_path, base_dir or Path.cwd(), ())


def _load(ref: str, base_dir: Path, chain: tuple[str, ...]) -> Suite:
    if len(chain) >= MAX_EXTENDS:
        raise QcheckError(chain[-1], f"extends a chain of more than {MAX_EXTENDS} suites",
                          f"started at {chain[0]}; a chain this long is almost certainly a mistake")
    text, source, name, here = _read(ref, base_dir)
    if source in chain:
        raise QcheckError(source, "extends itself through " + " -> ".join((*chain, source)))
    doc = parse_toml(text, source)
    return suite_from_document(doc, source, name, here, (*chain, source))


def suite_from_document(doc: dict[str, Any], source: str, name: str, here: Path,
                        chain: tuple[str, ...] = (), extra_keys: frozenset[str] = frozenset()) -> Suite:
    """Validate a parsed suite document and merge it over the suite it extends."""
    check_depth(doc, source)
    unknown = set(doc) - _SUITE_KEYS - extra_keys
    if unknown:
        key = sorted(unknown)[0]
        raise QcheckError(source, f"unknown key {shown(key)}{suggest(key, _SUITE_KEYS | extra_keys)}")
    parent = None
    if "description" in doc and not isinstance(doc["description"], str):
        raise QcheckError(source, f"'description' must be a string, not {shown(doc['description'])}")
    if "extends" in doc:
        if not isinstance(doc["extends"], str) or not doc["extends"]:
            raise QcheckError(source, "'extends' must be a suite name or a path")
        try:
            parent = _load(doc["extends"], here, chain)
        except QcheckError as exc:
            if exc.path is not None:
                raise
            raise QcheckError(source, f"extends: {exc.problem}", exc.hint) from None
    checks_doc = doc.get("checks", {})
    if not isinstance(checks_doc, dict):
        raise QcheckError(source, "'checks' must be a table of [checks.<name>] tables")
    checks = dict(parent.checks) if parent else {}
    for check_name, table in checks_doc.items():
        if not isinstance(table, dict):
            raise QcheckError(source, f"'checks.{check_name}' must be a table, not {shown(table)}")
        checks[check_name] = _merge(checks.get(check_name), _parse_table(check_name, table, source, f"checks.{check_name}"))
    if parent is None and source != _DEFAULT_SOURCE:
        checks = _default_thresholds(checks)
    description = doc.get("description", parent.description if parent else "")
    quantization = {**(parent.quantization if parent else {}), **recipe_table(doc.get("quantization", {}), source)}
    remedies = _remedies_table(doc.get("remedies"), source, parent.remedies if parent else False)
    return Suite(name, source, description, checks, quantization, remedies)


def _remedies_table(table: Any, source: str, inherited: bool) -> bool:
    """``[remedies] enabled``: whether a failed accuracy_drop or saturation tries other recipes."""
    if table is None:
        return inherited
    if not isinstance(table, dict):
        raise QcheckError(source, f"'remedies' must be a table ([remedies]), not {shown(table)}")
    for key, value in table.items():
        if key != "enabled":
            raise QcheckError(source, f"[remedies]: unknown key {shown(key)}", "[remedies] takes: enabled")
        if not isinstance(value, bool):
            raise QcheckError(source, f"remedies.enabled must be true or false, not {shown(value)}")
    return bool(table.get("enabled", inherited))


_DEFAULT_SOURCE = "<built-in suite default>"


def _default_thresholds(checks: dict[str, CheckSpec]) -> dict[str, CheckSpec]:
    """A suite without ``extends`` that sets a check's options but no threshold (only ``task``,
    say) keeps the default suite's ``max``/``min``: a check without one would pass whatever it
    measures."""
    default = _load("default", Path.cwd(), ()).checks
    return {name: replace(spec, max=default[name].max, min=default[name].min)
            if spec.max is None and spec.min is None and name in default else spec
            for name, spec in checks.items()}


def recipe_table(table: Any, source: str) -> dict[str, Any]:
    """The validated ``[quantization]`` table of a suite (a recipe: the same keys from Python)."""
    if not isinstance(table, dict):
        raise QcheckError(source, f"'quantization' must be a table ([quantization]), not {shown(table)}")
    for key, value in table.items():
        if key in UNAVAILABLE_QUANTIZATION_KEYS:
            raise QcheckError(source, f"quantization.{key} is not available: {UNAVAILABLE_QUANTIZATION_KEYS[key]}")
        if key not in QUANTIZATION_KEYS:
            raise QcheckError(source, f"[quantization]: unknown key {shown(key)}{suggest(key, QUANTIZATION_KEYS)}",
                              "[quantization] takes: " + ", ".join(sorted(QUANTIZATION_KEYS)))
        allowed = QUANTIZATION_KEYS[key]
        if allowed and value not in allowed:
            raise QcheckError(source, f"quantization.{key} must be one of " + ", ".join(f'"{a}"' for a in allowed)
                              + f", not {shown(value)}")
        if not allowed and not _recipe_value_ok(key, value):
            raise QcheckError(source, f"quantization.{key} must be {QUANTIZATION_TYPES[key]}, not {shown(value)}")
    recipe = dict(table)
    for key in ("keep_float", "int16_layers"):
        if key in recipe:
            recipe[key] = tuple(recipe[key])
    return recipe


def _recipe_value_ok(key: str, value: Any) -> bool:
    if key == "calibration_samples":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if key == "per_channel_dense":
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(name, str) and name for name in value)


def _read(ref: str, base_dir: Path) -> tuple[str, str, str, Path]:
    """(text, source for messages, suite name, folder for relative extends)."""
    looks_like_path = ref.endswith(".toml") or "/" in ref or "\\" in ref
    if not looks_like_path:
        resource = resources.files("qcheck.builtin_suites") / f"{ref}.toml"
        if not resource.is_file():
            raise QcheckError(None, f"no built-in suite named {shown(ref)}{suggest(ref, builtin_names())}",
                              "built-in suites: " + ", ".join(builtin_names()) + "; or give a path to a .toml file")
        return resource.read_text(encoding="utf-8"), f"<built-in suite {ref}>", ref, base_dir
    try:
        path = resolve(base_dir, ref, None, "")
        text = read_text(path, path)
    except QcheckError as exc:  # about the reference: the caller names the file that makes it
        raise QcheckError(None, f"{exc.path}: {exc.problem}" if exc.path else exc.problem, exc.hint) from None
    return text, str(path), path.stem, path.parent


def _parse_table(check_name: str, table: dict[str, Any], source: str, key: str) -> CheckSpec:
    checks = registry()
    if check_name not in checks:
        raise QcheckError(source, f"[{key}]: unknown check {shown(check_name)}{suggest(check_name, checks)}",
                          "known checks: " + ", ".join(sorted(checks)))
    check = checks[check_name]
    allowed = _COMMON_CHECK_KEYS | set(check.options)
    spec: dict[str, Any] = {"name": check_name, "options": {}}
    for option, value in table.items():
        if option not in allowed:
            raise QcheckError(source, f"[{key}]: unknown option {shown(option)}{suggest(option, allowed)}",
                              f"'{check_name}' takes: " + ", ".join(sorted(allowed)))
        if option in ("max", "min"):
            spec[option] = _threshold(check, value, source, f"{key}.{option}")
        elif option == "enabled":
            if not isinstance(value, bool):
                raise QcheckError(source, f"{key}.enabled must be true or false, not {shown(value)}")
            spec["enabled"] = value
        else:
            expected = check.options[option]
            if not isinstance(expected, type):
                try:
                    value = expected(value)
                except ValueError as exc:
                    raise QcheckError(source, f"{key}.{option}: {exc}") from None
            elif not isinstance(value, expected):
                raise QcheckError(source, f"{key}.{option} must be a {expected.__name__}, not {shown(value)}")
            spec["options"][option] = value
    return CheckSpec(**spec)


def _threshold(check: CheckDef, value: Any, source: str, key: str) -> float:
    try:
        return parse_quantity(value, check.unit)
    except ValueError as exc:
        raise QcheckError(source, f"{key}: {exc}") from None


def _merge(base: CheckSpec | None, override: CheckSpec) -> CheckSpec:
    """``override`` wins where it sets a key; options merge key by key."""
    if base is None:
        return override
    return CheckSpec(
        name=base.name,
        max=override.max if override.max is not None else base.max,
        min=override.min if override.min is not None else base.min,
        enabled=override.enabled if override.enabled is not None else base.enabled,
        options={**base.options, **override.options},
    )
