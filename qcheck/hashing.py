"""Cache keys: one sha256 over the parts a derived value depends on.

Its own small module, below the cache and the data types whose ``digest()`` methods it calls
(a LazyArray, NamedInputs), so that they can use it without importing the cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from qcheck.files import content_digest


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
