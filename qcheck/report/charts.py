"""Geometry of the HTML report's charts: numbers in, positions out, no markup.

The template draws what these functions lay out, so every name reaches the page through
jinja2's autoescaping and the arithmetic stays testable without a browser. All charts are
horizontal bars: one row per layer, tensor or quantity, its label on the left, where long
layer names still fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ROW = 18  # pixels per bar row
LABEL_WIDTH = 300  # pixels for the row labels
PLOT_WIDTH = 520
VALUE_WIDTH = 240  # pixels right of the plot for the value text
TOP = 34  # room for the reference lines' labels, on two staggered rows
TOP_PLAIN = 6  # above a chart without reference lines
BOTTOM = 30  # room for the axis ticks and title
LABEL_CHARS = 44


@dataclass(frozen=True)
class BarRow:
    """One row to draw: a label, a value and how it reads (``tone``: ok, bad, warn, muted)."""

    label: str
    value: float
    tone: str = "ok"
    text: str = ""  # shown right of the plot; the formatted value when empty
    low: float | None = None  # a whisker, e.g. a confidence interval
    high: float | None = None
    title: str = ""  # the tooltip; the label when empty


@dataclass(frozen=True)
class Bar:
    """A laid-out row. ``label`` is shortened to fit; ``title`` keeps the whole name."""

    label: str
    title: str
    y: float
    x: float
    width: float
    tone: str
    text: str
    clipped: bool  # the value is beyond the axis: the bar ends in an arrow at the edge
    whisker: tuple[float, float] | None


@dataclass(frozen=True)
class Line:
    """A vertical reference line (a threshold, a rule of thumb) with its label."""

    x: float
    label: str
    tone: str
    label_y: float  # staggered, so that labels of nearby lines do not overlap


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    """A horizontal bar chart: rows top to bottom, reference lines, x-axis ticks."""

    width: int
    height: int
    plot_left: int
    plot_width: int
    plot_top: int
    plot_bottom: int
    zero_x: float
    bars: tuple[Bar, ...]
    lines: tuple[Line, ...]
    ticks: tuple[Tick, ...]
    axis_label: str


def bar_chart(
    rows: Sequence[BarRow],
    *,
    fmt: Callable[[float], str],
    axis_label: str,
    lines: Sequence[tuple[float, str, str]] = (),
    low: float = 0.0,
    high: float | None = None,
    cap: float | None = None,
    tick_step_unit: float = 1.0,
) -> Chart:
    """Lay out ``rows`` on an axis from ``low`` to ``high`` (default: the largest value, line or
    whisker). With ``cap``, the axis ends there and longer bars are drawn clipped, so that one
    huge value does not flatten every other bar. Ticks are round multiples of ``tick_step_unit``
    (1024 puts byte ticks on whole KiB)."""
    values = [r.value for r in rows] + [r.high for r in rows if r.high is not None] + [v for v, _, _ in lines]
    top_value = high if high is not None else max([low, *values]) * 1.08 or 1.0
    if cap is not None:
        top_value = min(top_value, cap)
    bottom_value = min([low, *(r.value for r in rows), *(r.low for r in rows if r.low is not None)])
    if top_value <= bottom_value:
        top_value = bottom_value + 1.0
    ticks_at = [t * tick_step_unit for t in nice_ticks(bottom_value / tick_step_unit, top_value / tick_step_unit)]

    def x(value: float) -> float:
        value = min(max(value, bottom_value), top_value)
        return round(LABEL_WIDTH + (value - bottom_value) / (top_value - bottom_value) * PLOT_WIDTH, 1)

    top = TOP if lines else TOP_PLAIN
    zero = x(0.0)
    bars = []
    for i, row in enumerate(rows):
        end = x(row.value)
        whisker = None
        if row.low is not None and row.high is not None:
            whisker = (x(row.low), x(row.high))
        bars.append(Bar(
            label=shorten(row.label), title=row.title or row.label, y=top + i * ROW, x=min(zero, end),
            width=round(abs(end - zero), 1), tone=row.tone, text=row.text or fmt(row.value),
            clipped=row.value > top_value, whisker=whisker,
        ))
    plot_bottom = top + max(len(rows), 1) * ROW
    return Chart(
        width=LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH,
        height=plot_bottom + BOTTOM,
        plot_left=LABEL_WIDTH,
        plot_width=PLOT_WIDTH,
        plot_top=top,
        plot_bottom=plot_bottom,
        zero_x=zero,
        bars=tuple(bars),
        lines=tuple(Line(x(v), label, tone, top - 6 - 13 * (i % 2))
                    for i, (v, label, tone) in enumerate(sorted(lines, key=lambda line: -line[0]))
                    if bottom_value <= v <= top_value),
        ticks=tuple(Tick(x(t), fmt(t)) for t in ticks_at),
        axis_label=axis_label,
    )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """At most about ``count`` round values within ``low`` .. ``high``, 1, 2 or 5 times 10^n apart."""
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def shorten(label: str, limit: int = LABEL_CHARS) -> str:
    """The end of a long name (where layer names differ), marked with an ellipsis."""
    return label if len(label) <= limit else "\u2026" + label[-(limit - 1):]


@dataclass(frozen=True)
class Meter:
    """A value against its budget: the share of the track filled, and where the budget sits."""

    fill: float  # 0..1 of the track
    budget_at: float | None  # 0..1 of the track; None without a budget
    over: bool


def meter(value: float, budget: float | None) -> Meter:
    """Within budget the track is the budget; over it, the track is the value and the budget
    line sits inside it, so the excess shows as bar past the line."""
    if budget is None or budget <= 0:
        return Meter(1.0 if value > 0 else 0.0, None, False)
    if value <= budget:
        return Meter(value / budget, 1.0, False)
    return Meter(1.0, budget / value, True)
