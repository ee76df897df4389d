"""Writing artifacts safely: atomic replaces, and names that cannot leave their folder."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """A file-name stem from untrusted text (a model or tensor name): no separators, no '..'."""
    stem = _UNSAFE.sub("_", name).strip("._") or "model"
    return stem[:80]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # Permissions as open() gives them (0o666 less the umask): mkstemp's 0o600 would hide the
    # artifacts from a CI step that runs as another user.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    """Deterministic JSON (sorted keys, indent 2), written atomically."""
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True, default=_default) + "\n").encode())


def _default(value: Any) -> Any:
    # numpy scalars and arrays reach reports through measurements.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
