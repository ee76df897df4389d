"""What a baseline holds for one model, measured from the run's evidence.

The headline figures are measured by the registered checks themselves (``size``, ``sram``, ...),
so that a baseline's value is the value the check reports; the evidence is memoized, so a
figure that its own check measured already costs nothing again. Per output head the record
keeps each evaluation sample's outcome (right or wrong, or its error), for a paired comparison
on the same samples, and the raw outputs of a fixed subset of samples ("golden outputs").
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.errors import QcheckError, StepFailed

if TYPE_CHECKING:
    from qcheck.checks.evidence import Evidence
    from qcheck.tflite.run import RunResult

# The figures, by the check that measures them, and whether they are Vela's (one accelerator).
FIGURES: dict[str, bool] = {
    "accuracy_drop": False, "size": False, "arena": False, "layer_error": False,
    "vela": True, "sram": True, "flash": True, "npu_weights": True, "inference_time": True,
}
# The distributions whose versions decide the quantized bytes and what runs them.
TOOLCHAIN = ("tensorflow", "ai-edge-litert", "ethos-u-vela", "tflite-micro")
GOLDEN_SAMPLES = 32  # evaluation samples whose raw outputs are kept, spread evenly over the data


@dataclass(frozen=True)
class Figure:
    """One headline figure: its value in the check's base unit and, when it has one, its 95% interval."""

    value: float
    unit: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, eq=False)
class Head:
    """One output head: the per-sample outcomes and the golden raw outputs.

    ``outcome`` is ``"correct"`` (``outcomes`` is bool: top-1 or the decision is right, against
    the labels or, without labels, the float model) or ``"error"`` (float, stored as float16: each
    sample's mean absolute error against the float model, or the labels without one, as a share of
    that output's range). ``labels_sha256`` fingerprints the labels the outcomes were judged
    against, so that a label fix on the same inputs is told from a change of the model.
    """

    name: str
    task: str
    outcome: str
    outcomes: np.ndarray
    golden: np.ndarray
    scale: float | None  # the integer output's scale: golden outputs compare in its steps
    # sha256 of the labels the outcomes were judged against; "" when judged against the float
    # model alone; None when not known (a baseline written before qcheck recorded it).
    labels_sha256: str | None = None

    @property
    def value(self) -> float:
        """Accuracy (share right) or mean error, over every evaluation sample."""
        return float(np.mean(self.outcomes)) if len(self.outcomes) else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """95% interval of :attr:`value`: Wilson's for a share of right answers, else the mean's."""
        from qcheck.stats import mean_interval, proportion_interval

        if self.outcome == "correct":
            return proportion_interval(int(np.sum(self.outcomes)), len(self.outcomes))
        return mean_interval(self.outcomes.astype(np.float64))

    @property
    def metric(self) -> str:
        return "accuracy" if self.outcome == "correct" else "error (share of the float range)"


@dataclass(frozen=True, eq=False)
class Record:
    """A model's baseline: what :mod:`qcheck.baseline.store` writes and reads."""

    model: str  # the file name (not the path: a baseline moves with the repository)
    toolchain: dict[str, str]
    quantized_sha256: str
    figures: dict[str, Figure]
    accelerator: str | None = None  # the Vela configuration of the Vela figures
    samples: int = 0  # evaluation samples the outcomes are over
    data_sha256: str = ""  # of the evaluation inputs: outcomes pair only on the same samples
    golden_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    heads: tuple[Head, ...] = ()
    # The model's path relative to the baseline folder (posix): two models of one file name are
    # told apart by it (their baselines' names depend on the order they are given in).
    source: str | None = None
    # Figures this run asked for and could not measure, with the reason (the check skipped or
    # failed): never stored, compared against a baseline that has them.
    unmeasured: dict[str, str] = field(default_factory=dict)


def toolchain_versions() -> dict[str, str]:
    """The installed version of each distribution of :data:`TOOLCHAIN` ("none" when absent)."""
    found = {}
    for name in TOOLCHAIN:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "none"
    return found


def record(evidence: Evidence, options: Mapping[str, Mapping[str, Any]],
           accelerator: str | None) -> tuple[Record, list[str]]:
    """The baseline record of ``evidence``'s model, and a note for each figure it could not measure.

    ``options``: each figure's check options (the suite's); Vela's figures are those of
    ``accelerator``, none when it is None. Raises QcheckError or StepFailed when the model itself
    cannot be had (every figure needs it).
    """
    tflite = evidence.tflite()
    figures, notes, unmeasured = _figures(evidence, options, accelerator)
    try:
        heads, samples, data_sha, indices = _heads(evidence, options.get("accuracy_drop", {}))
    except (QcheckError, StepFailed) as exc:  # accuracy_drop reports it in full
        notes.append(f"accuracy per head not recorded: {str(exc).splitlines()[0]}")
        heads, samples, data_sha, indices = (), 0, "", np.zeros(0, np.int64)
    from pathlib import PurePath

    return Record(PurePath(evidence.model).name, toolchain_versions(), hashlib.sha256(tflite).hexdigest(), figures,
                  accelerator if any(FIGURES[name] for name in figures) else None, samples, data_sha, indices,
                  heads, unmeasured=unmeasured), notes


def _figures(evidence: Evidence, options: Mapping[str, Mapping[str, Any]],
             accelerator: str | None) -> tuple[dict[str, Figure], list[str], dict[str, str]]:
    from qcheck.checks import registry

    checks = registry()
    figures: dict[str, Figure] = {}
    notes: list[str] = []
    unmeasured: dict[str, str] = {}
    for name, per_accelerator in FIGURES.items():
        if per_accelerator and accelerator is None:
            continue  # Vela is not in the suite: nothing compiles for it
        own = {**options.get(name, {}), **({"accelerator": accelerator} if per_accelerator else {})}
        check = checks[name]
        try:
            measured = check.measure(evidence, own)
        except (QcheckError, StepFailed) as exc:
            notes.append(f"{name} not recorded: {str(exc).splitlines()[0]}")
            unmeasured[name] = str(exc).splitlines()[0]
            continue
        if measured.value is None or not math.isfinite(measured.value):
            # Skipped by its check (no data, no NPU operators, TFLite Micro cannot load the model):
            # nothing to record, and against a baseline that has the figure, a regression unseen.
            unmeasured[name] = measured.skip or "its check measured nothing"
            continue
        low, high = measured.interval if measured.interval is not None else (None, None)
        figures[name] = Figure(float(measured.value), check.unit, low, high)
    return figures, notes, unmeasured


def _heads(evidence: Evidence, options: Mapping[str, Any]) -> tuple[tuple[Head, ...], int, str, np.ndarray]:
    """Per-head outcomes and golden outputs, with the sample count, the data's digest and the
    golden samples' indices; nothing without evaluation data, or without both labels and a float model."""
    from qcheck.checks.accuracy import head_labels, integer_output_scale, task_accuracy
    from qcheck.hashing import digest

    empty = np.zeros(0, np.int64)
    data = evidence.evaluation_data()
    if data is None:
        return (), 0, "", empty
    accuracy_options = dict(options)  # accuracy_drop's: tasks, and the limits task_accuracy applies
    # The outputs accuracy_drop judges: TFLite Micro's with runtime = "tflm", else LiteRT's.
    tflm = accuracy_options.get("runtime") == "tflm"
    run, reference = evidence.tflm_evaluation("tflm") if tflm else evidence.evaluation(), evidence.reference()
    if run is None:
        return (), 0, "", empty
    names = reference.output_names if reference is not None else tuple(run.outputs)
    labels = head_labels(evidence, names)
    if reference is not None:
        results = task_accuracy(evidence, accuracy_options)
        tasks = {result.head: result.task for result in results} if not isinstance(results, str) else {}
    else:  # an already quantized .tflite without its float model: judged on the labels alone
        tasks = _label_tasks(run, accuracy_options, names, labels, evidence.model)
    n = len(data)
    indices = golden_indices(n)
    heads = []
    for name in sorted(tasks):
        output = run.outputs[name]
        f = np.asarray(reference.outputs[name], dtype=np.float64).reshape(n, -1) if reference is not None else None
        q = np.asarray(output.values, dtype=np.float64).reshape(n, -1)
        y = labels.get(name)
        kind, outcomes = outcomes_of(tasks[name], f, q, y)
        scale = output.params.scale if output.params is not None else integer_output_scale(evidence.info(), name)
        raw = np.asarray(output.raw)
        # outcomes_of judges right-or-wrong against the labels when there are some, errors against
        # the float model when there is one: the labels count only where they were the truth.
        judged_on_labels = y is not None and (kind == "correct" or f is None)
        heads.append(Head(name, tasks[name], kind, outcomes, np.ascontiguousarray(raw[indices]),
                          float(scale) if scale else None,
                          digest("baseline-labels", np.asarray(y)) if judged_on_labels else ""))
    if not heads:
        return (), 0, "", empty
    return tuple(heads), n, digest("baseline-data", data.x), indices


def _label_tasks(run: RunResult, options: Mapping[str, Any], names: tuple[str, ...],
                 labels: Mapping[str, np.ndarray], model: str) -> dict[str, str]:
    """The task of each labelled head of a model without its float model (declared, or inferred
    from the quantized outputs ``run`` and the labels); heads whose outcome needs the float model are left out."""
    from qcheck.checks.tasks import TaskError, declared_tasks, infer_task

    try:
        declared = declared_tasks(options, names)
    except TaskError as exc:
        raise QcheckError(model, str(exc)) from None
    tasks = {}
    for name in names:
        y = labels.get(name)
        if y is None:
            continue
        q = np.asarray(run.outputs[name].values)
        task = declared.get(name) or infer_task(q.reshape(len(q), *q.shape[1:]), y, None)[0]
        if task in ("classification", "binary") or (task == "regression" and y.size == q.size):
            tasks[name] = task
    return tasks


def golden_indices(n: int) -> np.ndarray:
    """The samples whose raw outputs are kept: :data:`GOLDEN_SAMPLES` spread evenly over ``n``."""
    if n <= GOLDEN_SAMPLES:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, GOLDEN_SAMPLES).round().astype(np.int64))


def outcomes_of(task: str, f: np.ndarray | None, q: np.ndarray, y: np.ndarray | None) -> tuple[str, np.ndarray]:
    """Each sample's outcome for a head of ``task`` (outputs flattened per sample): ("correct",
    bool) for classification and binary heads, against the labels, else the float model's
    answer; ("error", float32) otherwise: the mean absolute error against the float output (or,
    without the float model, the labels), as a share of its range. ``f`` or ``y`` must be given."""
    n = len(q)
    if task == "classification" and q.shape[1] > 1:
        truth = y.reshape(n).astype(np.int64) if y is not None else _given(f).argmax(axis=1)
        return "correct", q.argmax(axis=1) == truth
    if task == "binary":
        basis = f[:, 0] if f is not None else q[:, 0]
        threshold = 0.5 if bool(np.all((basis >= 0) & (basis <= 1))) else 0.0
        truth = y.reshape(n).astype(bool) if y is not None else _given(f)[:, 0] >= threshold
        return "correct", (q[:, 0] >= threshold) == truth
    truth_values = f if f is not None else np.asarray(y, dtype=np.float64).reshape(q.shape)
    span = float(truth_values.max() - truth_values.min()) if truth_values.size else 0.0
    scale = span if span > 0 else max(float(np.abs(truth_values).max()) if truth_values.size else 0.0, 1e-12)
    return "error", (np.mean(np.abs(q - truth_values), axis=1) / scale).astype(np.float32)


def _given(f: np.ndarray | None) -> np.ndarray:
    if f is None:
        raise ValueError("a head's outcomes need its labels or the float model's outputs")
    return f
