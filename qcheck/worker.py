"""The child side of :mod:`qcheck.isolation`.

``python -m qcheck.worker FOLDER PARENT_PID`` answers one request: it reads
``FOLDER/request.npz`` (a function's name and its arguments), calls the function and writes
``FOLDER/answer.npz``, both in :mod:`qcheck.codec`'s format: no pickles either way.

``python -m qcheck.worker --serve FOLDER PARENT_PID REQUESTS ANSWERS PRELOAD`` is a kept
worker: it imports what ``PRELOAD`` names (TensorFlow and Keras for conversions) once, then
answers requests one after another. Each request is the path of a call folder, one line on
the ``REQUESTS`` pipe; when its ``answer.npz`` is written the worker says ``done`` on the
``ANSWERS`` pipe. Each call runs as it would in a fresh process: in its own folder (the
current folder and every temporary file), after Keras's global state is cleared.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
DONE = b"done\n"


def main(folder: Path, parent: int) -> None:
    _die_with(parent)
    _first_to_go_when_memory_runs_out()
    answer(folder)


def serve(folder: Path, parent: int, requests: int, answers: int, preload: str) -> None:
    """Answer the call folders named on the ``requests`` pipe until it closes."""
    _die_with(parent)
    _first_to_go_when_memory_runs_out()
    _preload(preload)
    with os.fdopen(requests, "rb") as incoming, os.fdopen(answers, "wb", buffering=0) as outgoing:
        for line in incoming:
            call = Path(os.fsdecode(line.rstrip(b"\n")))
            _enter(call)
            _reset()
            answer(call)
            sys.stdout.flush()
            sys.stderr.flush()
            outgoing.write(DONE)
            _enter(folder)


def answer(folder: Path) -> None:
    """Read the request in ``folder``, call its function, write the answer there."""
    from qcheck import codec
    from qcheck.errors import QcheckError
    from qcheck.isolation import ANSWER, REQUEST, exchanged_classes

    function, args, kwargs = codec.unpack((folder / REQUEST).read_bytes(), exchanged_classes())
    module_name, _, name = function.partition(":")
    result: tuple[bool, Any]
    try:
        result = (True, getattr(importlib.import_module(module_name), name)(*args, **kwargs))
    except QcheckError as exc:
        result = (False, ("QcheckError", (exc.path, exc.problem, exc.hint)))
    except MemoryError as exc:
        result = (False, ("Exception", f"ran out of memory ({str(exc) or 'MemoryError'})"))
    except Exception as exc:  # reported to the parent as this step's failure
        traceback.print_exc()
        result = (False, ("Exception", f"{type(exc).__name__}: {exc}"))
    try:
        packed = codec.pack(result, exchanged_classes())
    except TypeError as exc:
        packed = codec.pack((False, ("Exception", f"its result cannot be sent back ({exc})")), exchanged_classes())
    (folder / ANSWER).write_bytes(packed)


def _preload(what: str) -> None:
    """Import what the kept worker's calls need, before the first request arrives (the import
    overlaps the parent's own work, e.g. loading the data)."""
    if what == "tensorflow":
        from qcheck.tflite import convert

        tf = convert._quiet_tensorflow()
        import keras

        tf.lite.TFLiteConverter  # its lazily imported modules, the converter's bulk
        keras.Model  # noqa: B018


def _enter(folder: Path) -> None:
    """Make ``folder`` the current folder and the place of every temporary file, as the
    environment of a fresh worker makes it (TensorFlow's autograph files included)."""
    tmp = str(folder)
    for name in ("TMPDIR", "TEMP", "TMP"):
        os.environ[name] = tmp
    tempfile.tempdir = tmp  # Python remembers the temporary folder it found first
    os.chdir(tmp)


def _reset() -> None:
    """Clear what one call leaves behind that would change the next call's result.

    Keras numbers the layers and models it creates process-wide (``input_layer_1``,
    ``functional_2``); the wrapper a conversion builds is named by those counters, and its names
    end up in the ``.tflite``'s tensor names, so without ``clear_session`` the second model
    converted in a process differs from the same model converted in a fresh one.
    """
    for name in ("keras", "tf_keras"):
        module = sys.modules.get(name)
        if module is not None:
            module.backend.clear_session()
    gc.collect()


def _die_with(parent: int) -> None:
    """Be killed when the process that started this one dies, even by SIGKILL (Linux).

    The parent may already be gone by the time the request is made: then go at once. (The
    kernel sends the signal when the *thread* that started this process ends, which is why
    :mod:`qcheck.isolation` starts kept workers from a thread that lives as long as its process.)
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


def _first_to_go_when_memory_runs_out() -> None:
    """Make the kernel's out-of-memory killer pick this child before the pytest session.

    Linux lets any process raise its own ``oom_score_adj``; elsewhere nothing changes.
    """
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        main(Path(sys.argv[1]), int(sys.argv[2]))
