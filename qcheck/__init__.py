"""qcheck: quantize Keras models to full-integer TFLite and gate CI on the result.

The pytest plugin lives in :mod:`qcheck.plugin`. The Python API (:func:`quantize`, one
``assert_<check>`` per registered check, :mod:`qcheck.strategies`) is loaded on first use, so
that ``import qcheck`` stays light; everything heavy (TensorFlow, LiteRT, Vela, pandas) is
imported only where it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_SUBMODULES = {"strategies"}
_API = {"quantize", "run_check", "assert_check", "as_dataset"}

if TYPE_CHECKING:
    from qcheck import strategies as strategies
    from qcheck.api import AssertCheck
    from qcheck.api import as_dataset as as_dataset
    from qcheck.api import assert_check as assert_check
    from qcheck.api import quantize as quantize
    from qcheck.api import run_check as run_check

    # What type checkers see: every other name is an ``assert_<check>`` (made from the registry).
    def __getattr__(name: str) -> AssertCheck: ...

else:

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            return importlib.import_module(f"qcheck.{name}")
        if name in _API or name.startswith("assert_"):
            return getattr(importlib.import_module("qcheck.api"), name)
        raise AttributeError(f"module 'qcheck' has no attribute {name!r}")


def __dir__() -> list[str]:
    from qcheck.checks import registry

    return sorted({*globals(), *_SUBMODULES, *_API, *(f"assert_{name}" for name in registry())})
