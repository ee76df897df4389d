"""The check registry: every check is a named measurement with a unit and a direction.

A check *measures* (:class:`~qcheck.results.Measurement`); :func:`qcheck.verdict.judge` compares
the value with the suite's threshold. Check modules register themselves on import; importing
them is cheap (numpy and qcheck only).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement

Measure = Callable[[Evidence, Mapping[str, Any]], Measurement]
# An option's kind: a type its value must have, or a function that validates and converts the
# value, raising ValueError with a sentence for the user (called when the suite loads).
OptionKind = type[Any] | Callable[[Any], Any]
# Starts, ahead of the check, the slow work its measurement will ask the evidence for.
Prepare = Callable[[Evidence, Mapping[str, Any]], None]


@dataclass(frozen=True)
class CheckDef:
    """A registered check. Its title is the first line of the measure function's docstring."""

    name: str
    unit: str  # "count", "fraction", "bytes", "seconds"
    measure: Measure
    options: Mapping[str, OptionKind] = field(default_factory=dict)  # extra keys its suite table accepts
    per_accelerator: bool = False
    # Run by the session on a background thread once the model's first check starts, so that
    # e.g. Vela compiles while the evaluation runs; errors are left for the check to meet.
    prepare: Prepare | None = None
    # The report sections its measurements may carry: its own figures, made by it alone (what
    # is known of the model whatever checks it, is qcheck.facts.ModelFacts).
    sections: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return (self.measure.__doc__ or self.name).strip().splitlines()[0]


REGISTRY: dict[str, CheckDef] = {}


def check(
    name: str, *, unit: str, options: Mapping[str, OptionKind] | None = None, per_accelerator: bool = False,
    prepare: Prepare | None = None, sections: tuple[str, ...] = (),
) -> Callable[[Measure], Measure]:
    """Register ``measure`` under ``name``.

    ``options``: the keys its suite table takes beyond max/min/enabled, each with a type or a
    validator (such as :func:`qcheck.units.one_of`), applied when the suite loads. ``sections``:
    the report sections its measurements carry, each made by this check alone (a section it does
    not declare is an error); the JSON report writes every one.
    """

    def register(measure: Measure) -> Measure:
        if name in REGISTRY:
            raise RuntimeError(f"check {name!r} registered twice")
        for other in REGISTRY.values():
            shared = sorted(set(sections) & set(other.sections))
            if shared:
                raise RuntimeError(f"check {name!r} declares the report section(s) {', '.join(shared)} that check "
                                   f"{other.name!r} makes: a section has one maker (name it after {name!r})")
        REGISTRY[name] = CheckDef(name, unit, _declared_sections(name, measure, sections), dict(options or {}),
                                  per_accelerator, prepare, tuple(sections))
        return measure

    return register


def _declared_sections(name: str, measure: Measure, sections: tuple[str, ...]) -> Measure:
    """``measure``, refusing a measurement whose report sections the check did not declare (each
    section has one maker, known by its declaration)."""

    @functools.wraps(measure)
    def measured(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
        measurement = measure(evidence, options)
        undeclared = sorted(set(measurement.sections) - set(sections))
        if undeclared:
            raise TypeError(f"check {name!r} reports section(s) {', '.join(undeclared)} that it does not declare: "
                            f"add them to @check({name!r}, sections=...)")
        return measurement

    return measured


# The built-in families, loaded as a third party's are: each module registers its checks on import.
BUILTIN_MODULES = ("accuracy", "quantization", "saturation", "size", "vela", "memory", "tflm", "layers", "shapes",
                   "properties", "contract", "baseline")
# Another distribution adds checks by naming a module in this entry-point group (pyproject.toml:
# [project.entry-points."qcheck.checks"] mychecks = "my_package.checks"); importing it registers them.
ENTRY_POINT_GROUP = "qcheck.checks"
_loaded = False


def registry() -> dict[str, CheckDef]:
    """All checks: the built-in families and those of installed distributions' ``qcheck.checks``
    entry points. A plugin that fails to load is an error naming its entry point."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(f"qcheck.checks.{module}")
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()
            except Exception as exc:
                _loaded = False
                raise RuntimeError(f"the {ENTRY_POINT_GROUP} entry point {entry.name} = {entry.value!r} "
                                   f"(distribution {entry.dist.name if entry.dist else '?'}) failed to load: "
                                   f"{type(exc).__name__}: {exc}") from exc
    return REGISTRY
