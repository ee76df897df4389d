"""Accuracy per output head, with the confidence interval of the drop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qcheck.report.charts import BarRow, Chart, bar_chart
from qcheck.report.view.values import number, percent, points


@dataclass(frozen=True)
class Head:
    """One output head's row of the accuracy table, every number formatted."""

    name: str
    float: str
    quantized: str
    drop: str
    interval: str
    agreement: str
    samples: str
    labelled: bool
    task: str = "classification"  # reports written before tasks were classification heads
    metric: str = "top-1 drop"
    summary: str = ""


def head(name: str, data: Mapping[str, Any]) -> Head:
    """The row of head ``name`` from its ``accuracy`` entry."""
    low, high = number(data.get("ci_low")), number(data.get("ci_high"))
    drop = number(data.get("drop"))
    metric = str(data.get("metric", "top-1 drop"))
    # Drops of a proportion (top-1, decisions, AUC) are points; other tasks' shares are percent.
    unit = " points" if "drop" in metric or "disagreement" in metric else "%"
    return Head(
        name=name,
        float=percent(data.get("float")),
        quantized=percent(data.get("quantized")),
        drop="-" if drop is None else f"{points(drop)}{unit}",
        interval="-" if low is None or high is None else f"{points(low)} to {points(high)}{unit}",
        agreement=percent(data.get("agreement")),
        samples=str(data.get("samples", "-")),
        labelled=bool(data.get("labelled", True)),
        task=str(data.get("task", "classification")),
        metric=metric,
        summary=str(data.get("summary", "")),
    )


def accuracy_chart(heads: Mapping[str, Mapping[str, Any]], check: Mapping[str, Any] | None) -> Chart | None:
    """The drop per head with its 95% interval as a whisker, against the accuracy_drop threshold."""
    threshold = number(check.get("threshold")) if check else None
    rows = []
    for name, data in sorted(heads.items()):
        drop = number(data.get("drop"))
        if drop is None:
            continue
        low, high = number(data.get("ci_low")), number(data.get("ci_high"))
        interval = f" (CI {points(low)} to {points(high)})" if low is not None and high is not None else ""
        rows.append(BarRow(name, drop, "bad" if threshold is not None and drop > threshold else "ok",
                           f"{points(drop)}{interval}", low, high))
    if not rows:
        return None
    lines = [(threshold, f"max {points(threshold)}", "bad")] if threshold is not None else []
    return bar_chart(rows, fmt=points,
                     axis_label="share lost by quantization, in each head's task metric (whisker: 95% CI)",
                     lines=lines)
