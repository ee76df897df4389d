"""The child side of :mod:`qcheck.isolation`: ``python -m qcheck.worker FOLDER PARENT_PID``.

Reads ``FOLDER/request.npz`` (a function's name and its arguments), calls the function and
writes ``FOLDER/answer.npz``, both in :mod:`qcheck.codec`'s format: no pickles either way.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def main(folder: Path, parent: int) -> None:
    _die_with(parent)
    _first_to_go_when_memory_runs_out()
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
        answer = codec.pack(result, exchanged_classes())
    except TypeError as exc:
        answer = codec.pack((False, ("Exception", f"its result cannot be sent back ({exc})")), exchanged_classes())
    (folder / ANSWER).write_bytes(answer)


def _die_with(parent: int) -> None:
    """Be killed when the process that started this one dies, even by SIGKILL (Linux).

    The parent may already be gone by the time the request is made: then go at once.
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
    main(Path(sys.argv[1]), int(sys.argv[2]))
