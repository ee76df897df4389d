"""Charts with one bar per layer or tensor: error vs the float model, saturation, constant bytes."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from qcheck.report.charts import LABEL_CHARS, BarRow, bar_chart, shorten
from qcheck.report.view.values import ChartBlock, Table, fixed, number
from qcheck.tflite.inspect import layer_name
from qcheck.units import format_quantity

# The values of qcheck.tflite.tensor_stats, which the report does not import (numpy).
ROUNDING_ONLY = 1 / math.sqrt(12)  # rmse of uniform rounding, in quantization steps
SUSPICIOUS = 0.7  # rmse/scale above this: QuantizationDebugger's rule of thumb
MAX_CHART_ROWS = 60
MAX_SIZE_ROWS = 15
_BOUNDED_OPS = frozenset({"SOFTMAX", "LOG_SOFTMAX", "LOGISTIC"})


def _worst_in_order(rows: Sequence[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    """The ``MAX_CHART_ROWS`` rows with the largest ``key``, kept in graph order."""
    if len(rows) <= MAX_CHART_ROWS:
        return list(rows)
    ranked = sorted(range(len(rows)), key=lambda i: -(number(rows[i].get(key)) or 0.0))
    keep = set(ranked[:MAX_CHART_ROWS])
    return [row for i, row in enumerate(rows) if i in keep]


def _name(row: Mapping[str, Any]) -> str:
    return layer_name(str(row.get("name", "")))


def _scope(rows: Sequence[Mapping[str, Any]]) -> str:
    """The folder-like prefix (``functional_1/model/``) that every scoped name in ``rows`` shares."""
    scoped = [_name(row) for row in rows if "/" in _name(row)]
    if len(scoped) < 2:
        return ""
    prefix = os.path.commonprefix(scoped)
    return prefix[: prefix.rfind("/") + 1]


def _labels(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], str]:
    """Chart labels "OP name" that fit, the op always kept, and the prefix left out of the names."""
    scope = _scope(rows)
    labels = []
    for row in rows:
        op, name = str(row.get("op", "")), _name(row)
        if scope and name.startswith(scope):
            name = name[len(scope):]
        labels.append(f"{op} {shorten(name, max(LABEL_CHARS - len(op) - 1, 8))}".strip())
    return labels, scope


def _scope_note(scope: str) -> str:
    return f" Names are shown without their common prefix '{scope}'." if scope else ""


def layers(entries: Sequence[Mapping[str, Any]]) -> ChartBlock | None:
    """Error per layer in quantization steps, with the 0.29 (rounding) and 0.7 (suspicious) lines."""
    measured = [row for row in entries if number(row.get("rmse_steps")) is not None]
    if not measured:
        return None
    shown = _worst_in_order(measured, "rmse_steps")
    labels, scope = _labels(shown)
    rows = []
    for row, label in zip(shown, labels, strict=True):
        steps = number(row.get("rmse_steps")) or 0.0
        bad = bool(row.get("suspicious")) or steps > SUSPICIOUS
        rows.append(BarRow(label, steps, "bad" if bad else "ok", f"{steps:.2f} steps", title=_name(row)))
    chart = bar_chart(rows, fmt=lambda v: f"{v:.2f}", axis_label="error vs float model: rmse / scale (quantization steps)",
                      lines=[(ROUNDING_ONLY, "0.29 rounding only", "muted"), (SUSPICIOUS, "0.7 suspicious", "bad")],
                      cap=max(3.0, SUSPICIOUS * 1.5))
    suspicious = sum(1 for row in measured if row.get("suspicious") or (number(row.get("rmse_steps")) or 0) > SUSPICIOUS)
    note = (f"{len(measured)} layer outputs compared with the float model, {suspicious} above 0.7 steps. Rounding "
            "alone gives 0.29; the first red bar in graph order is where the error starts"
            + (f" (the {MAX_CHART_ROWS} worst are drawn)" if len(shown) < len(measured) else "") + "."
            + _scope_note(scope))
    table = Table(
        ("layer", "op", "rmse / scale", "SQNR (dB)", "channels", "suspicious"),
        tuple((str(row.get("name", "")), str(row.get("op", "")), f"{number(row.get('rmse_steps')) or 0.0:.3f}",
               fixed(row.get("sqnr_db"), 1), _channels(row.get("channels")), "yes" if row.get("suspicious") else "")
              for row in measured),
    )
    return ChartBlock(chart, note, table)


def _channels(channels: Any) -> str:
    if not isinstance(channels, Mapping):
        return ""
    text = f"{channels.get('under_one_step', 0)} of {channels.get('count', 0)} under one step"
    if channels.get("crushed"):
        text += f"; channel {channels.get('widest')} stretches the range"
    return text


def tensors(entries: Sequence[Mapping[str, Any]], check: Mapping[str, Any] | None) -> ChartBlock | None:
    """Share of values clipped per tensor, against the saturation check's threshold."""
    rows_in = [row for row in entries if number(row.get("saturation")) is not None]
    if not rows_in:
        return None
    threshold = number(check.get("threshold")) if check else None
    shown = _worst_in_order(rows_in, "saturation")
    labels, scope = _labels(shown)
    rows = []
    for row, label in zip(shown, labels, strict=True):
        share = number(row.get("saturation")) or 0.0
        bounded = str(row.get("op", "")).upper() in _BOUNDED_OPS
        tone = "muted" if bounded else "bad" if threshold is not None and share > threshold else "ok"
        levels = f" \u00b7 {row.get('levels_used')}/{row.get('levels')} levels" if row.get("levels") else ""
        rows.append(BarRow(label, share, tone, f"{share:.2%}{levels}", title=_name(row)))
    pct = lambda v: f"{v * 100:.3g}%"
    lines = [(threshold, f"saturation max {format_quantity(threshold, 'fraction')}", "bad")] if threshold else []
    chart = bar_chart(rows, fmt=pct, axis_label="share of values clipped at the integer limits",
                      high=max([*(r.value for r in rows), threshold or 0.0, 0.001]) * 1.1, lines=lines)
    clipped = sum(1 for row in rows_in if (number(row.get("saturation")) or 0.0) > 0)
    note = (f"{len(rows_in)} activation tensors, {clipped} with clipped values; softmax outputs (grey) are "
            "expected at their limits. Few levels used means the range is wider than the data"
            + (f" (the {MAX_CHART_ROWS} most clipped are drawn)" if len(shown) < len(rows_in) else "") + "."
            + _scope_note(scope))
    table = Table(
        ("tensor", "op", "dtype", "clipped", "levels used", "calibration clipped"),
        tuple((str(row.get("name", "")), str(row.get("op", "")), str(row.get("dtype", "")),
               format_quantity(number(row.get("saturation")), "fraction"),
               f"{row.get('levels_used', '-')}/{row.get('levels', '-')}",
               format_quantity(number(row.get("calibration_saturation")), "fraction"))
              for row in rows_in),
    )
    return ChartBlock(chart, note, table)


def size_breakdown(layers: Sequence[Mapping[str, Any]]) -> ChartBlock | None:
    """Constant bytes per layer, the largest first (``total_bytes``, or ``bytes``)."""
    def size(row: Mapping[str, Any]) -> float:
        return number(row.get("total_bytes", row.get("bytes"))) or 0.0

    if not layers:
        return None
    total = sum(size(row) for row in layers) or 1.0
    ordered = sorted(layers, key=lambda row: -size(row))
    labels, scope = _labels(ordered[:MAX_SIZE_ROWS])
    rows = [BarRow(label if _name(row) else "constants no operator reads", size(row), "info",
                   f"{format_quantity(size(row), 'bytes')} ({size(row) / total:.0%})", title=_name(row))
            for row, label in zip(ordered[:MAX_SIZE_ROWS], labels, strict=True)]
    rest = ordered[MAX_SIZE_ROWS:]
    if rest:
        bytes_left = sum(size(row) for row in rest)
        rows.append(BarRow(f"{len(rest)} other layers", bytes_left, "muted",
                           f"{format_quantity(bytes_left, 'bytes')} ({bytes_left / total:.0%})"))
    chart = bar_chart(rows, fmt=_tick_bytes, axis_label="constant data (weights, biases, ...)",
                      tick_step_unit=_byte_step(max(row.value for row in rows)))
    note = (f"{format_quantity(total, 'bytes')} of constant data in {len(layers)} layers; the largest "
            f"{min(len(layers), MAX_SIZE_ROWS)} are drawn." + _scope_note(scope))
    table = Table(
        ("layer", "op", "weights", "bias", "other", "total"),
        tuple((str(row.get("name", "")), str(row.get("op", "")),
               *(format_quantity(number(row.get(k)), "bytes") for k in ("weights_bytes", "bias_bytes", "other_bytes")),
               format_quantity(size(row), "bytes")) for row in ordered),
    )
    return ChartBlock(chart, note, table)


def _byte_step(largest: float) -> float:
    """Ticks on whole MiB or KiB once the axis reaches 2 of them."""
    return next((float(f) for f in (1024**2, 1024) if largest >= 2 * f), 1.0)


def _tick_bytes(value: float) -> str:
    for unit, factor in (("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor:
            return f"{value / factor:g} {unit}"
    return f"{value:g} B"
