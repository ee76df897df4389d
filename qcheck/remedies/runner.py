"""Run the remedy candidates of one model through the session's own pipeline and checks.

Each candidate is the model's :class:`~qcheck.config.RunSpec` with another recipe: a runner of
the remedies' own (:meth:`qcheck.runner.Runner.below`) makes its pipeline as for any model (so
the conversion is cached like any conversion, and the data and float outputs are loaded once and
shared), and every check of the suite measures and judges it exactly as it judged the model
(``Runner.execute``). Their artifacts go to ``remedies/`` below the output folder, named after
the model's path (:func:`table_name`). ``--qcheck-timeout`` bounds each step of each candidate
(conversion, evaluation, Vela), as for the model itself.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcheck.config import Quantization, RunSpec
from qcheck.files import safe_stem
from qcheck.resolver import calibration_set
from qcheck.remedies import (
    REMEDIED_CHECKS,
    Diagnosis,
    Remedies,
    Row,
    candidates,
    keras_layer,
    layer_of_label,
    unavailable,
)
from qcheck.results import CheckResult

if TYPE_CHECKING:
    from qcheck.pipeline import ModelRun
    from qcheck.runner import PlannedCheck, Runner
    from qcheck.session import QcheckSession

# Below the output folder, where the remedies' candidates write their artifacts: model artifacts
# are files and folders named "<stem>_...", so none is ever inside it.
REMEDIES_FOLDER = "remedies"
_TARGET_KEYS = ("cpu_ops", "npu_ops", "sram_bytes", "flash_bytes", "inference_time_s")


def diagnose(run: ModelRun) -> Diagnosis:
    """What the model's run says about the loss: guilty layers, an outlier channel, its operators,
    its calibration. Anything the run could not measure is left out (the checks report it)."""
    from qcheck.tflite.tensor_stats import likely_cause, worst_layers

    guilty: list[str] = []
    outlier = ""
    try:
        evaluation = run.evaluation()
    except Exception:  # the checks report why the model could not be evaluated
        evaluation = None
    analysis = evaluation.analysis if evaluation is not None else None
    if analysis is not None and analysis.matched:
        cause = likely_cause(analysis)
        if cause is not None:
            source = layer_of_label(cause.range_from) if cause.range_from else keras_layer(cause.name)
            guilty.append(source)
            guilty.append(keras_layer(cause.name))
            # The layers that read the crushed tensor take it at its int8 scale unless they change too.
            guilty.extend(_readers(run, cause.name))
            if cause.spread is not None:  # an outlier channel (tensor_stats.likely_cause)
                outlier = (f"channel {cause.range_channel if cause.range_channel is not None else cause.spread.widest} "
                           f"of '{source}' stretches its per-tensor range")
        else:
            guilty.extend(keras_layer(r.name) for r in worst_layers(analysis, 2) if r.suspicious)
    try:
        fully_connected = any(op.op == "FULLY_CONNECTED" for op in run.info().operators)
        used = _count(run.calibration_data())
    except Exception:
        fully_connected, used = False, 0
    available = _separate_calibration(run.spec)
    return Diagnosis(tuple(dict.fromkeys(n for n in guilty if n)), outlier, fully_connected, used, available,
                     _calibration_differs(run))


def _calibration_differs(run: ModelRun) -> bool:
    """A separate calibration set spans other input values than the evaluation data (the
    calibration diagnosis's warning): it looks preprocessed differently."""
    if run.spec.calibration is None:
        return False
    try:
        diagnosis = run.calibration_diagnosis()
    except Exception:  # the checks report why the model could not be evaluated
        return False
    return diagnosis is not None and bool(diagnosis.mismatched)


def _readers(run: ModelRun, tensor_name: str) -> list[str]:
    """The Keras layers of the operators that read the tensor named ``tensor_name``."""
    try:
        info = run.info()
    except Exception:
        return []
    indices = {t.index for t in info.tensors if t.subgraph == 0 and t.name == tensor_name}
    readers: list[str] = []
    for op in info.operators:
        if op.subgraph == 0 and indices & set(op.inputs) and op.op not in ("QUANTIZE", "DEQUANTIZE"):
            names = [info.tensor(0, i).name for i in op.outputs if i >= 0]
            readers.extend(keras_layer(name) for name in names if name)
    return readers


def _count(samples: Any) -> int:
    if samples is None:
        return 0
    return len(samples)


def _separate_calibration(spec: RunSpec) -> int:
    """Samples in the separate calibration set: only there can more calibrate without changing the
    evaluation set (a split of the data takes at most half of it, the rest is the evaluation)."""
    if spec.calibration is None:
        return 0
    from qcheck.data import load_data

    try:
        return len(load_data(spec.calibration, spec.images))
    except Exception:
        return 0


def applicable(run: ModelRun) -> int:
    """How many candidates apply to ``run``'s model (0 for a .tflite, which qcheck does not convert)."""
    try:
        if run.kind == "tflite":
            return 0
        return len(candidates(run.spec.quantization, diagnose(run)))
    except Exception:
        return 0


def with_hint(result: CheckResult, run: ModelRun, enabled: bool) -> CheckResult:
    """``result`` of a failed accuracy_drop or saturation, its message naming the remedies to try."""
    if result.check not in REMEDIED_CHECKS or result.passed is not False or result.error is not None or enabled:
        return result
    count = applicable(run)
    if count == 0:
        return result
    fixes = "fix" if count == 1 else "fixes"
    return replace(result, message=f"{result.message} (run with --qcheck-remedies to try {count} {fixes})")


def needs_remedies(results: list[CheckResult], model: str, suite_file: str = "") -> bool:
    """A remedied check failed its threshold for ``model`` under the suite it was planned from
    (``suite_file``'s, or the run's own for "")."""
    return any(r.model == model and r.suite_file == suite_file and r.check in REMEDIED_CHECKS
               and r.passed is False and r.error is None for r in results)


def table_name(model: str, suite_file: str, root: Path, taken: set[str]) -> str:
    """The artifact name of one model's remedy table, from the model's path relative to ``root``
    (and the suite file it ran under), made safe and unique among ``taken`` (which it joins).

    Derived from the paths, not from the order in which processes met the models: under
    pytest-xdist the remedies run on the controller, which never named the workers' models.
    Dots separate the parts only (``<model>[.<suite file>].<row>``), so no two tables' rows
    share a name.
    """
    def part(path: str, keep: int) -> str:
        absolute = Path(os.path.abspath(path))
        shown = absolute.relative_to(root) if absolute.is_relative_to(root) else absolute
        words = shown.with_suffix("").as_posix() if shown.suffix else shown.as_posix()
        return safe_stem(words.replace(".", "_")[-keep:])

    root = Path(os.path.abspath(root))
    name = part(model, 60) + (f".{part(str(root / suite_file), 40)}" if suite_file else "")
    unique, n = name, 2
    while unique in taken:
        head, dot, tail = name.partition(".")
        unique, n = f"{head}-{n}{dot}{tail}", n + 1
    taken.add(unique)
    return unique


def try_remedies(session: QcheckSession, checks: list[PlannedCheck], suite_file: str = "",
                 name: str = "model") -> Remedies:
    """The remedy table of one model, from the checks planned for it (on the command line's
    suite or ``suite_file``'s): the recipe as run, then each candidate, measured by the same checks.

    They run on a :class:`~qcheck.runner.Runner` of their own that writes into ``remedies/``
    below the output folder, as ``<name>.as-run`` and ``<name>.remedy-<n>`` (``name``:
    :func:`table_name`): never over, nor named like, an artifact of a model of the run (under
    pytest-xdist, the workers named those). It shares the session's protected inputs and its
    cache, so the recipe as run is taken from the cache rather than converted again.
    """
    spec = checks[0].run
    runner = session.runner.below(REMEDIES_FOLDER)
    runner.name(spec, f"{name}.as-run")
    run = runner.model_run(spec)
    if run.kind == "tflite":
        return Remedies(spec.model, (), ("an already quantized .tflite: qcheck does not convert it, so it has no "
                                         "recipe to change; give the Keras model",), suite_file=suite_file)
    diagnosis = diagnose(run)
    tried = candidates(spec.quantization, diagnosis)
    rows = [_measure(runner, checks, spec, "as run", spec.quantization, baseline=True)]
    for number, candidate in enumerate(tried, 1):
        session.progress.step(spec.model, f"remedy {number}/{len(tried)}: {candidate.change} ...")
        recipe = candidate.quantization
        variant = replace(spec, quantization=recipe, calibration=calibration_set(spec.calibration, recipe),
                          calibration_samples=recipe.calibration_samples or spec.calibration_samples)
        runner.name(variant, f"{name}.remedy-{number}")
        row = _measure(runner, checks, variant, candidate.change, recipe, keeps_float=candidate.keeps_float)
        if variant.calibration != spec.calibration:
            row = replace(row, evaluated_on=_evaluated_on(runner.model_run(variant), run))
        session.progress.step(spec.model, f"remedy {number}/{len(tried)}: {'passes' if row.passed else 'fails'}")
        rows.append(row)
    return Remedies(spec.model, tuple(rows), unavailable(diagnosis), suite_file=suite_file,
                    accuracy_threshold=_threshold(checks))


def _evaluated_on(run: ModelRun, as_run: ModelRun) -> str:
    """Which samples ``run`` was evaluated on, calibrated on a split of the data where the recipe
    as run had a separate calibration set (its drop is measured on fewer samples)."""
    try:
        data, theirs, calibration = run.evaluation_data(), as_run.evaluation_data(), run.calibration_data()
    except Exception:
        return ""  # the checks said why the data could not be loaded or split
    if data is None or theirs is None or calibration is None:
        return ""
    return (f"evaluated on {len(data)} of the {len(data) + len(calibration)} samples of {data.path}, the other "
            f"{len(calibration)} calibrated it (the recipe as run was evaluated on all {len(theirs)})")


def _threshold(checks: list[PlannedCheck]) -> float | None:
    """The largest accuracy drop the suite allows (for the report's picture)."""
    return next((planned.spec.max for planned in checks if planned.spec.name == "accuracy_drop"), None)


def _measure(runner: Runner, checks: list[PlannedCheck], spec: RunSpec, change: str, recipe: Quantization,
             *, keeps_float: bool = False, baseline: bool = False) -> Row:
    # The checks the model ran with, options and all, on ``spec``; the baseline compares the
    # model as run with the last good run, not a candidate recipe.
    results = [runner.execute(replace(planned, run=spec)) for planned in checks if planned.spec.name != "baseline"]
    failed = tuple(f"{r.check}[{r.variant}]" if r.variant else r.check for r in results if r.passed is False)
    errors = [r.error for r in results if r.error is not None]
    error = errors[0] if results and len(errors) == len(results) else ""
    by_name = {(r.check, r.variant): r for r in results}
    heads: dict[str, dict[str, Any]] = {}
    accuracy = by_name.get(("accuracy_drop", ""))
    if accuracy is not None:
        for head, numbers in accuracy.sections.get("accuracy", {}).items():
            heads[head] = {k: numbers.get(k) for k in ("metric", "drop", "ci_low", "ci_high", "float", "quantized")}
    integer = by_name.get(("fully_quantized", ""))
    targets = {}
    compiled: dict[str, Any] = {}  # Vela's figures are the model's facts (qcheck.facts), not the check's
    try:
        compiled = runner.model_run(spec).facts().sections().get("vela", {})
    except Exception:
        pass  # the vela check said why the model could not be compiled
    for (name, variant), result in by_name.items():
        if name == "vela" and variant:
            numbers = {**compiled.get(variant, {}), **result.sections.get("vela", {}).get(variant, {})}
            targets[variant] = {k: numbers.get(k) for k in _TARGET_KEYS}
    size = None
    try:
        size = len(runner.model_run(spec).tflite())
    except Exception:
        pass  # the checks said why the model could not be converted
    written = runner.model_run(spec).artifacts().get("quantized_model", "")
    return Row(change, recipe, not failed, keeps_float, failed, heads,
               integer.passed if integer is not None else None, size, targets, error or "", baseline, written)
