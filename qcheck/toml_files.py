"""Reading TOML that qcheck does not trust: suite files, ``extends`` targets, ``[tool.qcheck]``.

Anyone who can push to a repository can edit these files, and CI runs them. Whatever they hold,
reading one ends in a parsed document or a :class:`QcheckError` that names the file and says what
is wrong: only regular files are read (a FIFO or a device would block or never end), at most a
bounded number of bytes, and no value nests deeper than a suite ever needs (Python's parser and
``repr`` recurse, and 3,000 levels of brackets ended the session with a ``RecursionError``).
"""

from __future__ import annotations

import os
import reprlib
import stat
import tomllib
from pathlib import Path
from typing import Any

from qcheck.errors import QcheckError

MAX_SUITE_BYTES = 1024 * 1024  # far more than any suite needs; a file past it is a mistake or an attack
MAX_DEPTH = 16  # tables and arrays within each other; a suite needs about 5

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 80
_SHOWN.maxother = 80
_SHOWN.maxlevel = 3


def shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length, for messages about a file's values."""
    return _SHOWN.repr(value)


def read_toml(path: Path, source: str | Path, max_bytes: int = MAX_SUITE_BYTES) -> dict[str, Any]:
    """The TOML document in ``path``; ``source`` names the file in messages. Raises QcheckError."""
    return parse_toml(read_text(path, source, max_bytes), source)


def read_text(path: Path, source: str | Path, max_bytes: int = MAX_SUITE_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``, of at most ``max_bytes`` bytes."""
    try:
        # Devices are refused before they are opened (opening some has effects of its own), and
        # again after, in case the path changed in between; O_NONBLOCK: a FIFO must not block.
        _regular(os.stat(path).st_mode, source)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise QcheckError(source, "does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise QcheckError(source, f"cannot be read: {_reason(exc)}") from None
    with os.fdopen(fd, "rb") as file:
        _regular(os.fstat(fd).st_mode, source)
        try:
            data = file.read(max_bytes + 1)
        except OSError as exc:
            raise QcheckError(source, f"cannot be read: {_reason(exc)}") from None
    if len(data) > max_bytes:
        raise QcheckError(source, f"is larger than {max_bytes // 1024} KiB, too large for a qcheck configuration "
                                  "file", "split it, or check that this is the file you meant")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise QcheckError(source, f"is not UTF-8 text (line {line} holds a byte that is not valid UTF-8)") from None


def parse_toml(text: str, source: str | Path, *, whole: bool = True) -> dict[str, Any]:
    """``text`` parsed as TOML; with ``whole``, no value may nest deeper than :data:`MAX_DEPTH`.

    (A ``pyproject.toml`` is checked by the caller, only in the table that is qcheck's.)
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise QcheckError(source, f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise QcheckError(source, "nests arrays or inline tables too deeply to read (hundreds of levels; "
                                  f"qcheck's settings need at most {MAX_DEPTH})") from None
    if whole:
        check_depth(doc, source)
    return doc


def check_depth(doc: Any, source: str | Path, where: str = "") -> None:
    """Raise QcheckError when ``doc`` nests tables or arrays more than :data:`MAX_DEPTH` deep.

    Dotted keys (``a.b.c... = 1``) build deep tables without deep brackets, so the parsed
    document is checked too; without recursion, since recursion is what must be avoided.
    """
    stack: list[tuple[Any, int, str]] = [(doc, 0, where)]
    while stack:
        value, depth, key = stack.pop()
        if depth > MAX_DEPTH:
            at = f" (at {_short_key(key)})" if key else ""
            raise QcheckError(source, f"nests tables or arrays more than {MAX_DEPTH} levels deep{at}")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{key}.{k}" if key else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{key}[{i}]") for i, v in enumerate(value))


def resolve(here: Path, written: str, source: str | Path | None, key: str) -> Path:
    """``written`` (a path from a file's ``key``) made absolute against the folder ``here``."""
    what = f"{key}: {shown(written)}" if key else shown(written)
    if "\0" in written:
        raise QcheckError(source, f"{what} is not a path (it holds a NUL character)")
    try:
        return (here / written).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise QcheckError(source, f"{what} cannot be resolved: {_reason(exc)}") from None


def _regular(mode: int, source: str | Path) -> None:
    if not stat.S_ISREG(mode):
        raise QcheckError(source, f"is not a regular file (it is {_kind(mode)}); qcheck reads only regular files")


def _short_key(key: str) -> str:
    return key if len(key) <= 80 else key[:60] + "..." + key[-17:]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
