"""Did this change make it worse? ``baseline``: the run against the last good run's figures.

With ``--qcheck-baseline=DIR`` (or ``baseline = "DIR"`` in ``[tool.qcheck]``) each model is
compared with ``DIR/<model>.json`` and ``DIR/<model>.npz``; ``--qcheck-baseline-update`` writes
them from this run instead. The tolerances are this check's options in the suite
(``[checks.baseline] size = "2%"``, see :data:`qcheck.baseline.compare.FIGURE_OPTIONS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcheck.baseline import TARGET_KEY
from qcheck.baseline.compare import FIGURE_OPTIONS, tolerance
from qcheck.checks import check

from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.units import parse_quantity

if TYPE_CHECKING:
    from qcheck.baseline import BaselineTarget
    from qcheck.baseline.record import Record


def _share(value: Any) -> float:
    return parse_quantity(value, "fraction")


def _steps(value: Any) -> float:
    return parse_quantity(value, "count")


OPTIONS: dict[str, Any] = {
    **{option: tolerance(unit, relative_only=unit == "count" and option == "layer_error")
       for option, unit, _ in FIGURE_OPTIONS.values()},
    "accuracy": _share, "golden_steps": _steps,
}


@check("baseline", unit="count", options=OPTIONS, sections=("baseline",))
def baseline(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Figures that regressed against the baseline (the last good run, kept with --qcheck-baseline).

    Memory, size, CPU operators and per-layer error fail when they grow beyond their tolerance;
    accuracy fails when the paired samples show a real drop (exact McNemar test on the samples
    that changed answer, or the interval of the paired error change); golden outputs are compared
    in quantization steps. A model without a baseline fails, naming the command that makes one.
    """
    from qcheck.baseline import UPDATE_FLAG, BaselineTarget as Target
    from qcheck.baseline.compare import compare
    from qcheck.baseline.record import record
    from qcheck.baseline.store import canonical, paths, read
    from qcheck.errors import QcheckError

    target = options.get(TARGET_KEY)
    if not isinstance(target, Target) or target.folder is None:
        raise QcheckError(None, "the baseline check has no baseline folder",
                          "pass --qcheck-baseline=DIR (or set baseline = \"DIR\" in [tool.qcheck])")
    folder = target.folder
    json_path, _ = paths(folder, target.stem)
    now_raw, notes = record(evidence, target.figure_options, target.accelerator)
    now_raw = replace(now_raw, source=_source(evidence.model, folder))
    now = replace(canonical(now_raw), unmeasured=now_raw.unmeasured)  # what could not be measured is not stored
    old, unreadable = (read(folder, target.stem), None) if not target.update else _previous(folder, target.stem)
    other = _other_model(old, folder, evidence.model)
    if other is not None:
        # Named in the order given, two models of one file name swap names when one runs alone:
        # judging (or overwriting) the other's baseline would be a verdict on the wrong figures.
        problem = (f"{json_path} is the baseline of {other}, not of {evidence.model} (models of one file name "
                   f"are named in the order given: {json_path.name}, then -2, ...); nothing compared or written")
        hint = ("give the models in the order their baselines were made (every one of the same file name), or "
                f"delete {json_path.name} and {json_path.with_suffix('.npz').name} and run {UPDATE_FLAG}")
        return Measurement(1.0, problem, hint, sections={"baseline": {"file": str(json_path), "other_model": other}},
                           failures=(problem,))
    comparison = compare(old, now, options) if old is not None else None
    section: dict[str, Any] = {"file": str(json_path), **(comparison.section if comparison else {})}
    if target.update:
        replaced = [f"replaced a baseline that could not be read: {unreadable}"] if unreadable else []
        changes = [*replaced, *(comparison.changes if comparison else [])]
        return _update(folder, target, now_raw, old, changes, notes, section)
    if comparison is None:
        section["missing"] = True
        problem = (f"no baseline for this model: {json_path} does not exist; create it by running the same pytest "
                   f"command with {UPDATE_FLAG}, then review and commit {json_path.name} and "
                   f"{json_path.with_suffix('.npz').name}")
        return Measurement(1.0, problem, sections={"baseline": section}, failures=(problem,))
    details = "\n  ".join([*comparison.lines, *notes])  # one figure a line; the terminal shows the first
    hint = (f"if the change is intended, refresh the baseline with {UPDATE_FLAG} and commit the diff; otherwise "
            "find what made the figure worse (the lines above say whether the model or the toolchain changed)")
    return Measurement(float(len(comparison.failures)), details, hint, sections={"baseline": section},
                       failures=tuple(comparison.failures))


def _source(model: str, folder: Path) -> str | None:
    """``model``'s path relative to the baseline folder, as written in the baseline (None when
    there is none, another drive)."""
    import os

    try:
        return Path(os.path.relpath(os.path.abspath(model), os.path.abspath(folder))).as_posix()
    except ValueError:
        return None


def _other_model(old: Record | None, folder: Path, model: str) -> str | None:
    """The other model whose baseline ``old`` is, when that model is still where the baseline
    says and is not ``model`` (a baseline moved with its folder, or of a model since moved, is
    taken as this model's)."""
    import os

    if old is None or old.source is None:
        return None
    recorded = Path(folder, old.source)
    try:
        if not recorded.is_file() or os.path.samefile(recorded, model):
            return None
    except OSError:
        return None
    return os.path.normpath(os.path.relpath(recorded)) if not Path(model).is_absolute() else str(recorded.resolve())


def _previous(folder: Path, stem: str) -> tuple[Record | None, str | None]:
    """The baseline being replaced, to say what changed, or why it could not be read (it is then
    written anew: the write itself refuses a link or anything but a regular file)."""
    from qcheck.baseline.store import read
    from qcheck.errors import QcheckError

    try:
        return read(folder, stem), None
    except QcheckError as exc:
        return None, str(exc).splitlines()[0]


def _update(folder: Path, target: BaselineTarget, rec: Record, old: Record | None, changes: list[str], notes: list[str],
            section: dict[str, Any]) -> Measurement:
    """Write the baseline (unless its files already hold these bytes) and say what changed."""
    from qcheck.baseline.store import encode, paths, write

    json_path, npz_path = paths(folder, target.stem)
    text, npz = encode(rec, npz_path.name)
    if old is not None and _holds(json_path, text) and _holds(npz_path, npz):
        what = f"baseline unchanged: {json_path} already holds this run's figures"
        section.update(updated=False, created=False, changes=[])
    else:
        write(folder, target.stem, rec, target.inputs)
        if old is None:
            what = f"baseline written (new): {json_path} and {npz_path.name}"
        else:
            what = f"baseline updated: {json_path}" + ("" if changes else
                                                       " (figures unchanged; the file's form changed)")
        section.update(updated=True, created=old is None, changes=list(changes))
    return Measurement(0.0, "\n  ".join([what, *changes, *notes]), sections={"baseline": section})


def _holds(path: Path, data: bytes) -> bool:
    """Whether the regular file ``path`` holds exactly ``data`` (a link or anything else does not)."""
    from qcheck.baseline.store import read_untrusted
    from qcheck.errors import QcheckError

    try:
        return read_untrusted(path, len(data)) == data
    except QcheckError:
        return False
