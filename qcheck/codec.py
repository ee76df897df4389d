"""A safe codec for qcheck's own values: JSON for the structure, ``.npz`` for the arrays.

Used by the cache (:mod:`qcheck.cache`) and by the exchange with child processes
(:mod:`qcheck.isolation`). It encodes dataclasses of an allow-list, dicts, lists, tuples,
scalars, strings, paths, bytes and numpy arrays, and nothing else; decoding builds only those,
and the arrays are read with ``allow_pickle=False``: reading what it wrote runs no code.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path, PurePath
from typing import Any

import numpy as np

_TREE = "__tree__"  # the member of a packed .npz that holds the JSON structure


def encode(value: Any, allowed: dict[str, type]) -> tuple[Any, dict[str, np.ndarray]]:
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


def decode(tree: Any, arrays: dict[str, np.ndarray], allowed: dict[str, type]) -> Any:
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


def pack(value: Any, allowed: dict[str, type]) -> bytes:
    """``value`` as one ``.npz`` file: its arrays and, as bytes, its JSON structure."""
    tree, arrays = encode(value, allowed)
    buffer = io.BytesIO()
    structure = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    np.savez(buffer, **{_TREE: structure}, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds
    return buffer.getvalue()


def unpack(data: bytes, allowed: dict[str, type]) -> Any:
    """The value :func:`pack` gave ``data`` for (arrays read without pickles)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return decode(json.loads(arrays.pop(_TREE).tobytes()), arrays, allowed)


def qcheck_values() -> dict[str, type]:
    """The dataclasses of qcheck's own that the cache stores and child processes exchange: the
    one allow-list, so that a value a step returns can always be both cached and sent back."""
    from qcheck.config import ImageOptions
    from qcheck.lazy_arrays import LazyArray
    from qcheck.named_inputs import NamedInputs
    from qcheck.property_search import ConsistencyOutcome, RobustnessOutcome, Violation
    from qcheck.tflite.convert import FloatReference, Quantized
    from qcheck.tflite.inspect import IOInfo, ModelInfo, OperatorInfo, TensorInfo
    from qcheck.tflite.quant import QuantParams
    from qcheck.tflite.run import HeadOutput, InputClipping, RunResult
    from qcheck.tflite.tensor_stats import Analysis, ChannelSpread, TensorReport, WeightsComparison
    from qcheck.tflm import exchanged as tflm_values
    from qcheck.vela import VelaFiles

    classes = (*tflm_values(), Quantized, FloatReference, QuantParams, HeadOutput, RunResult, Analysis, TensorReport, ChannelSpread,
               WeightsComparison, VelaFiles, LazyArray, ImageOptions, RobustnessOutcome, ConsistencyOutcome, Violation,
               NamedInputs, InputClipping, ModelInfo, TensorInfo, OperatorInfo, IOInfo)
    return {cls.__name__: cls for cls in classes}
