"""CSV tables for people who use pandas: per model, its checks and its per-tensor and per-layer tables.

``--qcheck-csv=DIR`` writes ``<stem>_<table>.csv`` per model, ``<stem>`` being the model's
artifact stem (as in qcheck-out). The tensor table is the ``qcheck_quantized.tensors``
DataFrame the fixtures expose, read from the quantized artifact, with the per-tensor statistics
of the report joined on the tensor name. pandas is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcheck.files import InputFiles, atomic_write, safe_stem

if TYPE_CHECKING:
    import pandas as pd

# Report sections that are lists of rows, written as they are (nested fields flattened).
_ROW_SECTIONS = ("layers", "size_breakdown")


def model_tables(entry: Mapping[str, Any], tensor_table: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The tables of one model entry of the report, by name; tables with no rows are left out.

    ``tensor_table`` is the quantized model's tensor table (one row per tensor), when the
    caller could read the model.
    """
    import pandas as pd

    # A check's baseline entry (--qcheck-baseline) as columns: baseline.baseline, baseline.verdict, ...
    tables: dict[str, pd.DataFrame] = {"checks": pd.json_normalize(list(entry.get("checks", [])))}
    tensors = _tensors(entry.get("tensors") or [], tensor_table)
    if tensors is not None:
        tables["tensors"] = tensors
    for key in _ROW_SECTIONS:
        rows = entry.get(key) or []
        if rows:
            tables[key] = pd.json_normalize(list(rows))
    accuracy = entry.get("accuracy") or {}
    if accuracy:
        tables["accuracy"] = pd.DataFrame([{"head": head, **data} for head, data in sorted(accuracy.items())])
    cpu = [{"accelerator": accelerator, **op} for accelerator, vela in sorted((entry.get("vela") or {}).items())
           for op in vela.get("cpu_operators", [])]
    if cpu:
        tables["cpu_operators"] = pd.DataFrame(cpu)
    return {name: table for name, table in tables.items() if len(table)}


def _tensors(stats: Sequence[Mapping[str, Any]], tensor_table: pd.DataFrame | None) -> pd.DataFrame | None:
    import pandas as pd

    analysis = pd.json_normalize(list(stats)) if stats else None
    if tensor_table is None or not len(tensor_table):
        return analysis
    if analysis is None or "name" not in analysis:
        return tensor_table
    # The model's own columns win; the report adds what only the evaluation knows.
    extra = [c for c in analysis.columns if c == "name" or c not in tensor_table.columns]
    return tensor_table.merge(analysis[extra].drop_duplicates("name"), on="name", how="left")


def write_tables(folder: Path, report: Mapping[str, Any], *, never: InputFiles | None = None) -> list[Path]:
    """Write every model's tables into ``folder`` (atomically, one file per table), never over
    one of the inputs ``never``."""
    written = []
    for entry, stem in zip(report.get("models", []), stems(report), strict=True):
        for name, table in model_tables(entry, _read_tensor_table(entry)).items():
            path = folder / f"{stem}_{name}.csv"
            atomic_write(path, table.to_csv(index=False).encode("utf-8"), never=never, root=folder)
            written.append(path)
    return written


def stems(report: Mapping[str, Any]) -> list[str]:
    """One file-name stem per model: its artifact stem when the report has it, made unique."""
    taken: set[str] = set()
    result = []
    for entry in report.get("models", []):
        stem = (entry.get("artifacts") or {}).get("stem") or Path(str(entry.get("model", ""))).stem
        stem = candidate = safe_stem(str(stem))
        n = 2
        while candidate in taken:
            candidate, n = f"{stem}-{n}", n + 1
        taken.add(candidate)
        result.append(candidate)
    return result


def _read_tensor_table(entry: Mapping[str, Any]) -> pd.DataFrame | None:
    """The fixtures' tensor table of the quantized artifact, or None when it cannot be read."""
    path = (entry.get("artifacts") or {}).get("quantized_model")
    if not path:
        return None
    from qcheck.tflite.inspect import inspect_model

    try:
        return inspect_model(Path(path).read_bytes()).tensor_table()
    except (OSError, ValueError):
        return None  # moved or unreadable since the run: the report's own columns still go out
