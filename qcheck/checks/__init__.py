"""The check registry: every check is a named measurement with a unit and a direction.

A check *measures* (:class:`~qcheck.results.Measurement`); :func:`qcheck.verdict.judge` compares
the value with the suite's threshold. Check modules register themselves on import; importing
them is cheap (numpy and qcheck only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement

Measure = Callable[[Evidence, Mapping[str, Any]], Measurement]
# Starts, ahead of the check, the slow work its measurement will ask the evidence for.
Prepare = Callable[[Evidence, Mapping[str, Any]], None]


@dataclass(frozen=True)
class CheckDef:
    """A registered check. Its title is the first line of the measure function's docstring."""

    name: str
    unit: str  # "count", "fraction", "bytes", "seconds"
    measure: Measure
    options: Mapping[str, type] = field(default_factory=dict)  # extra keys its suite table accepts
    per_accelerator: bool = False
    # Run by the session on a background thread once the model's first check starts, so that
    # e.g. Vela compiles while the evaluation runs; errors are left for the check to meet.
    prepare: Prepare | None = None

    @property
    def title(self) -> str:
        return (self.measure.__doc__ or self.name).strip().splitlines()[0]


REGISTRY: dict[str, CheckDef] = {}


def check(
    name: str, *, unit: str, options: Mapping[str, type] | None = None, per_accelerator: bool = False,
    prepare: Prepare | None = None,
) -> Callable[[Measure], Measure]:
    """Register ``measure`` under ``name``."""

    def register(measure: Measure) -> Measure:
        if name in REGISTRY:
            raise RuntimeError(f"check {name!r} registered twice")
        REGISTRY[name] = CheckDef(name, unit, measure, dict(options or {}), per_accelerator, prepare)
        return measure

    return register


def registry() -> dict[str, CheckDef]:
    """All checks, with the built-in families loaded."""
    from qcheck.checks import accuracy, quantization, saturation, size, vela  # noqa: F401
    from qcheck.checks import memory, tflm  # noqa: F401
    from qcheck.checks import layers, shapes  # noqa: F401
    from qcheck.checks import properties  # noqa: F401
    from qcheck.checks import contract  # noqa: F401

    return REGISTRY
