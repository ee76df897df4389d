"""An interpreter whose reset restarts it, for models whose state lives in resource variables.

A model's resource variables (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE: a stateful Keras RNN's
state, a ``tf.Variable`` the model assigns) get their initial value from the model's CALL_ONCE
initializer subgraph, which an interpreter runs once, on its first ``invoke()``. Neither runtime's
reset gives that value back: LiteRT's ``reset_all_variables()`` resets variable tensors only and
leaves resource variables as the last sample left them; TFLite Micro's ``reset()`` fills them with
their zero point (``MicroResourceVariables::ResetAll``) and does not run the initializer again. A
new interpreter is the one initial state both runtimes give, so :class:`Restarting` makes one on
reset, once the current one has run.

The cost is one interpreter per sample, paid only by models with resource variables evaluated with
``stateful = "reset"``. Measured on models of 2 to 325 KB (hello_world to MLPerf Tiny's VWW): a new
LiteRT interpreter takes 0.1 to 2 ms (an invoke: up to 0.3 ms), a new TFLite Micro one 5 to 40 ms
(an invoke: up to 25 ms): per 1,000 samples, up to 2 s more in LiteRT and 40 s in TFLite Micro.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class Restarting:
    """Stands in for a LiteRT or TFLite Micro interpreter: ``reset_all_variables()`` (LiteRT's name)
    and ``reset()`` (TFLite Micro's) replace a used interpreter with a new one from ``make``, with
    the inputs already set on it; every other attribute is the current interpreter's."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._it = make()
        self._used = False
        # Inputs set since the interpreter was made, re-set on a new one: LiteRT's callers may set
        # the inputs and then reset, just before the invoke.
        self._inputs: dict[tuple[str, int], np.ndarray] = {}

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        self._inputs[("set_tensor", index)] = np.array(value)
        self._it.set_tensor(index, value)

    def set_input(self, value: np.ndarray, position: int) -> None:
        self._inputs[("set_input", position)] = np.array(value)
        self._it.set_input(value, position)

    def invoke(self) -> None:
        self._used = True
        self._it.invoke()

    def reset_all_variables(self) -> None:
        self._restart()
        self._it.reset_all_variables()  # variable tensors too, for a model with both

    def reset(self) -> None:
        self._restart()
        self._it.reset()

    def _restart(self) -> None:
        if not self._used:
            return
        self._it, self._used = self._make(), False
        for (method, key), value in self._inputs.items():
            if method == "set_tensor":
                self._it.set_tensor(key, value)
            else:
                self._it.set_input(value, key)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never this object's own, before __init__ set them
            raise AttributeError(name)
        return getattr(self._it, name)
