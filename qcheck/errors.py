"""Errors that qcheck shows to users: each names the file and the problem."""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable
from pathlib import Path


class QcheckError(Exception):
    """A problem with something the user gave qcheck (a model, a data file, a suite).

    The message is shown as it is, without a traceback from qcheck's insides, so it must
    say which file is wrong, what is wrong with it and, where it can, what to do.
    """

    def __init__(self, path: str | Path | None, problem: str, hint: str = "") -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.path}: {self.problem}" if self.path else self.problem
        return f"{head}\n  hint: {self.hint}" if self.hint else head


class StepFailed(Exception):
    """A pipeline step (conversion, interpreter, Vela) failed for one model.

    Checks that need the step fail with this message; other checks and models go on.
    """


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``choices`` is close to ``word``, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def crashed(signum: int) -> str:
    """How a child process killed by signal ``signum`` ended, in words (children of every kind:
    qcheck's own workers and Vela)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    if name == "SIGKILL":
        return f"crashed with {name} (killed, most likely by the system because memory ran out)"
    return f"crashed with {name}"
