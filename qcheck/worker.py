"""The child side of :mod:`qcheck.isolation`: ``python -m qcheck.worker REQUEST ANSWER``."""

from __future__ import annotations

import importlib
import pickle
import sys
import traceback
from pathlib import Path

from qcheck.errors import QcheckError


def main(request: Path, answer: Path) -> None:
    function, args, kwargs = pickle.loads(request.read_bytes())
    module_name, _, name = function.partition(":")
    try:
        result = (True, getattr(importlib.import_module(module_name), name)(*args, **kwargs))
    except QcheckError as exc:
        result = (False, ("QcheckError", (exc.path, exc.problem, exc.hint)))
    except Exception as exc:  # reported to the parent as this step's failure
        traceback.print_exc()
        result = (False, ("Exception", f"{type(exc).__name__}: {exc}"))
    answer.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
