"""A safe codec for qcheck's own values: JSON for the structure, ``.npz`` for the arrays.

Used by the cache (:mod:`qcheck.cache`) and by the exchange with child processes
(:mod:`qcheck.isolation`). It encodes dataclasses of an allow-list, dicts, lists, tuples,
scalars, strings, paths, bytes and numpy arrays, and nothing else; decoding builds only those,
and the arrays are read with ``allow_pickle=False``: reading what it wrote runs no code.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np

_TREE = "__tree__"  # the member of a packed .npz that holds the JSON structure


def encode(value: Any, allowed: Mapping[str, type]) -> tuple[Any, dict[str, np.ndarray]]:
    """``value`` as a JSON-ready tree and the arrays it refers to; TypeError for anything else.

    ``allowed`` maps class names to the only dataclasses that may appear.
    """
    arrays: dict[str, np.ndarray] = {}

    def enc(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            name = type(v).__name__
            if allowed.get(name) is not type(v):
                raise TypeError(f"{name} is not a value qcheck stores or exchanges")
            return {"$class": name, "fields": {f.name: enc(getattr(v, f.name)) for f in dataclasses.fields(v)}}
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise TypeError("an array of Python objects is not a value qcheck stores or exchanges")
            ref = f"a{len(arrays)}"
            arrays[ref] = v
            return {"$array": ref}
        if isinstance(v, bytes):
            ref = f"a{len(arrays)}"
            arrays[ref] = np.frombuffer(v, dtype=np.uint8)
            return {"$bytes": ref}
        if isinstance(v, PurePath):
            return {"$path": str(v)}
        if isinstance(v, dict):
            return {"$dict": [[enc(k), enc(x)] for k, x in v.items()]}
        if isinstance(v, (list, tuple)):
            return {"$tuple" if isinstance(v, tuple) else "$list": [enc(x) for x in v]}
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        if isinstance(v, np.generic):
            return v.item()
        raise TypeError(f"{type(v).__name__} is not a value qcheck stores or exchanges")

    return enc(value), arrays


def decode(tree: Any, arrays: dict[str, np.ndarray], allowed: Mapping[str, type]) -> Any:
    """The value :func:`encode` gave ``tree`` and ``arrays`` for; ValueError or KeyError if damaged."""

    def dec(v: Any) -> Any:
        if isinstance(v, dict):
            if "$class" in v:
                return allowed[v["$class"]](**{k: dec(x) for k, x in v["fields"].items()})
            if "$array" in v:
                return arrays[v["$array"]]
            if "$bytes" in v:
                return arrays[v["$bytes"]].tobytes()
            if "$path" in v:
                return Path(v["$path"])
            if "$dict" in v:
                return {dec(k): dec(x) for k, x in v["$dict"]}
            if "$tuple" in v:
                return tuple(dec(x) for x in v["$tuple"])
            if "$list" in v:
                return [dec(x) for x in v["$list"]]
            raise ValueError(f"unknown cache node {sorted(v)}")
        return v

    return dec(tree)


def pack(value: Any, allowed: Mapping[str, type]) -> bytes:
    """``value`` as one ``.npz`` file: its arrays and, as bytes, its JSON structure."""
    tree, arrays = encode(value, allowed)
    buffer = io.BytesIO()
    structure = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    np.savez(buffer, **{_TREE: structure}, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds
    return buffer.getvalue()


def unpack(data: bytes, allowed: Mapping[str, type]) -> Any:
    """The value :func:`pack` gave ``data`` for (arrays read without pickles)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return decode(json.loads(arrays.pop(_TREE).tobytes()), arrays, allowed)


# The dataclasses of qcheck's own that the cache stores and child processes exchange, by name,
# with the module that defines each: the one allow-list, so that a value a step returns can always
# be both cached and sent back. A class is imported when a value names it: a warm run does not load
# the modules of values it never reads (property search, TFLite Micro).
_VALUES = {
    "ImageOptions": "qcheck.config", "LazyArray": "qcheck.lazy_arrays", "NamedInputs": "qcheck.named_inputs",
    "ConsistencyOutcome": "qcheck.property_search", "RobustnessOutcome": "qcheck.property_search",
    "Violation": "qcheck.property_search", "FloatReference": "qcheck.tflite.convert",
    "Quantized": "qcheck.tflite.convert", "IOInfo": "qcheck.tflite.inspect", "ModelInfo": "qcheck.tflite.inspect",
    "OperatorInfo": "qcheck.tflite.inspect", "TensorInfo": "qcheck.tflite.inspect",
    "QuantParams": "qcheck.tflite.quant",
    "HeadOutput": "qcheck.tflite.run", "InputClipping": "qcheck.tflite.run", "RunResult": "qcheck.tflite.run",
    "Analysis": "qcheck.tflite.tensor_stats", "ChannelSpread": "qcheck.tflite.tensor_stats",
    "TensorReport": "qcheck.tflite.tensor_stats", "WeightsComparison": "qcheck.tflite.tensor_stats",
    "ArenaRecord": "qcheck.tflm", "Divergence": "qcheck.tflm", "LayerDifference": "qcheck.tflm",
    "TflmLoad": "qcheck.tflm", "CpuOperator": "qcheck.tflm", "CpuPartLoad": "qcheck.tflm",
    "CpuOutputDifference": "qcheck.tflm", "CpuParity": "qcheck.tflm", "EarlyRead": "qcheck.tflm",
    "VelaFiles": "qcheck.vela",
}


class _Allowed(Mapping[str, type]):
    """:data:`_VALUES` as classes, each imported on first use; KeyError for any other name."""

    def __getitem__(self, name: str) -> type:
        cls = getattr(importlib.import_module(_VALUES[name]), name)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"{_VALUES[name]}.{name} is not a dataclass")
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_VALUES)

    def __len__(self) -> int:
        return len(_VALUES)


_ALLOWED = _Allowed()


def qcheck_values() -> Mapping[str, type]:
    """The dataclasses of qcheck's own that the cache stores and child processes exchange (:data:`_VALUES`)."""
    return _ALLOWED
