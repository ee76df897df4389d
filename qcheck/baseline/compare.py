"""Judge a run against its baseline: pure functions, no I/O.

Figures that cost memory or time fail when they grow beyond their tolerance. Accuracy is judged
on the paired samples (the same evaluation samples through both models): for right-or-wrong
outcomes an exact McNemar test on the samples that changed answer, for errors the interval of
the mean per-sample change, so that a real regression fails and a sample or two of noise does
not. Golden outputs are compared in quantization steps. When the quantized bytes or the
toolchain changed, the messages say which, so that "the model changed" and "the toolchain
changed" are told apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qcheck.baseline import UPDATE_FLAG
from qcheck.baseline.record import Figure, Head, Record
from qcheck.stats import mcnemar_exact_p, mean_interval
from qcheck.units import format_quantity, parse_quantity

SIGNIFICANCE = 0.05  # the paired test's one-sided level: a drop this unlikely under noise is real
_LISTED = 8  # samples named in a golden-output line


@dataclass(frozen=True)
class Tolerance:
    """How much a figure may grow: a share of the baseline's value, or an amount in its unit."""

    relative: float | None = None
    absolute: float | None = None

    def allowed(self, base: float) -> float:
        return self.relative * abs(base) if self.relative is not None else self.absolute or 0.0

    def describe(self, unit: str) -> str:
        if self.relative is not None:
            return f"{self.relative * 100:g}%"
        return format_quantity(self.absolute or 0.0, unit)


def tolerance(unit: str, *, relative_only: bool = False) -> Any:
    """A validator for a growth tolerance option: "2%" (of the baseline's value) or an amount in
    ``unit`` ("0", "4KB", "1ms"); ``relative_only`` figures take only a share."""

    def parse(value: Any) -> Tolerance:
        if isinstance(value, str) and value.strip().endswith("%"):
            return Tolerance(relative=parse_quantity(value, "fraction"))
        if relative_only and value not in (0, "0"):
            raise ValueError(f"must be a share such as \"10%\", not {value!r}")
        return Tolerance(absolute=parse_quantity(value, unit))

    return parse


# Option key of each judged figure, with its default tolerance (the README lists them).
FIGURE_OPTIONS: dict[str, tuple[str, str, str]] = {  # figure -> (option, unit, default)
    "size": ("size", "bytes", "2%"),
    "sram": ("sram", "bytes", "0"),
    "flash": ("flash", "bytes", "2%"),
    "npu_weights": ("npu_weights", "bytes", "2%"),
    "inference_time": ("inference_time", "seconds", "5%"),
    "vela": ("cpu_ops", "count", "0"),
    "arena": ("arena", "bytes", "0"),
    "layer_error": ("layer_error", "count", "10%"),
}
DEFAULT_ACCURACY = "0.5%"  # points of accuracy (or of error, as a share of the output range)
DEFAULT_GOLDEN_STEPS = 1.0
# Which distribution of the toolchain a figure depends on beyond the model's bytes.
_DEPENDS = {"size": "tensorflow", "arena": "tensorflow", "layer_error": "ai-edge-litert",
            "accuracy_drop": "ai-edge-litert", "vela": "ethos-u-vela", "sram": "ethos-u-vela",
            "flash": "ethos-u-vela", "npu_weights": "ethos-u-vela", "inference_time": "ethos-u-vela"}
_NAMES = {"vela": "cpu_ops", "accuracy_drop": "accuracy_drop"}


def tolerances(options: Mapping[str, Any]) -> dict[str, Tolerance]:
    """Each judged figure's tolerance: the option's value, else the default."""
    found = {}
    for figure, (option, unit, default) in FIGURE_OPTIONS.items():
        value = options.get(option)
        found[figure] = value if isinstance(value, Tolerance) else tolerance(unit)(default)
    return found


@dataclass
class Comparison:
    """What changed since the baseline: ``failures`` (regressions, each a sentence), ``lines``
    (every figure, for the message) and ``section`` (the report's ``baseline`` section)."""

    failures: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # the lines about what differs (an update prints them)
    section: dict[str, Any] = field(default_factory=dict)


def compare(base: Record, now: Record, options: Mapping[str, Any]) -> Comparison:
    """Judge ``now`` against ``base`` with the tolerances in ``options``."""
    result = Comparison(section={"figures": {}, "heads": {}, "golden": {}})
    changed_tools = {name: (base.toolchain.get(name, "none"), version) for name, version in now.toolchain.items()
                     if base.toolchain.get(name, "none") != version}
    same_bytes = base.quantized_sha256 == now.quantized_sha256
    result.lines.append(_origin(same_bytes, changed_tools))
    if changed_tools or not same_bytes:
        result.changes.append(result.lines[-1])
    result.section["model_changed"] = not same_bytes
    result.section["accelerator"] = base.accelerator if base.accelerator == now.accelerator else None
    result.section["toolchain_changes"] = {name: {"baseline": old, "now": new}
                                           for name, (old, new) in changed_tools.items()}

    def cause(figure: str) -> str:
        tool = _DEPENDS.get(figure, "")
        if tool in changed_tools:
            old, new = changed_tools[tool]
            return f" ({tool} changed {old} -> {new}" + (", same quantized bytes)" if same_bytes else
                                                          ", and the quantized bytes differ)")
        return ""  # the first line says whether the model changed

    _figures(base, now, tolerances(options), cause, result)
    accuracy = options.get("accuracy")
    accuracy = parse_quantity(DEFAULT_ACCURACY, "fraction") if accuracy is None else float(accuracy)
    _heads(base, now, accuracy, cause, result)
    steps = options.get("golden_steps")
    _golden(base, now, DEFAULT_GOLDEN_STEPS if steps is None else float(steps), same_bytes, changed_tools, result)
    return result


def _origin(same_bytes: bool, changed: dict[str, tuple[str, str]]) -> str:
    """Whether the model, the toolchain, or both changed since the baseline, in one sentence."""
    tools = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(changed.items()))
    if same_bytes:
        return ("quantized bytes unchanged; the toolchain changed: " + tools) if changed else \
            "quantized bytes and toolchain unchanged"
    if "tensorflow" not in changed:
        return ("the model changed: its quantized bytes differ, with the same tensorflow "
                f"{'(' + tools + ' changed besides)' if changed else 'and toolchain'}")
    old, new = changed["tensorflow"]
    return (f"the quantized bytes differ and the toolchain changed ({tools}): the model, the converter or both "
            f"changed; to tell them apart, check the baseline's model with this toolchain (or this model with "
            f"tensorflow {old})")


def _figures(base: Record, now: Record, tols: dict[str, Tolerance], cause: Callable[[str], str],
             result: Comparison) -> None:
    vela_comparable = base.accelerator == now.accelerator
    if not vela_comparable and base.accelerator and now.accelerator:
        result.lines.append(f"Vela figures not compared: the baseline is for {base.accelerator}, this run for "
                            f"{now.accelerator}")
    for name in sorted(set(base.figures) | set(now.figures)):
        old, new = base.figures.get(name), now.figures.get(name)
        label = _NAMES.get(name, name)
        if old is None or new is None:
            why = now.unmeasured.get(name) if new is None else None
            result.section["figures"][name] = {"baseline": _value(old), "now": _value(new), "verdict": "new"
                                              if old is None else "not measured" if why is None else "unmeasurable"}
            result.lines.append(f"{label}: {'new, not in the baseline' if old is None else 'not measured now'} "
                                f"({_show(old or new)}{'' if why is None else ': ' + why})")
            result.changes.append(result.lines[-1])
            if why is not None:
                # The run asked for the figure and its check could not measure it: whatever
                # stopped it (a model TFLite Micro no longer loads, data no longer given) may hide
                # a regression, so the baseline cannot vouch for it.
                result.failures.append(f"{label} is in the baseline ({_show(old)}) but could not be measured now: "
                                       f"{why}{cause(name)}; if that is intended, refresh the baseline")
            continue
        if name in ("vela", "sram", "flash", "npu_weights", "inference_time") and not vela_comparable:
            continue
        growth = new.value - old.value
        tol = tols.get(name)
        verdict = "same" if math.isclose(new.value, old.value, rel_tol=1e-9, abs_tol=1e-12) else (
            "better" if growth < 0 else "worse")
        entry: dict[str, Any] = {"baseline": old.value, "now": new.value, "unit": new.unit, "delta": growth}
        text = f"{label}: {_show(old)} -> {_show(new)}"
        if tol is not None:
            entry["tolerance"] = tol.describe(new.unit)
            if verdict == "worse" and growth > tol.allowed(old.value) + 1e-12:
                verdict = "regressed"
                result.failures.append(f"{label} grew {_show(old)} -> {_show(new)} ({_delta(growth, old)}), beyond "
                                       f"the baseline tolerance {tol.describe(new.unit)}{cause(name)}")
            text += f" ({_delta(growth, old)}, tolerance {tol.describe(new.unit)})" if verdict != "same" else ""
        else:
            text += " (judged on the paired samples)" if name == "accuracy_drop" else ""
        entry["verdict"] = verdict
        result.section["figures"][name] = entry
        result.lines.append(text)
        if verdict != "same":
            result.changes.append(text)


def _value(fig: Figure | None) -> float | None:
    return None if fig is None else fig.value


def _show(fig: Figure | None) -> str:
    if fig is None:
        return "-"
    if fig.unit == "fraction":
        return f"{fig.value * 100:.2f}%"
    return format_quantity(fig.value, fig.unit)


def _delta(growth: float, old: Figure) -> str:
    sign = "+" if growth > 0 else "-"
    amount = f"{abs(growth) * 100:.2f} points" if old.unit == "fraction" else format_quantity(abs(growth), old.unit)
    share = f", {growth / old.value:+.1%}" if old.value and old.unit != "fraction" else ""
    return f"{sign}{amount}{share}"


def _heads(base: Record, now: Record, tol: float, cause: Callable[[str], str], result: Comparison) -> None:
    """Each head's accuracy (or error) on the paired samples."""
    old_heads, new_heads = {h.name: h for h in base.heads}, {h.name: h for h in now.heads}
    if not new_heads:
        if old_heads:  # no data now, or the accuracy could not be measured (its own check says why)
            result.lines.append(f"accuracy per head not measured now (the baseline has {', '.join(sorted(old_heads))})")
            result.changes.append(result.lines[-1])
        return
    if set(old_heads) != set(new_heads):
        result.failures.append(f"the output heads differ from the baseline's: {sorted(old_heads)} then, "
                               f"{sorted(new_heads)} now; update the baseline if the outputs changed on purpose")
        return
    paired = base.samples == now.samples and base.data_sha256 == now.data_sha256
    if not paired:
        result.lines.append(f"evaluation data changed since the baseline ({base.samples} -> {now.samples} samples"
                            f"{'' if base.samples != now.samples else ', other values'}): outcomes are not paired, "
                            "each head is judged on its value alone")
        result.changes.append(result.lines[-1])
    unrecorded = sorted(name for name, head in old_heads.items() if head.labels_sha256 is None)
    if paired and unrecorded:
        result.lines.append(f"the baseline does not record which labels head(s) {', '.join(unrecorded)} were judged "
                            "against (it was written by an older qcheck), so whether they changed cannot be told: "
                            f"a label fix would show as a change of accuracy; update the baseline with {UPDATE_FLAG} "
                            "to record them")
        result.changes.append(result.lines[-1])
    for name in sorted(new_heads):
        old, new = old_heads[name], new_heads[name]
        if old.outcome != new.outcome:
            result.lines.append(f"head '{name}': judged as {old.task} in the baseline, {new.task} now: not compared")
            continue
        if paired and None not in (old.labels_sha256, new.labels_sha256) and old.labels_sha256 != new.labels_sha256:
            _relabelled(old, new, now.samples, result)
            continue
        _head(old, new, tol, paired, cause, result)
        if paired:
            result.section["heads"][name]["labels"] = "unrecorded" if name in unrecorded else "same"


def _relabelled(old: Head, new: Head, samples: int, result: Comparison) -> None:
    """A head whose outcomes were judged against other labels than the baseline's, on the same
    inputs: a label fix, which a paired test would take for a change of the model."""
    what = ("judged against the float model's answers in the baseline, against labels now" if not old.labels_sha256
            else "judged against labels in the baseline, against the float model's answers now"
            if not new.labels_sha256 else "other labels")
    result.section["heads"][new.name] = {"metric": new.metric, "baseline": old.value, "now": new.value,
                                         "paired": False, "labels": "changed", "verdict": "not compared"}
    text = (f"head '{new.name}': the labels changed since the baseline, on the same {samples} evaluation inputs "
            f"({what}): its {new.metric} {old.value * 100:.2f}% -> {new.value * 100:.2f}% is not compared, the "
            "outcomes being judged against different labels")
    result.lines.append(text)
    result.changes.append(text)
    result.failures.append(f"{text}; if the labels changed on purpose (a fix), update the baseline with "
                           f"{UPDATE_FLAG} so that later runs are judged against them")


def _head(old: Head, new: Head, tol: float, paired: bool, cause: Callable[[str], str], result: Comparison) -> None:
    entry: dict[str, Any] = {"metric": new.metric, "baseline": old.value, "now": new.value, "paired": paired}
    worse_by = (old.value - new.value) if new.outcome == "correct" else (new.value - old.value)
    summary = f"head '{new.name}' {new.metric} {old.value * 100:.2f}% -> {new.value * 100:.2f}%"
    detail = ""
    regressed = False
    if paired and new.outcome == "correct":
        lost = int(np.sum(old.outcomes & ~new.outcomes))
        gained = int(np.sum(~old.outcomes & new.outcomes))
        p = mcnemar_exact_p(lost, gained)
        entry.update(lost=lost, gained=gained, p_value=p)
        detail = f" ({lost} sample(s) lost, {gained} gained; exact McNemar p = {p:.2g})"
        regressed = worse_by > tol and p < SIGNIFICANCE
    elif paired:
        low, high = mean_interval((new.outcomes.astype(np.float64) - old.outcomes.astype(np.float64)))
        entry.update(change_low=low, change_high=high)
        detail = f" (paired change 95% CI {low * 100:+.2f} to {high * 100:+.2f} points)"
        regressed = worse_by > tol and low > 0
    else:
        regressed = worse_by > tol
    entry["verdict"] = "regressed" if regressed else "same" if worse_by == 0 else "worse" if worse_by > 0 else "better"
    result.section["heads"][new.name] = entry
    text = summary + detail
    result.lines.append(text)
    if entry["verdict"] != "same" or entry.get("lost") or entry.get("gained"):
        result.changes.append(text)
    if regressed:
        result.failures.append(f"{summary}: worse by {worse_by * 100:.2f} points{detail}, beyond the baseline "
                               f"tolerance {tol * 100:g} points{cause('accuracy_drop')}")


def _golden(base: Record, now: Record, allowed: float, same_bytes: bool, changed: dict[str, tuple[str, str]],
            result: Comparison) -> None:
    """Golden outputs in quantization steps: which output moved, on which samples, how far."""
    if not base.heads or not np.array_equal(base.golden_indices, now.golden_indices) or \
            base.data_sha256 != now.data_sha256:
        return
    old_heads = {h.name: h for h in base.heads}
    for new in now.heads:
        old = old_heads.get(new.name)
        if old is None:
            continue
        if old.golden.shape != new.golden.shape or old.golden.dtype != new.golden.dtype:
            result.lines.append(f"golden outputs of '{new.name}' not compared: {old.golden.dtype} "
                                f"{list(old.golden.shape)} in the baseline, {new.golden.dtype} "
                                f"{list(new.golden.shape)} now")
            result.changes.append(result.lines[-1])
            continue
        steps, unit = golden_steps(old, new)
        per_sample = steps.reshape(len(steps), -1).max(axis=1) if steps.size else steps
        moved = np.flatnonzero(per_sample > 0)
        entry: dict[str, Any] = {"samples": len(per_sample), "moved": len(moved),
                                 "max_steps": float(per_sample.max()) if per_sample.size else 0.0, "unit": unit}
        result.section["golden"][new.name] = entry
        if not len(moved):
            result.lines.append(f"golden outputs of '{new.name}': identical on {len(per_sample)} samples")
            continue
        first = int(moved[0])
        flat_old, flat_new = old.golden[first].reshape(-1), new.golden[first].reshape(-1)
        where = int(np.argmax(steps[first].reshape(-1)))
        samples = ", ".join(str(int(base.golden_indices[i])) for i in moved[:_LISTED])
        more = f" and {len(moved) - _LISTED} more" if len(moved) > _LISTED else ""
        text = (f"golden outputs of '{new.name}' moved on {len(moved)} of {len(per_sample)} samples (samples "
                f"{samples}{more}), up to {entry['max_steps']:g} {unit}; first: sample "
                f"{int(base.golden_indices[first])}, output [{where}] {flat_old[where]} -> {flat_new[where]}")
        entry["samples_moved"] = [int(base.golden_indices[i]) for i in moved]
        result.lines.append(text)
        result.changes.append(text)
        if same_bytes and entry["max_steps"] > allowed:
            runtime = ", ".join(f"{name} {a} -> {b}" for name, (a, b) in sorted(changed.items()))
            result.failures.append(f"{text}, beyond golden_steps {allowed:g} with the same quantized bytes: the "
                                   f"runtime computes the model differently" + (f" ({runtime})" if runtime else ""))


def golden_steps(old: Head, new: Head) -> tuple[np.ndarray, str]:
    """How far each golden output moved: integer outputs in their own steps, float outputs in
    the steps of the integer tensor behind them (its scale), else in the output's units."""
    if np.issubdtype(new.golden.dtype, np.integer) and np.issubdtype(old.golden.dtype, np.integer):
        return np.abs(new.golden.astype(np.int64) - old.golden.astype(np.int64)).astype(np.float64), "steps"
    moved = np.abs(new.golden.astype(np.float64) - old.golden.astype(np.float64))
    if new.scale:
        return np.round(moved / new.scale, 3), "steps"
    return moved, "(output units)"
