"""A content-addressed cache for what the pipeline derives: conversions, evaluations, Vela runs.

An entry's key is a hash of everything its value depends on (the bytes of the model and data,
the options that matter, the versions of TensorFlow, LiteRT and qcheck), so a hit is always
valid and nothing is ever invalidated by hand. Entries are folders written under a temporary
name and renamed into place, so a writer killed half-way leaves nothing a reader trusts; every
file is checked against the hashes in its manifest on read, and a damaged entry is discarded
and rebuilt. A lock per key makes xdist workers that need the same entry produce it once.

Values are stored as JSON plus ``.npz`` arrays (read with ``allow_pickle=False``), never as
pickles: a cache folder restored in CI runs no code.

The folder itself is not trusted either (it may come from a CI cache store, or be pointed at
anything). qcheck marks a folder it makes with a ``CACHEDIR.TAG`` of its own and a README, and
refuses to use or clear a folder that is neither new, empty nor marked, so clearing deletes
only what qcheck made. Inside it, every path is opened relative to its folder's descriptor
with ``O_NOFOLLOW``: a symlink, a FIFO, a file where a folder should be (or the reverse) is
never followed, read or written through; it is damage, removed (the link itself, not its
target) and rebuilt, or caching is skipped for that key. Layout::

    CACHEDIR.TAG  README.md  .gitignore
    entries/<key[:2]>/<key>/{manifest.json, value.json, arrays.npz}
    locks/<key>.lock
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from qcheck import __version__, codec
from qcheck.errors import QcheckError
from qcheck.inputs import as_given

T = TypeVar("T")
FORMAT = 1


def versions(*distributions: str) -> str:
    """'name=version' of qcheck and the given distributions, for cache keys (no imports). qcheck's
    own is its version and a digest of its source (see :func:`source_digest`)."""
    return ";".join([f"qcheck={__version__}+{source_digest()}", f"format={FORMAT}",
                     *(f"{name}={installed_version(name)}" for name in distributions)])


@functools.cache
def source_digest() -> str:
    """A digest of qcheck's installed source (every module and built-in suite), once per process.

    The version number alone let a cache kept across an upgrade within one version (an install
    from git, an editable checkout, a cache restored in CI) serve what older code measured: a
    field added to a cached value, a CPU part cut otherwise, a comparison in other units. With
    the source in every key such a cache is simply not hit. About 5 ms for ~100 files."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts and path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


@functools.cache
def installed_version(distribution: str) -> str:
    """The installed version of ``distribution``, or "none"; looked up once per process (each
    look-up reads the metadata of every folder on sys.path: milliseconds, and a warm run keys
    every step with it)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


# -- the cache folder: qcheck's own, recognised by its marker -----------------------------------

# The CACHEDIR.TAG standard (https://bford.info/cachedir/): backup tools skip a folder holding
# it. The second line is what tells qcheck's folder from another tool's (pytest's own cache
# folder has a tag too, and must never be cleared by qcheck).
CACHEDIR_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
_TAG_OWNER = "# This file is a cache directory tag created by qcheck."
_TAG = (f"{CACHEDIR_SIGNATURE}\n{_TAG_OWNER}\n# For information about cache directory tags, see:\n"
        "#\thttps://bford.info/cachedir/\n")
_README = """# qcheck cache folder

This folder holds qcheck's cache of model conversions, float outputs, evaluations and Vela
compilations (pytest-qcheck). Each entry is found by a hash of everything it depends on, so
nothing here needs keeping: `pytest --qcheck-cache-clear` empties the cache, and deleting the
folder is always safe.

Do not put your own files here: qcheck refuses to clear a cache folder that holds files it
did not make. **Do not commit this folder to version control.**
"""
_SUPPORT = {"CACHEDIR.TAG": _TAG, "README.md": _README, ".gitignore": "# Created by qcheck automatically.\n*\n"}
_FOLDERS = ("entries", "locks")
_OWN_NAMES = frozenset(_SUPPORT) | frozenset(_FOLDERS)
_TMP_PREFIX = ".qcheck-"  # temporary names of the support files while they are written
_TMP_NAME = re.compile(r"\.qcheck-[0-9a-f]{16}\.tmp")
_KEY = re.compile(r"[0-9A-Za-z]{16,128}")
_ENTRY_FILES = ("arrays.npz", "value.json")
_MANIFEST_LIMIT = 1 << 16  # bytes; qcheck's own manifests are about 250
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MISS = object()


class CacheFolderError(QcheckError):
    """A folder that qcheck must not use as its cache: not qcheck's, not a folder, not writable."""


class _Damaged(Exception):
    """Something in an entry is not what qcheck wrote there."""


def prepare(root: Path, *, clear: bool = False, reclaim: bool = False) -> None:
    """Make ``root`` a qcheck cache folder or check that it is one; with ``clear``, empty it.

    A new or empty folder is made qcheck's (marked with its CACHEDIR.TAG and README); a marked
    one is used as it is; anything else raises CacheFolderError naming the folder and why, and
    nothing in it is touched. Clearing removes only qcheck's own ``entries`` and ``locks``,
    never following a link, and is refused if the folder holds anything qcheck did not make.
    ``reclaim`` is for qcheck's own place in pytest's cache folder: a link or a file there is
    damage, removed (the link, not its target) and replaced by a new folder.
    """
    if reclaim and (root.is_symlink() or root.exists() and not root.is_dir()):
        with contextlib.suppress(OSError):
            root.unlink()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CacheFolderError(root, "is not a folder", "give --qcheck-cache-dir a folder (new, empty, "
                               "or one qcheck made), not a file") from None
    except OSError as exc:
        raise CacheFolderError(root, f"cannot be created: {exc.strerror}",
                               "give --qcheck-cache-dir a folder you can write to") from None
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CacheFolderError(root, f"cannot be opened: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one process at a time marks or clears it (xdist workers)
        _check_ours(root, fd, clear)
        if not os.access(root, os.W_OK | os.X_OK, effective_ids=True):
            raise CacheFolderError(root, "is not writable", "give --qcheck-cache-dir a folder you can write to, "
                                   "or pass --qcheck-no-cache")
        try:
            if clear:
                for name in _FOLDERS:
                    _remove(fd, name)
            _write_support_files(fd)
        except OSError as exc:
            raise CacheFolderError(root, f"cannot be written: {exc.strerror}", "give --qcheck-cache-dir a folder "
                                   "you can write to, or pass --qcheck-no-cache") from None
    finally:
        os.close(fd)  # and with it the lock


def _check_ours(root: Path, fd: int, clear: bool) -> None:
    names = {name for name in os.listdir(fd) if not _TMP_NAME.fullmatch(name)}
    if _has_tag(fd):
        foreign = sorted(names - _OWN_NAMES)
        if clear and foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise CacheFolderError(root, f"holds files qcheck did not make ({shown}), so qcheck will not clear it",
                                   "move them out of the cache folder, or delete the folder yourself")
        return
    if names and not _made_by_qcheck(fd, names):
        raise CacheFolderError(root, "is not a qcheck cache folder: it is not empty, and has no CACHEDIR.TAG "
                               "written by qcheck", "qcheck only uses and clears a folder it made: give "
                               "--qcheck-cache-dir a new or empty folder")


def _has_tag(fd: int) -> bool:
    try:
        lines = _read_regular(fd, "CACHEDIR.TAG", limit=4096).decode("utf-8", "replace").splitlines()
    except (OSError, _Damaged):
        return False
    return lines[:2] == [CACHEDIR_SIGNATURE, _TAG_OWNER]


def _made_by_qcheck(fd: int, names: set[str]) -> bool:
    """An unmarked folder only qcheck could have made: a cache of a qcheck from before the
    marker (only ``entries`` and ``locks``), or one whose tag was lost but whose README or
    .gitignore is qcheck's, word for word; its folders laid out as qcheck lays them out."""
    if not names <= _OWN_NAMES:
        return False
    if not names <= set(_FOLDERS) and not any(_is_support_file(fd, name) for name in ("README.md", ".gitignore")):
        return False
    patterns = {"entries": re.compile(r"[0-9A-Za-z]{2}"), "locks": re.compile(r"[0-9A-Za-z]{16,128}\.lock")}
    for name in names & set(_FOLDERS):
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            return False
        try:
            if not all(patterns[name].fullmatch(child) for child in os.listdir(sub)):
                return False
        finally:
            os.close(sub)
    return True


def _is_support_file(fd: int, name: str) -> bool:
    try:
        return _read_regular(fd, name, limit=4096) == _SUPPORT[name].encode()
    except (OSError, _Damaged):
        return False


def _write_support_files(fd: int) -> None:
    # The tag first: a run killed half-way leaves a marked folder, which the next run completes.
    for name, text in _SUPPORT.items():
        if _is_support_file(fd, name):
            continue
        tmp = f"{_TMP_PREFIX}{secrets.token_hex(8)}.tmp"
        _write_new(fd, tmp, text.encode())
        try:
            _remove_if_folder(fd, name)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link itself, not its target
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise


class Cache:
    """Entries under ``root``; a Cache with ``root=None`` stores nothing and always misses.

    A damaged cache never fails a check: what cannot be read is made again, and what cannot
    be stored is simply not cached.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._prepared = False

    def prepare(self, *, clear: bool = False, reclaim: bool = False) -> None:
        """See :func:`prepare`; done on first use when not asked for before."""
        if self.root is not None:
            prepare(self.root, clear=clear, reclaim=reclaim)
            self._prepared = True

    def clear(self) -> None:
        """Empty the cache: only what qcheck made, only in a folder qcheck made."""
        self.prepare(clear=True)

    def get_or_make(self, key: str, make: Callable[[], T]) -> tuple[T, bool]:
        """The cached value for ``key``, or ``make()`` stored under it; and whether it was a hit."""
        if self.root is None:
            return make(), False
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache keys are 16 to 128 letters and digits, not {key!r}")
        if not self._prepared:
            self.prepare()
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return make(), False  # the folder went away during the run: go on without it
        try:
            hit = self._load(root, key)
            if hit is not _MISS:
                return hit, True
            with self._lock(root, key):
                hit = self._load(root, key)  # another worker may have made it while we waited
                if hit is not _MISS:
                    return hit, True
                value = make()
                self._store(root, key, value)
                return value, False
        finally:
            os.close(root)

    def has(self, key: str) -> bool:
        """Whether an entry for ``key`` is there (not read, nor checked: a hint, never a value)."""
        with self._root() as root:
            if root is not None:
                entry = _walk(root, ("entries", key[:2], key))
                if entry is not None:
                    os.close(entry)
                    return True
        return False

    def peek(self, key: str) -> Any:
        """The cached value for ``key``, or None: nothing is made (a damaged entry is removed)."""
        with self._root() as root:
            if root is not None:
                value = self._load(root, key)
                return None if value is _MISS else value
        return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (nothing happens when that cannot be done)."""
        with self._root() as root:
            if root is not None:
                self._store(root, key, value)

    @contextlib.contextmanager
    def _root(self) -> Iterator[int | None]:
        """The cache folder, opened; None without a cache."""
        if self.root is None:
            yield None
            return
        if not self._prepared:
            self.prepare()
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            yield None
            return
        try:
            yield root
        finally:
            os.close(root)

    @contextlib.contextmanager
    def _lock(self, root: int, key: str) -> Iterator[None]:
        try:
            locks = _folder(root, "locks")
            try:
                fd: int | None = _lock_file(locks, f"{key}.lock")
            finally:
                os.close(locks)
        except OSError:
            fd = None  # no lock: at worst two workers make the same entry, and one rename wins
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)  # and with it the lock

    def _load(self, root: int, key: str) -> Any:
        entry = _walk(root, ("entries", key[:2], key))
        if entry is None:
            return _MISS
        try:
            return _read_entry(entry, key)
        except Exception:  # noqa: BLE001 - whatever the damage (bad JSON, wrong shapes, a FIFO): rebuild
            pass
        finally:
            os.close(entry)
        shard = _walk(root, ("entries", key[:2]))
        if shard is not None:
            try:
                _remove(shard, key)
            except OSError:
                pass  # the rebuilt entry replaces it, or is not stored
            finally:
                os.close(shard)
        return _MISS

    def _store(self, root: int, key: str, value: Any) -> None:
        tree, arrays = _encode(value)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds
        files = {"value.json": json.dumps(tree, sort_keys=True).encode(), "arrays.npz": buffer.getvalue()}
        meta = {"key": key, "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}
        # The manifest goes last: an entry without one is never read.
        files["manifest.json"] = json.dumps(meta, sort_keys=True).encode()
        try:
            entries = _folder(root, "entries")
            try:
                shard = _folder(entries, key[:2])
            finally:
                os.close(entries)
            try:
                _store_entry(shard, key, files)
            finally:
                os.close(shard)
        except OSError:
            pass  # not cached (a read-only or damaged folder): the value is right, the next run makes it again


def _read_entry(entry: int, key: str) -> Any:
    meta = json.loads(_read_regular(entry, "manifest.json", limit=_MANIFEST_LIMIT))
    hashes = meta.get("files") if isinstance(meta, dict) and meta.get("key") == key else None
    if not isinstance(hashes, dict) or sorted(hashes) != sorted(_ENTRY_FILES):
        raise _Damaged("manifest.json is not qcheck's")
    blobs = {}
    for name in _ENTRY_FILES:
        blobs[name] = _read_regular(entry, name)
        if hashlib.sha256(blobs[name]).hexdigest() != hashes[name]:
            raise _Damaged(f"{name} does not match its hash")
    # What is decoded is what was hashed: the bytes are read once.
    with np.load(io.BytesIO(blobs["arrays.npz"]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return _decode(json.loads(blobs["value.json"]), arrays)


def _store_entry(shard: int, key: str, files: dict[str, bytes]) -> None:
    tmp = f".{key[:12]}.{secrets.token_hex(8)}.tmp"
    os.mkdir(tmp, 0o700, dir_fd=shard)  # fails if anything is there: nothing planted is written into
    try:
        folder = os.open(tmp, _DIR_FLAGS, dir_fd=shard)
        try:
            for name, data in files.items():
                _write_new(folder, name, data)
        finally:
            os.close(folder)
        _remove(shard, key)
        os.rename(tmp, key, src_dir_fd=shard, dst_dir_fd=shard)
    except BaseException:
        with contextlib.suppress(OSError):
            _remove(shard, tmp)
        raise


# -- file operations that never follow a link ----------------------------------------------------


def _walk(fd: int, names: tuple[str, ...]) -> int | None:
    """A descriptor of the real folder ``fd/names...``, or None if any part is missing or is
    anything but a folder (a link is never followed)."""
    current = fd
    for name in names:
        try:
            opened = os.open(name, _DIR_FLAGS, dir_fd=current)
        except OSError:
            opened = -1
        if current != fd:
            os.close(current)
        if opened < 0:
            return None
        current = opened
    return current


def _folder(parent: int, name: str) -> int:
    """A descriptor of the real folder ``name`` in ``parent``, made if missing; anything else
    at that name (a link, a file, a FIFO) is damage and is removed first."""
    for _ in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            _remove(parent, name)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent)
    raise OSError(errno.ENOTDIR, f"{name} could not be made a folder")


def _lock_file(folder: int, name: str) -> int:
    """An open regular file ``name`` in ``folder`` (created if missing, never truncated)."""
    for _ in range(2):
        _remove_unless_regular(folder, name)  # never open a planted device, FIFO or socket
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666,
                         dir_fd=folder)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
    raise OSError(errno.EEXIST, f"{name} could not be made a regular file")


def _read_regular(folder: int, name: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``name`` in ``folder``; _Damaged if it is anything else."""
    if not stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
        raise _Damaged(f"{name} is not a regular file")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    try:
        size = os.fstat(fd)
        if not stat.S_ISREG(size.st_mode) or limit is not None and size.st_size > limit:
            raise _Damaged(f"{name} is not a regular file of the expected size")
        blocks = []
        while block := os.read(fd, 1 << 20):
            blocks.append(block)
        return b"".join(blocks)
    finally:
        os.close(fd)


def _write_new(folder: int, name: str, data: bytes) -> None:
    """Create ``name`` in ``folder`` (it must not exist, so nothing planted is written through)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _remove(folder: int, name: str) -> None:
    """Remove ``name`` from ``folder``: a link itself (never its target), a file, or a whole
    folder (``shutil.rmtree`` with a descriptor follows no link inside it)."""
    try:
        mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(name, dir_fd=folder)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder)


def _remove_if_folder(folder: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            _remove(folder, name)


def _remove_unless_regular(folder: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            _remove(folder, name)


# -- a private copy of the model: what is hashed is what is converted ---------------------------


@contextlib.contextmanager
def private_copy(path: Path) -> Iterator[Path]:
    """A copy of a model file or SavedModel folder, in a new folder only this user can enter,
    removed afterwards.

    A key hashed from the user's path while a child process converts the same path seconds
    later can be poisoned: a file replaced in between is converted under the old file's key.
    Hashed and converted, a private copy is one set of bytes. A FIFO, device or socket is not
    read (it could block or never end): models come from regular files and folders.
    """
    folder = Path(tempfile.mkdtemp(prefix="qcheck-model-"))
    try:
        # Named as the user named it (a link's name, not its target's): the name is the model's kind.
        copy = folder / (as_given(path).name or "model")
        _copy(path, copy, depth=0)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def private_file(data: bytes, name: str) -> Iterator[Path]:
    """``data`` as a file named ``name`` in a new folder only this user can enter, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="qcheck-model-"))
    try:
        (folder / name).write_bytes(data)
        yield folder / name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy(source: Path, target: Path, depth: int) -> None:
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # O_NONBLOCK: a FIFO does not block
    except OSError as exc:
        raise QcheckError(source, f"cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            with open(target, "xb") as out:
                while block := os.read(fd, 1 << 20):
                    out.write(block)
        elif stat.S_ISDIR(mode):
            if depth >= 32:
                raise QcheckError(source, "is nested more than 32 folders deep (a symlink loop?)")
            os.mkdir(target, 0o700)
            for name in sorted(os.listdir(fd)):
                _copy(source / name, target / name, depth + 1)
        else:
            raise QcheckError(source, "is not a regular file or a folder (a FIFO, device or socket?)",
                              "give qcheck the model file itself")
    except OSError as exc:
        raise QcheckError(source, f"could not be copied into a private temporary folder: {exc.strerror}",
                          "qcheck converts a private copy of the model; check the space in the temporary "
                          "folder (TMPDIR)") from None
    finally:
        os.close(fd)


# -- a safe codec: dataclasses of an allow-list, containers, scalars, bytes and arrays ---------


def _encode(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    return codec.encode(value, codec.qcheck_values())


def _decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    return codec.decode(tree, arrays, codec.qcheck_values())
