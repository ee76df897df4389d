"""A content-addressed cache for what the pipeline derives: conversions, evaluations, Vela runs.

An entry's key is a hash of everything its value depends on (the bytes of the model and data,
the options that matter, the versions of TensorFlow, LiteRT and qcheck), so a hit is always
valid and nothing is ever invalidated by hand. Entries are folders written under a temporary
name and renamed into place, so a writer killed half-way leaves nothing a reader trusts; every
file is checked against the hashes in its manifest on read, and a damaged entry is discarded
and rebuilt. A lock per key makes xdist workers that need the same entry produce it once.

Values are stored as JSON plus ``.npz`` arrays (read with ``allow_pickle=False``), never as
pickles: a cache folder restored in CI runs no code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from qcheck import __version__, codec

T = TypeVar("T")
FORMAT = 1


def versions(*distributions: str) -> str:
    """'name=version' of qcheck and the given distributions, for cache keys (no imports)."""
    parts = [f"qcheck={__version__}", f"format={FORMAT}"]
    for name in distributions:
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    return ";".join(parts)


def digest(*parts: Any) -> str:
    """sha256 over the parts; arrays by dtype, shape and bytes; paths by their content."""
    h = hashlib.sha256()
    for part in parts:
        if part is None:
            h.update(b"\0none")
        elif isinstance(part, np.ndarray):
            h.update(f"\0array{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif hasattr(part, "digest"):  # a LazyArray: its files' content and the chosen samples
            h.update(b"\0lazy" + part.digest().encode())
        elif isinstance(part, Path):
            h.update(b"\0path")
            h.update(content_digest(part).encode())
        elif isinstance(part, str):
            h.update(b"\0str" + part.encode())
        else:
            h.update(b"\0bytes" + part)
    return h.hexdigest()


def content_digest(path: Path) -> str:
    """sha256 of a file, or of every file of a folder (a SavedModel) with its relative name."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        h.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class Cache:
    """Entries under ``root``; a Cache with ``root=None`` stores nothing and always misses."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def get_or_make(self, key: str, make: Callable[[], T]) -> tuple[T, bool]:
        """The cached value for ``key``, or ``make()`` stored under it; and whether it was a hit."""
        if self.root is None:
            return make(), False
        hit = self._load(key)
        if hit is not None:
            return hit, True
        with self._lock(key):
            hit = self._load(key)  # another worker may have made it while we waited
            if hit is not None:
                return hit, True
            value = make()
            self._store(key, value)
            return value, False

    def clear(self) -> None:
        if self.root is not None and self.root.exists():
            shutil.rmtree(self.root)

    def _entry(self, key: str) -> Path:
        assert self.root is not None
        return self.root / "entries" / key[:2] / key

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        assert self.root is not None
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load(self, key: str) -> Any:
        entry = self._entry(key)
        manifest = entry / "manifest.json"
        if not manifest.exists():
            return None
        try:
            meta = json.loads(manifest.read_text())
            for name, expected in meta["files"].items():
                if hashlib.sha256((entry / name).read_bytes()).hexdigest() != expected:
                    raise ValueError(f"{name} does not match its hash")
            with np.load(entry / "arrays.npz", allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            return _decode(json.loads((entry / "value.json").read_text()), arrays)
        except (OSError, ValueError, KeyError, TypeError):
            # Damaged or truncated: discard it, and the caller rebuilds it.
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def _store(self, key: str, value: Any) -> None:
        entry = self._entry(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=entry.parent))
        try:
            tree, arrays = _encode(value)
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds
            files = {"value.json": json.dumps(tree, sort_keys=True).encode(), "arrays.npz": buffer.getvalue()}
            for name, data in files.items():
                _write_synced(tmp / name, data)
            meta = {"key": key, "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}
            # The manifest goes last: an entry without one is never read.
            _write_synced(tmp / "manifest.json", json.dumps(meta, sort_keys=True).encode())
            shutil.rmtree(entry, ignore_errors=True)
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


# -- a safe codec: dataclasses of an allow-list, containers, scalars, bytes and arrays ---------


def _encode(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    return codec.encode(value, codec.qcheck_values())


def _decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    return codec.decode(tree, arrays, codec.qcheck_values())
