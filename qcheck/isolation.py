"""Run native steps (conversion, the interpreter) in a child process.

Real models crash the TFLite runtime (SIGABRT or SIGSEGV after ``invoke()`` returns), hang, or
exhaust memory. In a child process that costs the checks that needed the step, with the signal
and the model named, and nothing else: the session and every other model go on.

The request (the function's name and its arguments) and the answer travel as JSON plus ``.npz``
arrays (:mod:`qcheck.codec`, read with ``allow_pickle=False``), never as pickles.

A child is stopped when it runs past the time limit, and sooner when it is hung: a child that
uses no CPU time for ``idle_limit`` seconds (a deadlocked allocator after heap corruption sits in
a futex forever) is stopped and reported as hung, while a slow step that computes keeps its time.

Children die with the process that started them (``PR_SET_PDEATHSIG`` on Linux, set by
:mod:`qcheck.worker` before anything else), and everything they write to a temporary folder
(the request, the answer, TensorFlow's autograph files) lands in a folder of this process
under one qcheck temporary root: the folder is removed after each step and when the process
exits, and a folder left by a process that was killed is removed by the next one.

Conversions go to a *kept* worker (``kept="tensorflow"``): one child per pytest process (per
xdist worker) that imports TensorFlow once and converts models one after another, each call in
its own folder and after Keras's global state is cleared (:mod:`qcheck.worker`), so that every
conversion gives the bytes a fresh process gives. The promises hold for it too: a crash, a
timeout or a hang during a call fails that call (the model's checks) and the worker is
replaced for the next one; a worker whose resident memory has grown past
:data:`KEPT_RSS_LIMIT` after a call is retired and the next call gets a fresh one.

Memory: no limit is set on the child. ``RLIMIT_AS`` cannot be used (TensorFlow reserves
gigabytes of address space it never touches) and ``RLIMIT_DATA`` counts every thread's stack:
under it TensorFlow's import aborts (``pthread_create`` fails) or spins, measured with
TensorFlow 2.21. Instead the child volunteers for the kernel's out-of-memory killer
(:mod:`qcheck.worker`), so when memory runs out it is the step's child that is killed
(SIGKILL), reported as such, and the session goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import queue
import re
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from qcheck.config import DEFAULT_TIMEOUT
from qcheck.errors import QcheckError, StepFailed, crashed

# No CPU time used for this long means hung. A working conversion or interpreter never sits
# this long without computing; a deadlocked one would sit until the (much longer) time limit.
DEFAULT_IDLE_LIMIT = 90.0
REQUEST, ANSWER = "request.npz", "answer.npz"
_POLL = 0.25  # seconds between looks at the child
_TAIL_LINES = 6
# Lines every child prints that say nothing about what went wrong.
_NOISE = ("cuda", "created tensorflow lite xnnpack delegate", "all log messages before absl::initializelog()")
_LOG_NOISE = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:"  # absl's informational and warning lines: "I0000 00:00:17... port.cc:153] ..."
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\S+: [IW] "  # TensorFlow's older format: "2026-12-03 08:00:00.1: W tensorflow/..."
    r"|(?:INFO|WARNING):[\w.]+:"  # Python logging: "WARNING:absl:..."
    r"|fully_quantize: )"  # the converter's summary of its settings
)
_PYTHON_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")  # followed by an indented line of source
_ROOT_NAME = "qcheck-{uid}"  # the temporary root, one per user, under the system's temporary folder
_RUN_PREFIX = "run-"  # one folder per process under the root
_LOCK = ".lock"  # held (flock) by the process that owns a run folder, for as long as it lives
# A kept worker whose resident memory is past this after a call is retired (the next call gets a
# fresh one): TensorFlow and Keras take ~0.7 GB after a small conversion here, and a large model
# may leave more behind than Python gives back. QCHECK_WORKER_MAX_RSS_MB overrides it.
KEPT_RSS_LIMIT = 3 * 1024**3


def call_isolated(function: str, *args: Any, what: str, timeout: float = DEFAULT_TIMEOUT,
                  idle_limit: float = DEFAULT_IDLE_LIMIT, kept: str = "", **kwargs: Any) -> Any:
    """Call ``module:function`` with the arguments in a fresh Python process and return its result.

    With ``kept`` ("tensorflow") the call goes to this process's kept worker of that kind
    instead, started when first needed (or ahead, by :func:`start_kept`).

    A QcheckError raised there is raised here as it was; any other exception, a crash, a
    timeout, a hang (no CPU time used for ``idle_limit`` s) or a process killed for memory
    becomes StepFailed naming ``what``. Arguments and the result must be values
    :mod:`qcheck.codec` carries (qcheck's own dataclasses, arrays, bytes, paths, scalars).
    """
    from qcheck import codec

    folder = Path(tempfile.mkdtemp(prefix="call-", dir=_run_folder()))
    try:
        try:
            request = codec.pack((function, list(args), kwargs), exchanged_classes())
        except TypeError as exc:
            raise StepFailed(f"{what} failed: its arguments cannot be sent to a child process ({exc})") from None
        (folder / REQUEST).write_bytes(request)
        if kept:
            returncode, stderr = _call_kept(kept, folder, what, timeout, idle_limit)
        else:
            returncode, stderr = _run_child(folder, what, timeout, idle_limit)
        answer = folder / ANSWER
        if returncode != 0 or not answer.exists():
            raise StepFailed(_crash_message(what, returncode, stderr))
        try:
            ok, value = codec.unpack(answer.read_bytes(), exchanged_classes())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StepFailed(f"{what} failed: its child process gave an answer that cannot be read ({exc})") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if ok:
        return value
    kind, payload = value
    if kind == "QcheckError":
        raise QcheckError(*payload)
    raise StepFailed(f"{what} failed: {payload}")


def exchanged_classes() -> Mapping[str, type]:
    """The dataclasses that may cross the process boundary (requests and answers)."""
    from qcheck import codec

    return codec.qcheck_values()


def _run_child(folder: Path, what: str, timeout: float, idle_limit: float) -> tuple[int, str]:
    """Run the worker on ``folder``; its exit code and what it wrote to stderr."""
    tmp = str(folder)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1",
           "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp}  # TensorFlow's autograph files land in the folder too
    command = [sys.executable, "-m", "qcheck.worker", tmp, str(os.getpid())]
    with open(folder / "stdout.txt", "wb") as out, open(folder / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=tmp)
        try:
            _wait(proc, what, timeout, idle_limit)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, (folder / "stderr.txt").read_text(errors="replace")


def _wait(proc: subprocess.Popen[bytes], what: str, timeout: float, idle_limit: float) -> None:
    """Wait for the child; StepFailed when it runs past ``timeout`` or uses no CPU for ``idle_limit``."""
    def exited(seconds: float) -> bool:
        try:
            proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    _watch(proc.pid, exited, what, timeout, idle_limit)


def _watch(pid: int, finished: Callable[[float], bool], what: str, timeout: float, idle_limit: float) -> None:
    """Until ``finished(seconds)`` (which waits up to that long) says so; StepFailed when the
    process ``pid`` runs past ``timeout`` or uses no CPU for ``idle_limit``."""
    start = time.monotonic()
    cpu, since = _cpu_ticks(pid), start
    while True:
        if finished(_POLL):
            return
        now = time.monotonic()
        if now - start >= timeout:
            raise StepFailed(f"{what} did not finish within {timeout:g} s and was stopped "
                             "(raise the limit with --qcheck-timeout)")
        used = _cpu_ticks(pid)
        if used is None or used != cpu:
            cpu, since = used, now
        elif now - since >= idle_limit:
            raise StepFailed(f"{what} hung: its process used no CPU time for {idle_limit:g} s (deadlocked, or "
                             "waiting for something that never comes) and was stopped")


def _cpu_ticks(pid: int) -> int | None:
    """CPU time the process and its waited-for children used, in clock ticks; None when that
    says nothing (not Linux, or the process is runnable and only waits for a CPU on a busy machine)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the command name, which may hold spaces and parentheses: state, ppid, ...
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "R":
        return None
    return sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime


# -- kept workers ------------------------------------------------------------------------------


class KeptWorker:
    """A child that answers calls one after another (``python -m qcheck.worker --serve``).

    It writes its output to files in its own folder; a call's share of its stderr (where a
    crash's last words are) is what was written after the call began.
    """

    def __init__(self, preload: str) -> None:
        self.preload = preload
        self.folder = Path(tempfile.mkdtemp(prefix="worker-", dir=_run_folder()))
        self.calls = 0
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        tmp = str(self.folder)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1",
               "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp}
        command = [sys.executable, "-m", "qcheck.worker", "--serve", tmp, str(os.getpid()),
                   str(requests_read), str(answers_write), preload]
        self._stderr_path = self.folder / "stderr.txt"
        try:
            with open(self.folder / "stdout.txt", "wb") as out, open(self._stderr_path, "wb") as err:
                self.proc = _spawn(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=tmp,
                                   pass_fds=(requests_read, answers_write))
        finally:
            os.close(requests_read)
            os.close(answers_write)
        self._requests: IO[bytes] = os.fdopen(requests_write, "wb", buffering=0)
        self._answers = answers_read

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, folder: Path, what: str, timeout: float, idle_limit: float) -> tuple[int, str]:
        """Have the worker answer the request in ``folder``: (0, "") when it did, else the
        worker's exit code (it died) and what it wrote to stderr during the call. StepFailed
        when the call runs past ``timeout`` or the worker uses no CPU for ``idle_limit``."""
        # The first call also owns what the worker said while it started (a failed import).
        offset = self._stderr_path.stat().st_size if self.calls else 0
        self.calls += 1
        try:
            self._requests.write(os.fsencode(folder) + b"\n")
        except OSError:  # it died before the call reached it
            pass
        said = bytearray()

        def answered(seconds: float) -> bool:
            if self.proc.poll() is not None:
                return True
            readable, _, _ = select.select([self._answers], [], [], seconds)
            if readable:
                chunk = os.read(self._answers, 64)
                if not chunk:  # the pipe closed: the worker is gone
                    self.proc.wait()
                    return True
                said.extend(chunk)
            return said.endswith(b"done\n")

        _watch(self.proc.pid, answered, what, timeout, idle_limit)
        if said.endswith(b"done\n"):
            return 0, ""
        returncode = self.proc.wait()
        with open(self._stderr_path, "rb") as err:
            err.seek(offset)
            return returncode or 1, err.read().decode(errors="replace")

    def rss(self) -> int:
        """Resident memory now, in bytes (0 when not known)."""
        return _status_bytes(self.proc.pid, "VmRSS")

    def peak_rss(self) -> int:
        """The most resident memory the worker has had, in bytes (0 when not known)."""
        return _status_bytes(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        """End the worker (it exits when its request pipe closes) and remove its folder."""
        with contextlib.suppress(OSError):
            self._requests.close()
        try:
            self.proc.wait(timeout=0.5)  # it may still be importing: no need to wait for that
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._answers)
        shutil.rmtree(self.folder, ignore_errors=True)


_kept_lock = threading.Lock()  # guards _kept and _kept_locks
_kept: dict[str, KeptWorker] = {}
_kept_locks: dict[str, threading.Lock] = {}  # one call at a time per worker
_stop_at_exit: list[bool] = []


def start_kept(preload: str) -> None:
    """Start this process's kept worker of kind ``preload`` now, when none is running, so that
    its imports overlap the caller's work (loading data) instead of the first call's wait."""
    lock = _worker_lock(preload)
    if not lock.acquire(blocking=False):
        return  # a call is using it (or starting it)
    try:
        _live_worker(preload)
    finally:
        lock.release()


def kept_worker(preload: str) -> KeptWorker | None:
    """This process's kept worker of kind ``preload``, when one is running (for measurements)."""
    with _kept_lock:
        return _kept.get(preload)


def stop_kept() -> None:
    """Stop every kept worker of this process (also done at exit)."""
    with _kept_lock:
        workers = list(_kept.values())
        _kept.clear()
    for worker in workers:
        worker.stop()


def _worker_lock(preload: str) -> threading.Lock:
    with _kept_lock:
        return _kept_locks.setdefault(preload, threading.Lock())


def _live_worker(preload: str) -> KeptWorker:
    """The running worker of kind ``preload``, started when there is none (or it died between
    calls: then it was no call's fault). Called with the worker's lock held."""
    with _kept_lock:
        worker = _kept.get(preload)
    if worker is not None and worker.alive():
        return worker
    if worker is not None:
        _retire(worker)
    worker = KeptWorker(preload)
    with _kept_lock:
        _kept[preload] = worker
        if not _stop_at_exit:
            # After the run folder's removal was registered (by KeptWorker), so it runs before it.
            atexit.register(stop_kept)
            _stop_at_exit.append(True)
    return worker


def _retire(worker: KeptWorker) -> None:
    with _kept_lock:
        if _kept.get(worker.preload) is worker:
            del _kept[worker.preload]
    worker.stop()


def _call_kept(preload: str, folder: Path, what: str, timeout: float, idle_limit: float) -> tuple[int, str]:
    """Answer the request in ``folder`` in the kept worker; a worker that crashed, hung or grew
    past the memory mark is retired, and the next call starts a new one."""
    with _worker_lock(preload):
        worker = _live_worker(preload)
        try:
            returncode, stderr = worker.call(folder, what, timeout, idle_limit)
        except StepFailed:  # timed out or hung: it is killed with the call
            _retire(worker)
            raise
        if returncode != 0 or worker.rss() > _rss_limit():
            _retire(worker)
        return returncode, stderr


def _rss_limit() -> int:
    try:
        return int(os.environ["QCHECK_WORKER_MAX_RSS_MB"]) * 1024**2
    except (KeyError, ValueError):
        return KEPT_RSS_LIMIT


def _status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` in bytes (0 when not known)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


# Kept workers are started from one thread that lives as long as the process: the kernel sends a
# child its PR_SET_PDEATHSIG signal when the *thread* that started it ends, so a worker started
# from a short-lived thread (the one compiling for Vela) would be killed with that thread.
_spawns: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], queue.Queue[Any]]] = queue.Queue()
_spawner: list[threading.Thread] = []


def _spawn(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    with _kept_lock:
        if not _spawner:
            thread = threading.Thread(target=_spawn_forever, name="qcheck-spawner", daemon=True)
            thread.start()
            _spawner.append(thread)
    reply: queue.Queue[Any] = queue.Queue(maxsize=1)
    _spawns.put((lambda: subprocess.Popen(command, **options), reply))
    outcome = reply.get()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome  # type: ignore[no-any-return]


def _spawn_forever() -> None:
    while True:
        start, reply = _spawns.get()
        try:
            reply.put(start())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            reply.put(exc)


# -- the temporary folders ----------------------------------------------------------------------------

_run_lock = threading.Lock()
_run: list[Path] = []  # this process's run folder, made on first use


def _run_folder() -> Path:
    """This process's folder for its children's files (made on first use, removed at exit)."""
    with _run_lock:
        if _run and _run[0].is_dir():
            return _run[0]
        for _ in range(3):  # another process may remove the shared root when it empties
            root = _temporary_root()
            if root is None:  # the shared root is not safe to use: a private folder, removed at exit
                folder, lock = Path(tempfile.mkdtemp(prefix="qcheck-")), None
                break
            try:
                _remove_stale_runs(root)
                folder, lock = _new_run(root)
                break
            except FileNotFoundError:
                continue
        else:
            folder, lock = Path(tempfile.mkdtemp(prefix="qcheck-")), None
        _run[:] = [folder]
        atexit.register(_remove_run, folder, lock)
        return folder


def _temporary_root() -> Path | None:
    """``<temp>/qcheck-<uid>``: a real folder of this user that only it can enter, or None."""
    root = Path(tempfile.gettempdir()) / _ROOT_NAME.format(uid=os.getuid())
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(root)
    except OSError:
        return None
    # Someone else's folder or a link planted in a shared /tmp is never used (nor anything in it).
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return root


def _new_run(root: Path) -> tuple[Path, int]:
    """A run folder holding a locked lock file: the lock says its process is alive."""
    staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    lock = os.open(staging / _LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    folder = root / f"{_RUN_PREFIX}{os.getpid()}-{staging.name[len('.new-'):]}"
    os.rename(staging, folder)  # only a locked run folder ever carries the run- name
    return folder, lock


def _remove_stale_runs(root: Path) -> None:
    """Remove the run folders of processes that died without removing them (killed, crashed).

    A folder is stale when nobody holds its lock: the kernel releases a lock when its process
    dies, whatever killed it. Only real folders named like qcheck's, owned by this user, are
    touched, and no link is followed.
    """
    for entry in os.scandir(root):
        if not entry.name.startswith(_RUN_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            lock = os.open(Path(entry.path) / _LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)  # its process is alive
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(lock)


def _remove_run(folder: Path, lock: int | None) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if lock is not None:
        os.close(lock)
        # The shared root goes too once no run is left in it (rmdir refuses a folder that is
        # not empty); a process making its run folder at that moment tries again (_run_folder).
        with contextlib.suppress(OSError):
            folder.parent.rmdir()


def _crash_message(what: str, returncode: int, stderr: str) -> str:
    cause = crashed(-returncode) if returncode < 0 else f"exited with code {returncode}"
    tail = "\n    ".join(_meaningful_lines(stderr)[-_TAIL_LINES:])
    return f"{what} {cause}" + (f":\n    {tail}" if tail else "")


def _meaningful_lines(stderr: str) -> list[str]:
    """The child's stderr without TensorFlow's log noise and Python's warnings: what is left
    (a traceback, a failed check, an error line) says what went wrong."""
    lines: list[str] = []
    warning = False
    for line in stderr.splitlines():
        continued, warning = warning and line[:1].isspace(), bool(_PYTHON_WARNING.match(line))
        if (line.strip() and not warning and not continued and not _LOG_NOISE.match(line)
                and not any(noise in line.lower() for noise in _NOISE)):
            lines.append(line)
    return lines
