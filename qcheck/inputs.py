"""Reading the files a user names (models, references, data, calibration): regular files only.

A FIFO blocks the reader until something writes into it, a device such as ``/dev/zero`` never
ends, and opening some devices has effects of its own (a tape rewinds). So a path is looked at
with ``os.stat`` before it is opened, and anything but a regular file is refused with a message
that says what it is. What is opened is checked again on the open descriptor, opened with
``O_NONBLOCK`` so that a file swapped for a FIFO in between cannot block the open itself.
Symbolic links the user gave are followed: the command line is trusted, the files are not. Files
found in a folder qcheck reads on its own (a baseline) are read with ``links=False`` and a size
``limit``: a link is refused, not followed, and a file past the limit is not read into memory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from qcheck.errors import QcheckError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def describe(mode: int) -> str:
    """What a file of ``mode`` is, in words: 'a FIFO (named pipe)', 'a character device', ..."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def not_regular(path: str | Path, mode: int, what: str = "file") -> QcheckError:
    """The error for a path that is not a regular file (``what`` names its role: 'model file')."""
    return QcheckError(path, f"is {describe(mode)}, not a regular file",
                       f"give the {what} as a regular file: qcheck does not read pipes, devices or sockets")


def check_regular(path: str | Path, what: str = "file", *, links: bool = True) -> os.stat_result:
    """``os.stat`` of ``path``, which must be a regular file; raises QcheckError naming it otherwise.
    With ``links=False`` a symbolic link is refused instead of followed."""
    try:
        status = os.stat(path) if links else os.lstat(path)
    except FileNotFoundError:
        raise QcheckError(path, f"{what} does not exist") from None
    except OSError as exc:
        raise QcheckError(path, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISLNK(status.st_mode):
        raise QcheckError(path, f"is a symbolic link (to {os.readlink(path)}); qcheck reads a {what} only from a "
                          "regular file", "replace the link by the file itself")
    if not stat.S_ISREG(status.st_mode):
        raise not_regular(path, status.st_mode, what)
    return status


@contextmanager
def open_regular(path: str | Path, what: str = "file", *, links: bool = True) -> Iterator[BinaryIO]:
    """Open ``path`` for reading if it is a regular file, checked before and after the open."""
    check_regular(path, what, links=links)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:  # e.g. ENXIO: a socket put in its place since the check; ELOOP: a link
        raise QcheckError(path, f"cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path, mode, what)
        yield handle


def read_regular(path: str | Path, what: str = "file", *, limit: int | None = None, links: bool = True) -> bytes:
    """The bytes of ``path``, which must be a regular file (see :func:`open_regular`), of at most
    ``limit`` bytes when one is given."""
    with open_regular(path, what, links=links) as handle:
        if limit is None:
            return handle.read()
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise QcheckError(path, f"is {size} bytes, more than a {what} may be ({limit} bytes)")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise QcheckError(path, f"grew past {limit} bytes while being read")
    return data


def as_given(path: str | Path) -> Path:
    """``path`` made absolute with the folders on the way resolved, but not its last part.

    A model reached through a link to a blob without a suffix (``snap/model.keras ->
    ../blobs/3f2a9c``, the Hugging Face hub and DVC layout) is known by the name the user gave:
    that name says what kind of model it is, and messages name it.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def check_folder_entries(folder: Path) -> None:
    """Every entry under ``folder`` (a SavedModel) is a regular file or a folder; raises
    QcheckError naming the first that is not. Links are followed to what they name, but
    linked folders are not descended into (a link cycle cannot loop)."""
    for root, dirs, files in os.walk(folder):
        for name in sorted(files) + sorted(dirs):
            entry = Path(root) / name
            try:
                mode = os.stat(entry).st_mode
            except OSError as exc:
                raise QcheckError(entry, f"cannot be read: {exc.strerror or exc}") from None
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise QcheckError(entry, f"is {describe(mode)}, not a regular file",
                                  "every file of a SavedModel must be a regular file: qcheck does not read "
                                  "pipes, devices or sockets")
