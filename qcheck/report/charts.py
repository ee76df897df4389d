"""Geometry of the HTML report's charts: numbers in, positions out, no markup.

The template draws what these functions lay out, so every name reaches the page through
jinja2's autoescaping and the arithmetic stays testable without a browser. Most charts are
horizontal bars: one row per layer, tensor or quantity, its label on the left, where long
layer names still fit; the remedies' accuracy-against-cost picture is a scatter (:func:`scatter`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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


# -- scatter: each remedy's accuracy against its cost on the target ------------------------------

SCATTER_LEFT = 64  # room for the y ticks and title
SCATTER_PLOT_WIDTH = 520
SCATTER_RIGHT = 90  # room for the labels of the points at the right edge
SCATTER_TOP = 16
SCATTER_PLOT_HEIGHT = 240
SCATTER_BOTTOM = 40  # room for the x ticks and title
_LABEL_GAP = 12  # pixels: labels closer than this on both axes are moved apart


@dataclass(frozen=True)
class ScatterPoint:
    """One point to place: ``x`` and ``y`` with an interval on ``y``; None where the figure is missing."""

    label: str  # drawn beside the point (the row's number in the table)
    title: str  # the tooltip: what the recipe changes
    x: float | None
    y: float | None
    low: float | None = None
    high: float | None = None
    tone: str = "ok"  # ok (passes), bad (fails)
    chosen: bool = False
    keeps_float: bool = False  # drawn as a hollow square, not a dot


@dataclass(frozen=True)
class Dot:
    """A placed point, its error bar (``whisker``: top and bottom y) and its label's position.
    ``text`` is the label as drawn: points at the same place share one ("as run, 3"), the others' is ""."""

    label: str
    title: str
    cx: float
    cy: float
    whisker: tuple[float, float] | None
    tone: str
    chosen: bool
    keeps_float: bool
    label_x: float
    label_y: float
    text: str = ""


@dataclass(frozen=True)
class YTick:
    y: float
    label: str


@dataclass(frozen=True)
class Scatter:
    """Points on two value axes, a horizontal threshold line, and the points that could not be placed."""

    width: int
    height: int
    plot_left: int
    plot_top: int
    plot_width: int
    plot_height: int
    dots: tuple[Dot, ...]
    threshold_y: float | None
    threshold_label: str
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[YTick, ...]
    x_label: str
    y_label: str
    missing: tuple[str, ...]  # the title of each point without an x or y figure


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def scatter(points: Sequence[ScatterPoint], *, x_fmt: Callable[[float], str], y_fmt: Callable[[float], str],
            x_label: str, y_label: str, threshold: float | None = None, threshold_label: str = "",
            x_tick_unit: float = 1.0) -> Scatter:
    """Lay out ``points``: x from 0 (costs are never negative) to the largest, y from the lowest
    interval end (or 0) to the highest or the threshold. A point missing a figure (None, NaN) is
    listed in ``missing``, never placed at a made-up position. Ticks on x are round multiples of
    ``x_tick_unit`` (1024 puts byte ticks on whole KiB)."""
    placed = [p for p in points if _finite(p.x) and _finite(p.y)]
    missing = tuple(p.title for p in points if not (_finite(p.x) and _finite(p.y)))
    xs = [float(p.x) for p in placed if p.x is not None]
    ys = [float(v) for p in placed for v in (p.y, p.low, p.high) if _finite(v) and v is not None]
    if _finite(threshold) and threshold is not None:
        ys.append(threshold)
    x_high = max([0.0, *xs]) * 1.08 or 1.0
    y_low = min([0.0, *ys])
    y_high = max([0.0, *ys])
    margin = (y_high - y_low) * 0.08 or 0.01
    y_high += margin
    y_low = y_low - margin if y_low < 0 else y_low

    def x_at(value: float) -> float:
        return round(SCATTER_LEFT + min(max(value, 0.0), x_high) / x_high * SCATTER_PLOT_WIDTH, 1)

    def y_at(value: float) -> float:
        value = min(max(value, y_low), y_high)
        return round(SCATTER_TOP + (y_high - value) / (y_high - y_low) * SCATTER_PLOT_HEIGHT, 1)

    dots: list[Dot] = []
    for p in sorted(placed, key=lambda p: (float(p.x or 0), float(p.y or 0))):
        cx, cy = x_at(float(p.x or 0)), y_at(float(p.y or 0))
        whisker = None
        if _finite(p.low) and _finite(p.high) and p.low is not None and p.high is not None:
            whisker = (y_at(p.high), y_at(p.low))
        text = f"{p.label} (chosen)" if p.chosen else p.label
        same = next((i for i, d in enumerate(dots) if abs(d.cx - cx) < 2 and abs(d.cy - cy) < 2 and d.text), None)
        if same is not None:  # drawn over another point: one label names both
            dots[same] = replace(dots[same], text=f"{dots[same].text}, {text}")
            text = ""
        label_y = cy + 4
        while text and any(d.text and abs(d.label_x - (cx + 9)) < _LABEL_GAP * 2 and abs(d.label_y - label_y) < _LABEL_GAP
                           for d in dots):
            label_y += _LABEL_GAP  # a point at nearly the same place: its label goes below the other's
        dots.append(Dot(p.label, p.title, cx, cy, whisker, p.tone, p.chosen, p.keeps_float, cx + 9, label_y, text))
    x_ticks = tuple(Tick(x_at(t * x_tick_unit), x_fmt(t * x_tick_unit))
                    for t in nice_ticks(0.0, x_high / x_tick_unit))
    y_ticks = tuple(YTick(y_at(t), y_fmt(t)) for t in nice_ticks(y_low, y_high))
    has_threshold = threshold is not None and _finite(threshold) and y_low <= threshold <= y_high
    return Scatter(
        width=SCATTER_LEFT + SCATTER_PLOT_WIDTH + SCATTER_RIGHT,
        height=SCATTER_TOP + SCATTER_PLOT_HEIGHT + SCATTER_BOTTOM,
        plot_left=SCATTER_LEFT, plot_top=SCATTER_TOP, plot_width=SCATTER_PLOT_WIDTH, plot_height=SCATTER_PLOT_HEIGHT,
        dots=tuple(dots),
        threshold_y=y_at(threshold) if has_threshold and threshold is not None else None,
        threshold_label=threshold_label,
        x_ticks=x_ticks, y_ticks=y_ticks, x_label=x_label, y_label=y_label, missing=missing,
    )
