"""Inputs read from disk on demand, so evaluation memory does not grow with the data set.

A :class:`LazyArray` looks enough like a numpy array for qcheck's pipeline (``len``, ``shape``,
indexing that returns float32 arrays, ``chunks``) and crosses to a child process as its recipe
(files and sample indices), not its data: the child re-opens the files itself. Three kinds:

- a folder with ``x.npy`` (memory-mapped) and label files ``y.npy`` / ``y_<output>.npy``;
- a folder of ``.npz`` shards, each with ``x`` and labels, read one shard at a time;
- a folder of images in one sub-folder per class (labels are the sorted sub-folder names),
  decoded with Pillow, resized and scaled as the user configures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from qcheck.config import ImageOptions
from qcheck.files import content_digest

CHUNK = 256  # samples read at a time


@dataclass(frozen=True, eq=False)
class LazyArray:
    """Samples ``indices`` of an on-disk collection; see the module docstring for the kinds."""

    kind: str  # "npy", "shards" or "images"
    files: tuple[str, ...]  # the x.npy file, the shard files, or the image files
    counts: tuple[int, ...]  # samples per file (shards); unused otherwise
    sample_shape: tuple[int, ...]
    indices: np.ndarray  # which samples of the whole collection, in order
    images: ImageOptions = field(default_factory=ImageOptions)

    # -- the numpy-like surface ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.sample_shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        """Samples as a float32 array: an int, a slice or an array of positions."""
        if isinstance(index, (int, np.integer)):
            one: np.ndarray = self._read(self.indices[[int(index)]])[0]
            return one
        return self._read(self.indices[index])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self._read(self.indices)
        return data.astype(dtype) if dtype is not None else data

    def subset(self, positions: np.ndarray) -> LazyArray:
        """Another view of the same files: no data is read."""
        return replace(self, indices=self.indices[positions])

    def chunks(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def digest(self) -> str:
        """A hash of the files' content and the selected samples (for cache keys)."""
        h = hashlib.sha256(self.kind.encode())
        for name in self.files:
            h.update(content_digest(Path(name)).encode())
        h.update(repr(self.images).encode())
        h.update(np.ascontiguousarray(self.indices, dtype=np.int64).tobytes())
        return h.hexdigest()

    # -- reading ---------------------------------------------------------------------------

    @cached_property
    def _offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.kind == "npy":
            memmap = np.load(self.files[0], mmap_mode="r", allow_pickle=False)
            return np.asarray(memmap[rows], dtype=np.float32)
        out = np.empty((len(rows), *self.sample_shape), dtype=np.float32)
        if self.kind == "shards":
            shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
            for shard in np.unique(shard_of):
                where = np.nonzero(shard_of == shard)[0]
                with np.load(self.files[shard], allow_pickle=False) as npz:
                    x = npz["x"]
                out[where] = x[rows[where] - self._offsets[shard]]
            return out
        for i, row in enumerate(rows):
            out[i] = read_image(Path(self.files[row]), self.images)
        return out


def read_image(path: Path, options: ImageOptions) -> np.ndarray:
    """One image as float32 HxWxC (C = 3 for RGB, 1 for L), resized and scaled."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert(options.mode)
        if options.size is not None:
            height, width = options.size
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return pixels * np.float32(options.scale) + np.float32(options.offset)


def as_chunks(x: Any, size: int = CHUNK) -> Iterator[np.ndarray]:
    """Chunks of an in-memory or lazy array, as float32."""
    if isinstance(x, LazyArray):
        yield from x.chunks(size)
        return
    for start in range(0, len(x), size):
        yield np.asarray(x[start : start + size], dtype=np.float32)
