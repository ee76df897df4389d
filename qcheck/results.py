"""Frozen results: what a check measured, the verdict, and everything a report needs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1
RESULT_PROPERTY = "qcheck_result"  # the user property a check item's result travels in (xdist too)


@dataclass(frozen=True)
class Measurement:
    """What a check measured, before any threshold is applied.

    ``value`` is in the check's base unit; ``details`` says what it is in words; ``hint`` says
    what to try if the value fails its threshold; ``skip`` says why nothing could be measured;
    ``sections`` are the check's own figures for the report (``accuracy``, ``saturation``, ...),
    as its ``@check(sections=...)`` declares them. What is known of the model whatever checks it
    (its tensors, Vela's compilations, ...) is :class:`qcheck.facts.ModelFacts`, sent once per model.
    """

    value: float | None
    details: str = ""
    hint: str = ""
    skip: str | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    interval: tuple[float, float] | None = None  # 95% confidence interval of ``value``
    samples: int | None = None  # how many samples ``value`` was measured on
    # Thresholds of the check's own options (besides max/min) that the measurement broke, each a
    # sentence: e.g. one output head's metric judged on that head's task threshold.
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check on one model.

    ``passed`` is None when the check was skipped (nothing to measure: no data, no float model),
    and False when it failed its threshold or could not be measured; ``error`` tells the two
    failures apart: it holds the cause when the measurement itself failed (see :attr:`status`).
    """

    model: str
    check: str
    passed: bool | None
    value: float | None
    threshold: float | None
    unit: str
    message: str
    variant: str = ""  # e.g. the accelerator for target checks
    sections: dict[str, Any] = field(default_factory=dict)
    # The qcheck_*.toml the check came from (as its node id names it); "" for the run's own
    # suite (command line, [tool.qcheck]). One model in two suite files gives two results.
    suite_file: str = ""
    error: str | None = None  # why the check could not be measured (a step it needs failed)

    @property
    def status(self) -> str:
        """``passed``, ``failed`` (a threshold), ``error`` (could not be measured) or ``skipped``."""
        if self.error is not None:
            return "error"
        return {True: "passed", False: "failed", None: "skipped"}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("sections")
        data["name"] = data.pop("check")
        data["status"] = self.status
        return data

    @classmethod
    def from_json(cls, text: str) -> CheckResult:
        """Inverse of :func:`qcheck.session.encode` (the form results travel in)."""
        data = json.loads(text)
        data["check"] = data.pop("name")
        data.pop("status", None)  # derived
        return cls(**data)
