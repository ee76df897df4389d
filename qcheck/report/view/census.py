"""The tensor dtype census, operator counts and I/O of the quantized model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qcheck.report.view.values import Table, number
from qcheck.units import format_quantity

_DTYPE_ORDER = ("uint8", "int8", "int16", "int32", "float32", "float16", "int64", "bool")


@dataclass(frozen=True)
class Segment:
    """One dtype's share of the tensors, as a piece of a stacked bar (percent of its width)."""

    dtype: str
    count: int
    start: float
    width: float


@dataclass(frozen=True)
class Census:
    """Tensors per dtype (a stacked bar), operators per type, the I/O and the file size."""

    segments: tuple[Segment, ...]
    total: int
    fully_quantized: bool | None
    float_operators: tuple[str, ...]
    operators: tuple[tuple[str, int, bool], ...]  # op, count, computes in float
    io: Table
    size: str


def census(info: Mapping[str, Any] | None) -> Census | None:
    """The view of the ``quantization_info`` section, None without one."""
    if not info:
        return None
    dtypes: dict[str, int] = dict(info.get("dtypes") or {})
    if not dtypes:
        dtypes = {d: int(info.get(f"{d}_tensors", 0)) for d in ("uint8", "int8", "int16", "int32", "float32")}
    total = sum(dtypes.values()) or 1
    segments, start = [], 0.0
    for dtype in sorted(dtypes, key=lambda d: (_DTYPE_ORDER.index(d) if d in _DTYPE_ORDER else 99, d)):
        width = 100.0 * dtypes[dtype] / total
        if dtypes[dtype]:
            segments.append(Segment(dtype, dtypes[dtype], round(start, 2), round(width, 2)))
        start += width
    float_ops = tuple(str(op) for op in info.get("float_operators", []))
    float_kinds = {op.split(" ", 1)[0] for op in float_ops}
    operators = tuple(sorted(((str(op), int(n), op in float_kinds) for op, n in (info.get("operators") or {}).items()),
                             key=lambda row: (-row[1], row[0])))
    io_rows = []
    for role in ("input", "output"):
        for io in info.get(role, []):
            io_rows.append((role, str(io.get("name", "")), str(io.get("dtype", "")), _shape(io.get("shape")),
                            _shape(io.get("shape_signature")), _short_number(io.get("scale")),
                            _short_number(io.get("zero_point"))))
    fully = info.get("fully_quantized")
    return Census(
        segments=tuple(segments),
        total=sum(dtypes.values()),
        fully_quantized=None if fully is None else bool(fully),
        float_operators=float_ops,
        operators=operators,
        io=Table(("", "name", "dtype", "shape", "signature", "scale", "zero point"), tuple(io_rows)),
        size=format_quantity(number(info.get("size_bytes")), "bytes"),
    )


def _shape(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if isinstance(shape, list) else "-"


def _short_number(value: Any) -> str:
    if isinstance(value, list):
        return f"per channel ({len(value)})"
    found = number(value)
    return "-" if found is None else f"{found:.6g}"
