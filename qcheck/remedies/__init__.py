"""Remedies: recipes tried on the same data, measured and priced on the target (issue 18).

When accuracy or saturation fails, qcheck can try other ``[quantization]`` recipes
(:class:`qcheck.config.Quantization`) and judge each under the same suite: which heads pass, at
what cost in CPU operators, SRAM, flash and inference time under Vela, and ``.tflite`` size.
This module decides which candidates apply (:func:`candidates`), gathers what the checks
measured for each (:class:`Row`), marks the cheapest recipe that passes (:func:`cheapest`) and
renders the table (:func:`render`, :func:`to_dict`). :mod:`qcheck.remedies.runner` runs them.

A candidate that keeps a layer float is shown with its cost but never marked: the seed forbids
float fallback by default, so adopting it must be the user's decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from qcheck.config import Quantization

# More calibration samples: at most this many (ranges from more samples hardly move; every
# sample is one more run of the float model during calibration).
MAX_CALIBRATION_SAMPLES = 1000
# The checks whose failure remedies address, and whose message names them.
REMEDIED_CHECKS = ("accuracy_drop", "saturation")
_QUOTED = re.compile(r"'([^']+)'")


@dataclass(frozen=True)
class Diagnosis:
    """What the run knows about why the model lost accuracy, in Keras layer names."""

    guilty: tuple[str, ...] = ()  # the layers to blame, the cause first
    outlier: str = ""  # a sentence naming the outlier channel that stretches a range, when one does
    fully_connected: bool = False  # the model has FULLY_CONNECTED operators (per-channel weights matter)
    calibration_used: int = 0  # samples the current recipe calibrated on
    calibration_available: int = 0  # samples in a separate calibration set (0: split from the data)
    # The separate calibration set's inputs span other values than the evaluation inputs
    # (qcheck.checks.calibration): it looks preprocessed differently.
    calibration_differs: bool = False


@dataclass(frozen=True)
class Candidate:
    """One recipe to try: what changes, in words, and the recipe itself."""

    change: str
    quantization: Quantization
    keeps_float: bool = False  # never marked as the choice (float fallback is the user's call)


@dataclass(frozen=True)
class Row:
    """What one recipe measured under the suite."""

    change: str
    quantization: Quantization
    passed: bool  # every enabled check passed (or had nothing to measure)
    keeps_float: bool = False
    failed: tuple[str, ...] = ()  # the checks that failed or errored, as "name[variant]"
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)  # head -> drop, ci_low, ci_high, metric
    fully_integer: bool | None = None
    size_bytes: int | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # accelerator -> Vela's numbers
    error: str = ""  # why the recipe could not be tried at all
    baseline: bool = False  # the recipe the run used
    quantized_model: str = ""  # where the candidate's .tflite was written
    evaluated_on: str = ""  # which samples it was evaluated on, where they are not those of the recipe as run

    @property
    def cost(self) -> tuple[float, float, float, float]:
        """What a recipe costs on the target, to compare passing ones: CPU operators, inference
        time, SRAM (summed over the accelerators), then ``.tflite`` size."""
        def total(key: str) -> float:
            values = [t.get(key) for t in self.targets.values()]
            return sum(float(v) for v in values if v is not None)

        return (total("cpu_ops"), total("inference_time_s"), total("sram_bytes"), float(self.size_bytes or 0))


@dataclass(frozen=True)
class Remedies:
    """The remedy table of one model: the recipe as run first, then each candidate."""

    model: str
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()  # what was not tried and why; the fix qcheck cannot make
    suite_file: str = ""  # the qcheck_*.toml whose checks the model ran with ("" for the command line's)
    accuracy_threshold: float | None = None  # accuracy_drop's max under that suite

    @property
    def chosen(self) -> Row | None:
        return cheapest(self.rows)


def keras_layer(tensor_name: str) -> str:
    """The Keras layer a converted tensor comes from: ``<...>/<layer>/<op>``, Keras 3's ``_1`` dropped;
    "" for a name with no layer in it (``StatefulPartitionedCall_1:0``), which no recipe can name."""
    from qcheck.tflite.recipe import layer_scope

    return layer_scope(tensor_name)


def layer_of_label(label: str) -> str:
    """The layer named in an operator label such as ``CONV_2D 'model/conv1_1/Relu'``."""
    quoted = _QUOTED.search(label)
    return keras_layer(quoted.group(1)) if quoted else ""


def candidates(current: Quantization, diagnosis: Diagnosis) -> list[Candidate]:
    """The recipes worth trying from ``current``, each only where it applies."""
    found: list[Candidate] = []
    if diagnosis.calibration_differs and current.calibration_from != "data":
        found.append(Candidate("calibrate on samples split from the evaluation data (the calibration set looks "
                               "preprocessed differently)", replace(current, calibration_from="data")))
    elif diagnosis.calibration_available > diagnosis.calibration_used:  # more of a mismatched set would not help
        samples = min(diagnosis.calibration_available, MAX_CALIBRATION_SAMPLES)
        found.append(Candidate(f"calibrate on {samples} samples (was {diagnosis.calibration_used})",
                               replace(current, calibration_samples=samples)))
    if current.activations == "int8":
        found.append(Candidate("int16 activations, whole model (int16x8)",
                               replace(current, activations="int16", keep_float=(), int16_layers=())))
    if diagnosis.fully_connected:
        words = "per-tensor" if current.per_channel_dense else "per-channel"
        found.append(Candidate(f"{words} weights for fully-connected layers",
                               replace(current, per_channel_dense=not current.per_channel_dense)))
    if current.activations == "int8" and not current.keep_float and diagnosis.guilty:
        layers = tuple(dict.fromkeys((*current.int16_layers, *diagnosis.guilty)))
        if layers != current.int16_layers:
            names = ", ".join(f"'{n}'" for n in diagnosis.guilty)
            found.append(Candidate(f"int16 activations for {names} only (ai-edge-quantizer)",
                                   replace(current, int16_layers=layers)))
    if current.activations == "int8" and not current.int16_layers and diagnosis.guilty:
        kept = tuple(dict.fromkeys((*current.keep_float, *diagnosis.guilty)))
        if kept != current.keep_float:
            names = ", ".join(f"'{n}'" for n in diagnosis.guilty)
            found.append(Candidate(f"keep {names} float", replace(current, keep_float=kept), keeps_float=True))
    return found


def unavailable(diagnosis: Diagnosis) -> tuple[str, ...]:
    """The fix qcheck cannot make (it changes the model), as a note."""
    notes = []
    if diagnosis.outlier:
        notes.append(f"{diagnosis.outlier}: folding that channel's range into the next layer (equalizing the two "
                     "layers' weights) is the fix that keeps int8; it changes the model, so qcheck does not try it")
    return tuple(notes)


def not_remedied(failed: list[str]) -> str:
    """Why no recipe was tried for a model whose failed checks (``failed``) are none that a
    recipe addresses, when remedies were asked for."""
    return (f"no recipe tried: remedies try other quantization recipes for a failed "
            f"{' or '.join(REMEDIED_CHECKS)}, which passed here; {', '.join(failed)} failed: see "
            f"{'its message' if len(failed) == 1 else 'their messages'} for the fix (an operator with no integer "
            "kernel, for one, stays float under every recipe)")


def cheapest(rows: tuple[Row, ...]) -> Row | None:
    """The passing recipe that costs least on the target; never one that keeps a layer float."""
    passing = [r for r in rows if r.passed and not r.keeps_float and not r.error]
    return min(passing, key=lambda r: r.cost) if passing else None


def recipe_lines(quantization: Quantization) -> list[str]:
    """The ``[quantization]`` lines that give ``quantization`` (only the keys off their defaults)."""
    default = Quantization()
    lines = ["[quantization]"]
    if quantization.activations != default.activations:
        lines.append(f'activations = "{quantization.activations}"')
    if quantization.calibration_samples is not None:
        lines.append(f"calibration_samples = {quantization.calibration_samples}")
    if quantization.per_channel_dense != default.per_channel_dense:
        lines.append(f"per_channel_dense = {str(quantization.per_channel_dense).lower()}")
    if quantization.calibration_from != default.calibration_from:
        lines.append(f'calibration_from = "{quantization.calibration_from}"')
    for key in ("keep_float", "int16_layers"):
        names: tuple[str, ...] = getattr(quantization, key)
        if names:
            lines.append(f"{key} = [" + ", ".join(f'"{n}"' for n in names) + "]")
    return lines


def _percent(value: Any) -> str:
    return f"{float(value) * 100:.2f}%" if isinstance(value, (int, float)) else "-"


def _kib(value: Any) -> str:
    return f"{float(value) / 1024:.1f} KiB" if isinstance(value, (int, float)) else "-"


def _ms(value: Any) -> str:
    return f"{float(value) * 1000:.3f} ms" if isinstance(value, (int, float)) else "-"


def _time(target: dict[str, Any]) -> str:
    """Vela's inference time, which leaves out the operators that run on the CPU."""
    cpu = target.get("cpu_ops")
    return _ms(target.get("inference_time_s")) + (" on the NPU, plus the CPU operators" if cpu else "")


def describe(row: Row) -> str:
    """One line of the table for ``row``: verdict, heads with intervals, integer or not, target costs."""
    if row.error:
        return f"could not be tried: {row.error}"
    heads = "; ".join(f"'{head}' drop {_percent(h.get('drop'))} (95% CI {_percent(h.get('ci_low'))} to "
                      f"{_percent(h.get('ci_high'))})" for head, h in row.heads.items()) or "accuracy not measured"
    integer = {True: "fully integer", False: "NOT fully integer", None: "integer: not measured"}[row.fully_integer]
    parts = [heads, integer, f"size {_kib(row.size_bytes)}"]
    for accelerator, t in row.targets.items():
        parts.append(f"{accelerator}: {t.get('cpu_ops', '-')} CPU ops, SRAM {_kib(t.get('sram_bytes'))}, "
                     f"flash {_kib(t.get('flash_bytes'))}, {_time(t)}")
    verdict = "PASS" if row.passed else "FAIL (" + ", ".join(row.failed) + ")"
    return f"{verdict}: " + ", ".join(parts) + (f"; {row.evaluated_on}" if row.evaluated_on else "")


def render(remedies: Remedies) -> list[str]:
    """The remedy table of one model as terminal lines, the chosen recipe's lines to copy last."""
    lines = [f"remedies for {remedies.model}" + (f" ({remedies.suite_file})" if remedies.suite_file else "") + ":"]
    chosen = remedies.chosen
    for number, row in enumerate(remedies.rows):
        label = "as run" if row.baseline else f"{number}. {row.change}"
        mark = "  <- cheapest that passes" if row is chosen else ""
        float_note = " (keeps float: never chosen for you)" if row.keeps_float else ""
        lines.append(f"  {label}{float_note}: {describe(row)}{mark}")
    for note in remedies.notes:
        lines.append(f"  note: {note}")
    if chosen is not None:
        lines.append("  to adopt it, put these lines in your suite:")
        lines.extend(f"    {line}" for line in recipe_lines(chosen.quantization))
    elif any(r.passed and r.keeps_float for r in remedies.rows):
        lines.append("  only a recipe that keeps layers float passes: adopt it yourself if float operators on the CPU "
                     "are acceptable")
    elif remedies.rows:
        lines.append("  no recipe tried passes the suite")
    return lines


def to_dict(remedies: Remedies) -> dict[str, Any]:
    """Every candidate, for the JSON report."""
    chosen = remedies.chosen
    return {
        "model": remedies.model,
        "suite_file": remedies.suite_file or None,
        "accuracy_threshold": remedies.accuracy_threshold,
        "candidates": [{
            "change": "as run" if row.baseline else row.change,
            "baseline": row.baseline,
            "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(row.quantization).items()},
            "recipe_lines": recipe_lines(row.quantization),
            "passed": row.passed,
            "failed_checks": list(row.failed),
            "keeps_float": row.keeps_float,
            "heads": row.heads,
            "fully_integer": row.fully_integer,
            "size_bytes": row.size_bytes,
            "targets": row.targets,
            "error": row.error or None,
            "quantized_model": row.quantized_model or None,
            "evaluated_on": row.evaluated_on or None,
            "chosen": row is chosen,
        } for row in remedies.rows],
        "notes": list(remedies.notes),
    }


def html_view(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The remedy tables of the JSON report (:func:`to_dict`) as text cells for the HTML report,
    each with its accuracy-against-cost pictures (:func:`pictures`)."""
    views = []
    for table in tables:
        rows = []
        for number, c in enumerate(table.get("candidates", [])):
            heads = "; ".join(f"{head}: {_percent(h.get('drop'))} ({_percent(h.get('ci_low'))} to "
                              f"{_percent(h.get('ci_high'))})" for head, h in (c.get("heads") or {}).items())
            targets = c.get("targets") or {}
            rows.append({
                "change": _numbered(number, c),
                "evaluated_on": c.get("evaluated_on") or "",
                "verdict": "pass" if c.get("passed") else "fail",
                "failed": ", ".join(c.get("failed_checks") or []) or (c.get("error") or ""),
                "heads": heads or "-",
                "integer": {True: "yes", False: "no", None: "-"}[c.get("fully_integer")],
                "targets": "; ".join(f"{a}: {t.get('cpu_ops', '-')} CPU ops, SRAM {_kib(t.get('sram_bytes'))}, flash "
                                     f"{_kib(t.get('flash_bytes'))}, {_time(t)}"
                                     for a, t in targets.items()) or "-",
                "size": _kib(c.get("size_bytes")),
                "chosen": bool(c.get("chosen")),
                "keeps_float": bool(c.get("keeps_float")),
                "recipe": "\n".join(c.get("recipe_lines") or []),
            })
        views.append({"model": table.get("model", ""), "suite_file": table.get("suite_file") or "", "rows": rows,
                      "notes": list(table.get("notes", [])), "pictures": pictures(table)})
    return views


def _numbered(number: int, candidate: dict[str, Any]) -> str:
    """The candidate's change as the table and the picture name it: "as run", else "1. ..."."""
    return "as run" if candidate.get("baseline") else f"{number}. {candidate.get('change', '')}"


def _worst_head(candidate: dict[str, Any]) -> dict[str, Any]:
    """The head that lost most (its drop and interval), or {} when no drop was measured."""
    heads = [h for h in _table(candidate.get("heads")).values() if _number(_table(h).get("drop")) is not None]
    return max(heads, key=lambda h: float(h["drop"])) if heads else {}


def _table(value: Any) -> dict[str, Any]:
    """``value`` where it is a JSON object, else {} (a merged report's tables come from files)."""
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pictures(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy against cost for a remedy table (:func:`to_dict`): one scatter per accelerator, x the
    SRAM Vela gives, or one with x the .tflite size when Vela did not run; y the worst head's drop
    with its interval, the suite's threshold as a line."""
    from qcheck.report.charts import ScatterPoint, scatter

    candidates = [_table(c) for c in table.get("candidates", [])]
    accelerators = sorted({str(a) for c in candidates for a in _table(c.get("targets"))})
    axes: list[tuple[str, str, Any]] = [
        (f"on {a}", f"SRAM on {a} (Vela), KiB", lambda c, a=a: _table(_table(c.get("targets")).get(a)).get("sram_bytes"))
        for a in accelerators] or [("by .tflite size", ".tflite size (Vela did not run), KiB", lambda c: c.get("size_bytes"))]
    threshold = _number(table.get("accuracy_threshold"))
    drawn = []
    for title, x_label, cost in axes:
        points = []
        for number, c in enumerate(candidates):
            head = _worst_head(c)
            points.append(ScatterPoint(
                label="as run" if c.get("baseline") else str(number), title=_numbered(number, c),
                x=_number(cost(c)), y=_number(head.get("drop")), low=_number(head.get("ci_low")),
                high=_number(head.get("ci_high")), tone="ok" if c.get("passed") else "bad",
                chosen=c.get("chosen") is True, keeps_float=c.get("keeps_float") is True))
        chart = scatter(points, x_fmt=lambda v: f"{v / 1024:g}", y_fmt=lambda v: f"{v * 100:g}%",
                        x_label=x_label, y_label="worst head's accuracy drop", threshold=threshold,
                        threshold_label=f"max {threshold * 100:g}%" if threshold is not None else "",
                        x_tick_unit=1024)
        drawn.append({"title": title, "chart": chart})
    return drawn
