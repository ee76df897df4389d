"""The child side of :mod:`qcheck.isolation`: ``python -m qcheck.worker REQUEST ANSWER``."""

from __future__ import annotations

import importlib
import pickle
import sys
import traceback
from pathlib import Path

from qcheck.errors import QcheckError


def main(request: Path, answer: Path) -> None:
    _first_to_go_when_memory_runs_out()
    function, args, kwargs = pickle.loads(request.read_bytes())
    module_name, _, name = function.partition(":")
    try:
        result = (True, getattr(importlib.import_module(module_name), name)(*args, **kwargs))
    except QcheckError as exc:
        result = (False, ("QcheckError", (exc.path, exc.problem, exc.hint)))
    except MemoryError as exc:
        result = (False, ("Exception", f"ran out of memory ({str(exc) or 'MemoryError'})"))
    except Exception as exc:  # reported to the parent as this step's failure
        traceback.print_exc()
        result = (False, ("Exception", f"{type(exc).__name__}: {exc}"))
    answer.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


def _first_to_go_when_memory_runs_out() -> None:
    """Make the kernel's out-of-memory killer pick this child before the pytest session.

    Linux lets any process raise its own ``oom_score_adj``; elsewhere nothing changes.
    """
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
