"""Where the model runs: Ethos-U placement and memory against budgets, TFLite Micro kernels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qcheck.report.charts import meter
from qcheck.report.view.values import Table, check_verdict, find_check, number
from qcheck.units import format_quantity

_MEMORY = (("sram", "SRAM"), ("flash", "Flash"), ("npu_weights", "NPU weights"), ("inference_time", "Inference time"))
_MEMORY_KEYS = {"sram": "sram_bytes", "flash": "flash_bytes", "npu_weights": "npu_weights_bytes",
                "inference_time": "inference_time_s"}
_MEMORY_UNITS = {"sram": "bytes", "flash": "bytes", "npu_weights": "bytes", "inference_time": "seconds"}


@dataclass(frozen=True)
class MeterRow:
    """One memory or time figure of an accelerator against its budget."""

    label: str
    value: str
    budget: str
    verdict: str  # empty when the suite has no check for it
    fill: float  # percent of the track
    budget_at: float | None  # percent of the track
    over: bool


@dataclass(frozen=True)
class VelaTarget:
    """One accelerator: where the operators run, why some run on the CPU, and the meters."""

    accelerator: str
    config: str
    npu_ops: int
    cpu_ops: int
    npu_share: float  # percent of the operators
    already_compiled: bool
    cpu_operators: tuple[tuple[str, str, str], ...]  # op, name, reason
    meters: tuple[MeterRow, ...]
    removed_ops: int = 0  # operators Vela folds away: they run nowhere
    removed_operators: tuple[str, ...] = ()  # their labels


def vela_target(accelerator: str, data: Mapping[str, Any], checks: Sequence[Mapping[str, Any]]) -> VelaTarget:
    """Placement and memory of one accelerator's ``vela`` entry, budgets from its checks."""
    npu, cpu = int(data.get("npu_ops") or 0), int(data.get("cpu_ops") or 0)
    removed = int(data.get("removed_ops") or 0)
    config = ", ".join(str(data[k]) for k in ("system_config", "memory_mode") if data.get(k))
    if data.get("vela_version"):
        config += f"; vela {data['vela_version']}"
    meters = []
    for name, label in _MEMORY:
        check = find_check(checks, name, accelerator)
        unit = _MEMORY_UNITS[name]
        value = number(check.get("value")) if check else None
        if value is None:
            value = number(data.get(_MEMORY_KEYS[name]))
        if value is None:
            continue
        budget = number(check.get("threshold")) if check else None
        m = meter(value, budget)
        if name == "flash" and data.get("flash_kind"):
            label = str(data["flash_kind"]).capitalize()
        meters.append(MeterRow(
            label=label,
            value=format_quantity(value, unit),
            budget=_budget(value, budget, unit),
            verdict=check_verdict(check) if check else "",  # no such check in the suite
            fill=round(100 * m.fill, 2) if budget is not None else 0.0,
            budget_at=None if m.budget_at is None else round(100 * m.budget_at, 2),
            over=m.over,
        ))
    return VelaTarget(
        accelerator=accelerator,
        config=config,
        npu_ops=npu,
        cpu_ops=cpu,
        npu_share=round(100 * npu / (npu + cpu), 2) if npu + cpu else 0.0,
        already_compiled=bool(data.get("already_compiled")),
        cpu_operators=tuple((str(op.get("op", "")), _label(op), str(op.get("reason", "")))
                            for op in data.get("cpu_operators", [])),
        meters=tuple(meters),
        removed_ops=removed,
        removed_operators=tuple(str(op.get("label") or op.get("op", "")) for op in data.get("removed_operators", [])),
    )


def _label(op: Mapping[str, Any]) -> str:
    # The operator's output name, or its index when the model leaves the tensor unnamed.
    name = str(op.get("name") or "")
    if name or op.get("index") is None:
        return name
    return f"#{op['index']}"


def _budget(value: float, budget: float | None, unit: str) -> str:
    if budget is None:
        return "no budget set"
    share = f" ({value / budget:.0%})" if budget > 0 else ""
    return f"of {format_quantity(budget, unit)}{share}"


def tflm(section: Mapping[str, Any] | None, arena: Mapping[str, Any] | None = None,
         parity_section: Mapping[str, Any] | None = None, cpu_part: Mapping[str, Any] | None = None,
         cpu_parity: Mapping[str, Any] | None = None) -> Table | None:
    """Operators without a TFLite Micro kernel, the resolver the model needs, and (from the arena
    and tflm_parity checks) the arena TFLM allocates and how far its outputs are from LiteRT's;
    on an Ethos-U system (tflm_cpu_ops, tflm_cpu_parity), whether TFLM loads the operators Vela
    leaves on the CPU, and how far what they write is from LiteRT's."""
    if not (section or arena or parity_section or cpu_part or cpu_parity):  # none of the checks ran
        return None
    section, parity_section = section or {}, parity_section or {}
    rows = [(str(u.get("op", "")), str(u.get("count", "")), str(u.get("reason", "")))
            for u in section.get("unsupported", [])]
    if section:  # the tflm_ops check ran: what the application's op resolver must register
        resolver = ", ".join(f"{m}()" for m in section.get("resolver", []))
        rows.append(("MicroMutableOpResolver", str(len(section.get("resolver", []))), resolver or "nothing"))
    if isinstance(arena, Mapping) and arena.get("loaded"):  # the arena check's: TFLM's own allocation
        rows.extend((f"arena {part}", format_quantity(arena.get(part), "bytes"), what) for part, what in (
            ("head", "activations as TFLM's planner lays them out, and kernel scratch buffers"),
            ("tail", "persistent: kernels' data and TFLM's structures"), ("total", "the arena the model needs")))
    for head, parity in (parity_section.get("parity") or {}).items():
        changed = parity.get("changed")
        decision = "no decision" if changed is None else f"decision changed on {changed:.1%}"
        rows.append((f"parity '{head}'", f"{parity.get('max_steps', 0):g} {parity.get('unit', 'steps')}",
                     f"largest difference from {_kernels(parity_section)}; {decision}"))
    first = (parity_section.get("divergence") or {}).get("first_difference")
    if first:
        rows.append(("first differing layer", f"{first['steps']:g} {first['unit']}", str(first["label"])))
    for accelerator, part in sorted((cpu_part or {}).items()):
        rows.append(_cpu_part_row(accelerator, part))
    for accelerator, parity in sorted((cpu_parity or {}).items()):
        for output in parity.get("outputs", []):
            rows.append((f"CPU part parity ({accelerator}) '{output.get('name', '')}'",
                         f"{output.get('max_steps', 0):g} {output.get('unit', 'steps')}",
                         f"largest difference from {_kernels(parity)} on {parity.get('samples', 0)} sample(s)"))
    return Table(("operator", "count", "TFLite Micro"), tuple(rows))


def _kernels(section: Mapping[str, Any]) -> str:
    """The LiteRT kernels a parity section was measured against (its note says when LiteRT's
    built-in kernels stood in for reference kernels it lacks)."""
    return "LiteRT's built-in kernels (without XNNPACK)" if section.get("note") else "LiteRT's reference kernels"


def _cpu_part_row(accelerator: str, part: Mapping[str, Any]) -> tuple[str, str, str]:
    """The operators Vela leaves on the CPU for ``accelerator``, and what TFLM made of them."""
    operators = [str(op.get("label", "")) for op in part.get("cpu_operators", [])]
    load = part.get("load")
    if not operators or not isinstance(load, Mapping):
        return f"CPU part ({accelerator})", "0", "nothing runs on TFLite Micro's CPU kernels"
    if load.get("loaded"):
        said = (f"loads {', '.join(operators)}; {format_quantity(load.get('total'), 'bytes')} arena for the CPU "
                "part alone")
    else:
        said = f"cannot load them: {load.get('reason', '')} ({', '.join(operators)})"
    return f"CPU part ({accelerator})", str(len(operators)), said
