"""Writing artifacts and reports safely: atomic replaces, names that cannot leave their folder,
and never over the run's own inputs or over something that is not a file qcheck could have written."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

from qcheck.errors import QcheckError
from qcheck.inputs import open_regular

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """A file-name stem from untrusted text (a model or tensor name): no separators, no '..',
    and no leading '-' that a tool could read as an option."""
    stem = _UNSAFE.sub("_", name).strip("._-") or "model"
    return stem[:80]


def content_digest(path: Path) -> str:
    """sha256 of a file, or of every file of a folder (a SavedModel) with its relative name."""
    h = hashlib.sha256()
    # Only regular files are read (is_file), each opened through open_regular: one swapped for a
    # FIFO or a device meanwhile is refused rather than read forever.
    if path.is_file():  # a large one may be known to the cache's index (qcheck.stat_index)
        from qcheck.stat_index import file_digest

        return file_digest(path, _read_digest)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        h.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        with open_regular(file) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _read_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class InputFiles:
    """The run's own inputs (models, data, suites, ...), which nothing qcheck writes may replace.

    Files are known by identity (device and inode, links followed), so another spelling of the
    path, a symbolic link or a hard link to an input is the input too.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[int, int], str] = {}
        self._paths: dict[Path, str] = {}  # as written (made absolute) and with links resolved

    def add(self, path: str | Path | None, what: str) -> None:
        """Protect ``path`` (described as ``what``, e.g. "model"); missing paths are ignored."""
        if not path:
            return
        absolute = Path(os.path.abspath(path))
        if absolute in self._paths:
            return  # every item of a test module names it
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            return  # nothing there to lose; the step that reads it reports what is wrong
        self._known.setdefault((info.st_dev, info.st_ino), f"{what} {path}")
        self._paths[absolute] = f"{what} {path}"
        self._paths.setdefault(Path(os.path.realpath(path)), f"{what} {path}")

    def owner(self, target: Path) -> str | None:
        """What ``target`` is when it is one of the inputs ("model m.keras"), else None."""
        try:
            info = os.stat(target)
        except (OSError, ValueError):
            return None
        return self._known.get((info.st_dev, info.st_ino))

    def refuse(self, target: Path) -> None:
        """Raise QcheckError when writing ``target`` would replace one of the inputs."""
        owner = self.owner(target)
        if owner is not None:
            raise QcheckError(target, f"is the {owner} of this run; qcheck never writes over its inputs",
                              "choose another --qcheck-out (or report path), or move the input")

    def refuse_inside(self, folder: Path) -> None:
        """Raise QcheckError when an input lies inside ``folder``, whose files qcheck replaces."""
        # Both spellings of the folder: a link on its way (the output root may be one) must not hide an input.
        spellings = {Path(os.path.abspath(folder)), Path(os.path.realpath(folder))}
        for path, owner in self._paths.items():
            if any(path.is_relative_to(inside) and path != inside for inside in spellings):
                raise QcheckError(folder, f"holds the {owner} of this run, and qcheck writes its files there; "
                                  "it never writes over its inputs", "choose another --qcheck-out, or move the input")


def output_folder(root: Path, folder: Path) -> Path:
    """Make ``folder``, which lies below the output root ``root``, and return it.

    Every part of ``folder`` below ``root`` must be a real folder: a symbolic link there (one
    committed to a repository, say ``qcheck-out/m_vela/ethos-u55-128 -> ../../../elsewhere``)
    would send qcheck's writes and removals anywhere, so it is refused with QcheckError naming
    it, never followed nor removed (it may be the user's own; removing it is theirs to decide).
    ``root`` itself may be a link: the user chose it (the command line is trusted; a root from a
    configuration file was confined to its project when it was read).
    """
    base = Path(os.path.abspath(root))
    target = Path(os.path.abspath(folder))
    if not target.is_relative_to(base):
        raise QcheckError(folder, f"is not inside qcheck's output folder {root}")
    base.mkdir(parents=True, exist_ok=True)
    here = base
    for part in target.relative_to(base).parts:
        here = here / part
        try:
            found = here.lstat()
        except FileNotFoundError:
            try:
                os.mkdir(here, 0o777)
            except FileExistsError:
                pass  # another worker made it meanwhile; it is checked below all the same
            found = here.lstat()
        if stat.S_ISLNK(found.st_mode):
            raise QcheckError(here, f"is a symbolic link inside qcheck's output folder {root} (to "
                              f"{os.readlink(here)}); qcheck does not write through links below its output "
                              "folder, which could send its files anywhere",
                              "remove the link (qcheck makes the folder itself), or choose another --qcheck-out")
        if not stat.S_ISDIR(found.st_mode):
            raise QcheckError(here, f"is {_kind(found.st_mode)}, not a folder; qcheck writes its files in a "
                              "folder of this name", "remove it, or choose another --qcheck-out")
    # The walk saw no link; the folder found must be the one walked (a second look, no trust in the first).
    if os.path.realpath(target) != os.path.join(os.path.realpath(base), *target.relative_to(base).parts):
        raise QcheckError(folder, f"does not lead where it says inside qcheck's output folder {root}",
                          "choose another --qcheck-out")
    return folder


def remove_stale(path: Path, *, root: Path, never: InputFiles | None = None) -> None:
    """Remove the stale artifact ``path`` below the output root ``root`` (see :func:`output_folder`),
    if it is there: only a regular file that is not one of the run's inputs (``never``)."""
    output_folder(root, path.parent)
    try:
        found = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(found.st_mode):
        raise QcheckError(path, f"is {_kind(found.st_mode)}, not a file qcheck wrote; qcheck removes only "
                          "regular files in its output folders", "remove it, or choose another folder")
    if never is not None:
        never.refuse(path)
    path.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes, *, named_by_user: bool = False, never: InputFiles | None = None,
                 root: Path | None = None) -> None:
    """Write ``data`` so that readers see the old file or the whole new one, never a part.

    A regular file is replaced atomically, or left as it is when it holds ``data`` already. ``path``
    is never one of the run's inputs (``never``) and never a folder. What else may stand at
    ``path`` depends on who chose it:

    - ``named_by_user`` (a report path from the command line): a device, FIFO or symbolic link is
      written through, in place, as pytest writes ``--junitxml``: ``/dev/null`` stays a device,
      ``/dev/stdout`` prints, a link stays a link and its target gets the text.
    - otherwise (an artifact name qcheck chose): anything but a regular file is refused with
      QcheckError, so that a link planted in the output folder cannot redirect a write.

    ``root``: ``path`` is an artifact below this output root; no part of its folder below the root
    may be a link (see :func:`output_folder`).
    """
    if root is not None:
        output_folder(root, path.parent)
    if never is not None:
        never.refuse(path)
    try:
        found = path.lstat()
    except FileNotFoundError:
        found = None
    except NotADirectoryError:
        raise QcheckError(path, "cannot be written: a part of its folder is a file, not a folder") from None
    if found is not None and not stat.S_ISREG(found.st_mode):
        if stat.S_ISDIR(found.st_mode):
            raise QcheckError(path, "is a folder; qcheck writes a file here",
                              "give the path of a file" if named_by_user else "remove it, or choose another folder")
        if not named_by_user:
            raise QcheckError(path, f"is {_kind(found.st_mode)}, not a file qcheck wrote; qcheck replaces only "
                              "regular files in its output folders", "remove it, or choose another folder")
        _write_through(path, data)
        return
    if found is not None and found.st_size == len(data) and _holds(path, found, data):
        # A warm run writes every artifact again, mostly the same bytes: a rename over the file
        # would cost more than reading it (ext4 flushes a file renamed over another, auto_da_alloc).
        return
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


def _holds(path: Path, found: os.stat_result, data: bytes) -> bool:
    """Whether the regular file ``path`` (``found``: its lstat) holds exactly ``data``; the file
    opened is the one found (no link followed, nothing swapped in meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (found.st_dev, found.st_ino):
            return False
        blocks, left = [], len(data) + 1  # one byte more: a file that grew meanwhile differs
        while left > 0 and (block := os.read(fd, min(left, 1 << 20))):
            blocks.append(block)
            left -= len(block)
        return b"".join(blocks) == data
    except OSError:
        return False
    finally:
        os.close(fd)


def _write_through(path: Path, data: bytes) -> None:
    """Write into what ``path`` is (a device, a FIFO, a link's target) without replacing it."""
    # O_NONBLOCK: a FIFO nobody reads fails at once (ENXIO) instead of hanging the session.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise QcheckError(path, "is a FIFO that nothing reads from") from None
        raise
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise QcheckError(path, "leads to a folder; qcheck writes a file here")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISREG, "a file"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_output_folder(option: str, path: Path) -> str | None:
    """Why ``path`` cannot be the folder that ``option`` asks qcheck to write into, or None.

    Nothing is created: a folder that does not exist yet must be one qcheck can create.
    """
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return _why_not_creatable(option, path)
    except OSError as exc:
        return f"{option}={path}: cannot be used as a folder ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return f"{option}={path}: is {_kind(info.st_mode)}, not a folder; give a folder for qcheck to write into"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{option}={path}: is a folder qcheck cannot write into (no permission, or a read-only file system)"
    return None


def check_output_file(option: str, path: Path) -> str | None:
    """Why ``path`` cannot be the report file that ``option`` asks for, or None.

    A regular file is replaced; a device, FIFO or link is written through (see :func:`atomic_write`).
    """
    try:
        info = path.stat()
    except NotADirectoryError:
        return _why_not_creatable(option, path.parent, path)
    except FileNotFoundError:
        if path.is_symlink():  # written through: the link's target is created, in a folder that must exist
            target = Path(os.path.realpath(path))
            if target.parent.is_dir():
                return None
            return f"{option}={path}: is a link to {target}, whose folder does not exist"
        return _why_not_creatable(option, path.parent, path)
    except OSError as exc:
        return f"{option}={path}: cannot be written ({exc.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return f"{option}={path}: is a folder; give the path of the report file to write"
    if stat.S_ISREG(info.st_mode) and not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"{option}={path}: its folder {path.parent} cannot be written into "
                "(no permission, or a read-only file system)")
    return None


def _why_not_creatable(option: str, folder: Path, target: Path | None = None) -> str | None:
    """Why ``folder`` cannot be created (or written into, when it exists), or None."""
    target = target or folder
    ancestor = Path(os.path.abspath(folder))
    while True:
        try:
            info = ancestor.stat()
            break
        except (FileNotFoundError, NotADirectoryError):
            if ancestor.parent == ancestor:
                return None
            ancestor = ancestor.parent
        except OSError as exc:
            return f"{option}={target}: cannot be created: {ancestor} is unusable ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return f"{option}={target}: cannot be created: {ancestor} is {_kind(info.st_mode)}, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return (f"{option}={target}: cannot be created: qcheck cannot write into {ancestor} "
                "(no permission, or a read-only file system)")
    return None


def write_json(path: Path, payload: Any, *, named_by_user: bool = False, never: InputFiles | None = None,
               root: Path | None = None) -> None:
    """Deterministic JSON (sorted keys, indent 2), written atomically (see :func:`atomic_write`)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_default) + "\n"
    atomic_write(path, text.encode(), named_by_user=named_by_user, never=never, root=root)


def _default(value: Any) -> Any:
    # numpy scalars and arrays reach reports through measurements.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
