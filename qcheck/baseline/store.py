"""Baseline files: ``<stem>.json`` (sorted, reviewable) and ``<stem>.npz`` (compact arrays).

Both are written deterministically: the same record gives the same bytes (sorted keys, figures
rounded to 6 significant digits, per-sample errors as float16, zip members in order with a fixed
timestamp), so that a second
update with nothing changed leaves the files as they are and a pull request shows only what
moved. The JSON holds the ``.npz``'s sha256, so the two cannot drift apart unnoticed.

Baselines come with the repository, so they are read as untrusted files: regular files only (a
symbolic link is refused, not followed), size caps on each file and on each array unpacked,
arrays without pickles, and every field checked for its type and shape. Every problem is a
QcheckError naming the file and saying how to make it again.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from qcheck.baseline import UPDATE_FLAG
from qcheck.baseline.record import FIGURES, TOOLCHAIN, Figure, Head, Record
from qcheck.errors import QcheckError
from qcheck.files import InputFiles, atomic_write
from qcheck.inputs import read_regular

FORMAT = 1
MAX_JSON_BYTES = 1 << 20  # a baseline's JSON is a few KB
MAX_NPZ_BYTES = 16 << 20  # compressed, as stored
MAX_ARRAY_BYTES = 64 << 20  # all arrays unpacked together: a zip bomb stops here
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no clock in the bytes
OUTCOMES = ("correct", "error")
_GOLDEN_DTYPES = ("int8", "uint8", "int16", "float32")
_ERROR_CAP = 60000.0  # the largest per-sample error stored: float16 ends at 65504
_HINT = f"make it again with {UPDATE_FLAG} (and review the diff), or restore it from version control"


def paths(folder: Path, stem: str) -> tuple[Path, Path]:
    """The JSON and ``.npz`` files of the model with artifact stem ``stem``."""
    return folder / f"{stem}.json", folder / f"{stem}.npz"


# -- writing -----------------------------------------------------------------------------------


def encode(rec: Record, npz_name: str) -> tuple[bytes, bytes]:
    """The JSON and ``.npz`` bytes of ``rec`` (deterministic; see the module's docstring)."""
    arrays: dict[str, np.ndarray] = {"golden_samples": np.asarray(rec.golden_indices, dtype=np.int64)}
    heads = []
    for i, head in enumerate(rec.heads):
        # float16 keeps 3 digits of each error (a share of the output's range), bounded to stay finite.
        outcomes = (np.packbits(head.outcomes.astype(bool)) if head.outcome == "correct"
                    else np.clip(np.nan_to_num(head.outcomes, nan=_ERROR_CAP), 0, _ERROR_CAP))
        arrays[f"outcomes_{i}"] = np.ascontiguousarray(outcomes, dtype=np.uint8 if head.outcome == "correct"
                                                       else np.float16)
        arrays[f"golden_{i}"] = np.ascontiguousarray(head.golden)
        low, high = head.interval
        heads.append({"name": head.name, "task": head.task, "outcome": head.outcome, "metric": head.metric,
                      "value": _finite(head.value), "low": _finite(low), "high": _finite(high), "scale": None if head.scale is None else _round(head.scale, 9),
                      "golden_dtype": str(head.golden.dtype), "golden_shape": list(head.golden.shape),
                      **({"labels_sha256": head.labels_sha256} if head.labels_sha256 is not None else {})})
    npz = _npz(arrays)
    document = {
        "format": FORMAT,
        "model": rec.model,
        **({"source": rec.source} if rec.source is not None else {}),
        "quantized_sha256": rec.quantized_sha256,
        "toolchain": dict(sorted(rec.toolchain.items())),
        "accelerator": rec.accelerator,
        "figures": {name: _figure(fig) for name, fig in sorted(rec.figures.items())},
        "evaluation": {"samples": rec.samples, "data_sha256": rec.data_sha256,
                       "golden_samples": len(rec.golden_indices)},
        "heads": heads,
        "arrays": {"file": npz_name, "sha256": hashlib.sha256(npz).hexdigest()},
    }
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return text.encode(), npz


def write(folder: Path, stem: str, rec: Record, inputs: InputFiles) -> tuple[Path, Path]:
    """Write ``rec`` below ``folder``: the ``.npz`` first, then the JSON that names its hash.

    Atomic replaces; never over a run input, never through a link (:func:`qcheck.files.atomic_write`).
    """
    json_path, npz_path = paths(folder, stem)
    text, npz = encode(rec, npz_path.name)
    atomic_write(npz_path, npz, never=inputs, root=folder)
    atomic_write(json_path, text, never=inputs, root=folder)
    return json_path, npz_path


def canonical(rec: Record) -> Record:
    """``rec`` as reading it back from its files gives it (rounded as stored): what is compared."""
    text, npz = encode(rec, "x.npz")
    return decode(text, npz, Path("<new>.json"), Path("<new>.npz"))


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def _finite(value: float) -> float | None:
    """``value`` rounded as stored, or None (JSON has no NaN)."""
    return _round(value) if math.isfinite(value) else None


def _figure(fig: Figure) -> dict[str, Any]:
    data: dict[str, Any] = {"value": _round(fig.value), "unit": fig.unit}
    if fig.low is not None and fig.high is not None and math.isfinite(fig.low) and math.isfinite(fig.high):
        data.update(low=_round(fig.low), high=_round(fig.high))
    return data


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` numpy reads (``np.load``), without the time of writing in it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, arrays[name], allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


# -- reading -----------------------------------------------------------------------------------


def read(folder: Path, stem: str) -> Record | None:
    """The baseline of ``stem`` in ``folder``; None when it has none (neither file exists)."""
    json_path, npz_path = paths(folder, stem)
    if not _exists(json_path) and not _exists(npz_path):
        return None
    if not _exists(json_path):
        raise QcheckError(json_path, f"is missing, while {npz_path.name} is there", _HINT)
    text = read_untrusted(json_path, MAX_JSON_BYTES)
    document = _document(text, json_path)
    arrays = document.get("arrays")
    if not isinstance(arrays, dict) or arrays.get("file") != npz_path.name:
        raise QcheckError(json_path, f"'arrays.file' must be {npz_path.name!r}", _HINT)
    npz = read_untrusted(npz_path, MAX_NPZ_BYTES)
    if hashlib.sha256(npz).hexdigest() != arrays.get("sha256"):
        raise QcheckError(npz_path, f"does not match {json_path.name}: its sha256 differs from 'arrays.sha256' "
                          "(one file changed without the other)", _HINT)
    return decode(text, npz, json_path, npz_path)


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def read_untrusted(path: Path, cap: int) -> bytes:
    """The bytes of ``path``: a regular file (a link is refused, not followed) of at most ``cap`` bytes."""
    try:
        return read_regular(path, "baseline file", limit=cap, links=False)
    except QcheckError as exc:
        raise QcheckError(path, exc.problem, exc.hint or _HINT) from None


def _document(text: bytes, path: Path) -> dict[str, Any]:
    try:
        document = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise QcheckError(path, f"is not valid JSON ({exc})", _HINT) from None
    if not isinstance(document, dict):
        raise QcheckError(path, "must hold a JSON object", _HINT)
    if document.get("format") != FORMAT:
        raise QcheckError(path, f"has baseline format {document.get('format')!r}; this qcheck reads format {FORMAT}",
                          _HINT)
    return document


def decode(text: bytes, npz: bytes, json_path: Path, npz_path: Path) -> Record:
    """The record in ``text`` and ``npz``, every field checked; QcheckError naming the file otherwise."""
    doc = _document(text, json_path)

    def bad(key: str, expected: str, path: Path = json_path) -> QcheckError:
        return QcheckError(path, f"'{key}' must be {expected}", _HINT)

    def string(value: Any, key: str) -> str:
        if not isinstance(value, str) or len(value) > 4096:
            raise bad(key, "a string")
        return value

    def number(value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(key, "a finite number")
        return float(value)

    toolchain = doc.get("toolchain")
    if not isinstance(toolchain, dict) or set(toolchain) != set(TOOLCHAIN):
        raise bad("toolchain", "an object with the versions of " + ", ".join(TOOLCHAIN))
    versions = {name: string(value, f"toolchain.{name}") for name, value in toolchain.items()}
    figures_doc = doc.get("figures")
    if not isinstance(figures_doc, dict):
        raise bad("figures", "an object")
    figures = {}
    for name, fig in figures_doc.items():
        if name not in FIGURES or not isinstance(fig, dict):
            raise bad(f"figures.{name}", "one of " + ", ".join(FIGURES) + ", holding an object")
        low, high = fig.get("low"), fig.get("high")
        figures[name] = Figure(number(fig.get("value"), f"figures.{name}.value"),
                               string(fig.get("unit"), f"figures.{name}.unit"),
                               None if low is None else number(low, f"figures.{name}.low"),
                               None if high is None else number(high, f"figures.{name}.high"))
    accelerator = doc.get("accelerator")
    if accelerator is not None:
        string(accelerator, "accelerator")
    evaluation = doc.get("evaluation")
    if not isinstance(evaluation, dict):
        raise bad("evaluation", "an object")
    samples = evaluation.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= 100_000_000:
        raise bad("evaluation.samples", "a count of samples")
    count = evaluation.get("golden_samples")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= samples:
        raise bad("evaluation.golden_samples", "a count of samples, at most evaluation.samples")
    heads_doc = doc.get("heads")
    if not isinstance(heads_doc, list):
        raise bad("heads", "a list")
    arrays = _arrays(npz, npz_path, 1 + 2 * len(heads_doc))
    golden_samples = arrays.get("golden_samples")
    if (golden_samples is None or golden_samples.dtype != np.int64 or golden_samples.shape != (count,)
            or (count and not (golden_samples.min() >= 0 and golden_samples.max() < samples))):
        raise QcheckError(npz_path, f"array 'golden_samples' must be int64 of shape ({count},), sample indices "
                          f"below {samples}, not " + _shown(golden_samples), _HINT)
    heads = []
    for i, head in enumerate(heads_doc):
        key = f"heads[{i}]"
        if not isinstance(head, dict):
            raise bad(key, "an object")
        outcome = head.get("outcome")
        if outcome not in OUTCOMES:
            raise bad(f"{key}.outcome", " or ".join(repr(o) for o in OUTCOMES))
        outcomes = arrays.get(f"outcomes_{i}")
        expected = (np.dtype(np.uint8), ((samples + 7) // 8,)) if outcome == "correct" else (np.dtype(np.float16),
                                                                                             (samples,))
        if outcomes is None or (outcomes.dtype, outcomes.shape) != expected:
            raise QcheckError(npz_path, f"array 'outcomes_{i}' must be {expected[0]} of shape {expected[1]} "
                              f"(head {head.get('name')!r}), not " + _shown(outcomes), _HINT)
        if outcome == "correct":
            outcomes = np.unpackbits(outcomes, count=samples).astype(bool)
        elif not bool(np.all(np.isfinite(outcomes))):
            raise QcheckError(npz_path, f"array 'outcomes_{i}' holds values that are not finite numbers", _HINT)
        golden = arrays.get(f"golden_{i}")
        dtype, shape = head.get("golden_dtype"), head.get("golden_shape")
        if (golden is None or str(golden.dtype) not in _GOLDEN_DTYPES or str(golden.dtype) != dtype
                or list(golden.shape) != shape or golden.ndim < 1 or golden.shape[0] != len(golden_samples)):
            raise QcheckError(npz_path, f"array 'golden_{i}' must be {dtype} of shape {shape}, one row per golden "
                              f"sample ({len(golden_samples)}), not " + _shown(golden), _HINT)
        scale, labels = head.get("scale"), head.get("labels_sha256")  # no labels_sha256: written by an older qcheck
        heads.append(Head(string(head.get("name"), f"{key}.name"), string(head.get("task"), f"{key}.task"), outcome,
                          outcomes, golden, None if scale is None else number(scale, f"{key}.scale"),
                          None if labels is None else string(labels, f"{key}.labels_sha256")))
    source = doc.get("source")
    return Record(string(doc.get("model"), "model"), versions, string(doc.get("quantized_sha256"), "quantized_sha256"),
                  figures, accelerator, samples, string(evaluation.get("data_sha256"), "evaluation.data_sha256"),
                  golden_samples, tuple(heads), None if source is None else string(source, "source"))


def _shown(array: np.ndarray | None) -> str:
    return "missing" if array is None else f"{array.dtype} of shape {tuple(array.shape)}"


def _arrays(npz: bytes, path: Path, count: int) -> dict[str, np.ndarray]:
    """The arrays of ``npz``: at most ``count`` ``.npy`` members, none pickled, all within the size cap."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(npz))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise QcheckError(path, f"is not an .npz archive ({exc})", _HINT) from None
    with archive:
        members = archive.infolist()
        if len(members) > count:
            raise QcheckError(path, f"holds {len(members)} arrays; the baseline's JSON names {count}", _HINT)
        if sum(m.file_size for m in members) > MAX_ARRAY_BYTES:
            raise QcheckError(path, f"unpacks to more than {MAX_ARRAY_BYTES} bytes", _HINT)
        arrays = {}
        for member in members:
            name = member.filename.removesuffix(".npy")
            try:
                with archive.open(member) as handle:
                    data = handle.read(MAX_ARRAY_BYTES + 1)
                if len(data) > member.file_size or len(data) > MAX_ARRAY_BYTES:
                    raise ValueError("it unpacks to more than it says")
                array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                # numpy refuses a pickled (object) array here: "Object arrays cannot be loaded when allow_pickle=False"
                raise QcheckError(path, f"array {name!r} cannot be read: {exc}", _HINT) from None
            if array.dtype.hasobject:
                raise QcheckError(path, f"array {name!r} holds Python objects", _HINT)
            arrays[name] = array
    return arrays
