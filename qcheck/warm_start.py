"""Start the conversion worker ahead of the conversion that needs it.

The kept conversion worker (:mod:`qcheck.isolation`) spends seconds importing TensorFlow before
its first conversion. Started when a model's pipeline begins, that import runs while this
process loads and hashes the data. A model whose conversion is in the cache needs no worker at
all, and a warm run must not pay for TensorFlow, so the worker is started only when this model,
with these options and these data files, has not been converted into this cache before.

That is judged from a *hint*: a cache entry named by the files' identity and modification
(path, size, ``mtime_ns``), written after a conversion. A hint is never a verdict: the
conversion itself is still found by the hash of the bytes (:mod:`qcheck.pipeline`). A wrong
hint costs only time: an import not overlapped, or one made for nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from qcheck.cache import Cache, versions
from qcheck.config import RunSpec
from qcheck.hashing import digest
from qcheck.isolation import start_kept

CONVERTER = "tensorflow"  # the kind of kept worker conversions run in


def kept_for(model: Path) -> str:
    """Where a float model runs: a Keras model or SavedModel in the kept conversion worker, a
    ``.tflite`` in a fresh child (it runs in the LiteRT interpreter, and a file that corrupts
    the runtime's heap must not change what the next model computes in a kept process)."""
    return "" if model.suffix.lower() == ".tflite" else CONVERTER


def conversion_hint(spec: RunSpec) -> str:
    """The hint's key for converting ``spec``'s model with its data as the files are now."""
    files = [_identity(path) for path in (spec.model, spec.data, spec.calibration)]
    return digest("convert-hint", versions("tensorflow", "keras", "tf-keras"), repr(spec), *files)


def start_converter_unless_cached(cache: Cache, spec: RunSpec) -> bool:
    """Start the conversion worker now unless the hint says the conversion is cached; whether
    it said so."""
    if cache.root is not None and cache.has(conversion_hint(spec)):
        return True
    start_kept(CONVERTER)
    return False


def remember_conversion(cache: Cache, spec: RunSpec, key: str) -> None:
    """Note that ``spec``'s model, as its files are now, was converted under ``key``."""
    if cache.root is not None:
        cache.put(conversion_hint(spec), key)


def _identity(path: str | None) -> str:
    if not path:
        return "none"
    try:
        info = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{Path(path).resolve()}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
