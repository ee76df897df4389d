"""Content digests of large files, found by the files' identity instead of read on every run.

A warm run hashes the data it evaluates on (the cache keys depend on the data's content): for a
data folder of memory-mapped ``x.npy`` or ``.npz`` shards that is every byte of it, every run. The
index keeps, in the cache, each large file's sha256 under a key made of what the system says
about the file: its path, device, inode, size, modification and change times (nanoseconds), and
the boot of the machine. A later run whose ``stat`` gives the same key takes the digest without
reading the file.

Why that is safe enough: any write to a file, and any ``touch``, rename or ``chmod``, sets its
change time (``ctime``) to the kernel's clock, which no unprivileged process can set back. A
digest is recorded only when the file's ``stat`` was the same before and after it was read, and
its times are at least :func:`settled_ns` in the past. Two reasons: a write in the same tick of the
kernel's coarse clock as the last one could otherwise leave every time unchanged (git's "racy"
files); and a file written through a shared memory map (``np.memmap`` in ``r+`` mode) gets no new
time for a write to a page that is already dirty, until the kernel writes that page back
(``vm.dirty_expire_centisecs``, 30 s by default, checked every ``vm.dirty_writeback_centisecs``,
5 s): only once that window has passed since the last time is every later write sure to set the
times again (found in review, where a digest recorded in between was served for the new bytes).
So a file changed in the last ~45 s is hashed by content. Any change after recording gives a
later ``ctime``, hence another key, and the file is read again. The boot id keeps entries from
serving another machine or another boot (a cache restored in CI, a clock set back across a
reboot): there the file is hashed by content as before. What it does not cover: someone who can
set the system clock back, or write the cache folder (who can forge any entry anyway, see the
README's threat model).

Small files (under :data:`MIN_SIZE`) are read as before: hashing them costs less than the lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol


class Index(Protocol):
    """Where digests are kept (a :class:`qcheck.cache.Cache`)."""

    root: Path | None

    def peek(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


MIN_SIZE = 1 << 20
_MARGIN_NS = 5_000_000_000  # the flusher can run late under load


def _centisecs(name: str, default: int) -> int:
    try:
        return int(Path(f"/proc/sys/vm/{name}").read_text())
    except (OSError, ValueError):
        return default


def settled_ns() -> int:
    """How old a file's times must be before its digest is recorded: the kernel's write-back
    window for dirty pages (see the module's docstring), read from this machine's settings."""
    expire, writeback = _centisecs("dirty_expire_centisecs", 3000), _centisecs("dirty_writeback_centisecs", 500)
    return (expire + 2 * writeback) * 10_000_000 + _MARGIN_NS


SETTLED_NS: int | None = None  # None: settled_ns(); tests set 0 to record at once
_HEX = re.compile(r"[0-9a-f]{64}")
# The index in use by the current pipeline step (set around cache-key computations).
_ACTIVE: ContextVar[Index | None] = ContextVar("qcheck_stat_index", default=None)


@contextlib.contextmanager
def using(cache: Index) -> Iterator[None]:
    """File digests computed inside take and record what ``cache``'s index knows."""
    token = _ACTIVE.set(cache if cache.root is not None else None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def file_digest(path: Path, compute: Callable[[Path], str]) -> str:
    """``compute(path)`` (a regular file's sha256), or what the active index knows of the file
    as it is now."""
    cache = _ACTIVE.get()
    boot = _boot_id()
    if cache is None or boot is None:
        return compute(path)
    try:
        before = os.stat(path)
    except OSError:
        return compute(path)
    if not stat.S_ISREG(before.st_mode) or before.st_size < MIN_SIZE:
        return compute(path)
    key = _key(path, before, boot)
    known = cache.peek(key)
    if isinstance(known, str) and _HEX.fullmatch(known):
        return known
    value = compute(path)
    try:
        after = os.stat(path)
    except OSError:
        return value
    settle = settled_ns() if SETTLED_NS is None else SETTLED_NS
    settled = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) >= settle
    if _identity(after) == _identity(before) and settled:
        cache.put(key, value)
    return value


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)


def _key(path: Path, info: os.stat_result, boot: str) -> str:
    text = "\0".join(("stat-index", boot, os.path.abspath(path), repr(_identity(info))))
    return hashlib.sha256(text.encode()).hexdigest()


def _boot_id() -> str | None:
    """This boot of this machine (Linux); None elsewhere, and then the index is not used."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None
