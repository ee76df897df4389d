"""Baselines: the figures of the last good run, kept in the repository and compared with.

:mod:`qcheck.baseline.record` measures a model's figures (through the registered checks, so a
figure is the value its check reports), :mod:`qcheck.baseline.store` writes and reads them (a
sorted JSON and a small ``.npz``, read as untrusted files) and :mod:`qcheck.baseline.compare`
judges a run against them (pure functions). The ``baseline`` check
(:mod:`qcheck.checks.baseline`) ties them together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcheck.files import InputFiles

if TYPE_CHECKING:
    from qcheck.suites import CheckSpec, Suite

UPDATE_FLAG = "--qcheck-baseline-update"
# The key under which the session hands the baseline check its BaselineTarget (not a suite option:
# where qcheck writes is the command line's or the project's to say, never a suite file's).
TARGET_KEY = "_baseline_target"


@dataclass(frozen=True, eq=False)
class BaselineTarget:
    """Where one model's baseline lives and what the run does with it (given to the check by
    the session: a suite file cannot choose where qcheck writes)."""

    folder: Path | None  # None: no --qcheck-baseline / [tool.qcheck] baseline
    update: bool  # --qcheck-baseline-update: write what this run measured
    stem: str  # the model's artifact stem: DIR/<stem>.json and DIR/<stem>.npz
    inputs: InputFiles  # the run's inputs, never written over
    accelerator: str | None = None  # Vela figures for this configuration; None: Vela is not in the suite
    # Each figure's check options as the suite sets them (accuracy_drop's tasks, Vela's target),
    # so that a figure is measured as its own check measures it.
    figure_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def target_options(options: dict[str, Any], suite: Suite, folder: Path | None, update: bool, stem: str,
                   inputs: InputFiles, accelerators: Callable[[CheckSpec], tuple[str, ...]]) -> dict[str, Any]:
    """The baseline check's options with its :class:`BaselineTarget`: where its files are, and
    the options the suite gives each figure's check. Vela's figures are those of the vela check's
    first accelerator, with its target options under each memory check's own (as the session
    gives them to the memory checks); without an enabled vela check there are none."""
    from qcheck.baseline.record import FIGURES
    from qcheck.runner import check_options
    from qcheck.suites import CheckSpec

    vela = suite.checks.get("vela")
    accelerator = None
    if vela is not None and vela.enabled is not False:
        accelerator = accelerators(vela)[0]  # the first configuration's figures: one baseline per model
    figures: dict[str, Mapping[str, Any]] = {}
    for name, per_accelerator in FIGURES.items():
        if per_accelerator and accelerator is None:
            continue  # no Vela in the suite: no Vela figures
        spec = suite.checks.get(name) or CheckSpec(name)
        # As the runner gives them to the check itself (the memory checks inherit vela's target).
        figures[name] = check_options(spec, suite, (accelerator or "") if per_accelerator else "")
    return {**options, TARGET_KEY: BaselineTarget(folder, update, stem, inputs, accelerator, figures)}
