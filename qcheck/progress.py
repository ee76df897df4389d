"""Progress on the terminal: which model, which step, how many samples, while checks run.

Conversion, evaluation and Vela can take minutes on a real model, and pytest shows nothing
until the item finishes. :meth:`Progress.step` writes one line per step through pytest's
terminal reporter, between the item lines, and only where that cannot garble anything:

- only with ``-v`` (verbosity >= 1): the default and ``-q`` output stays as pytest prints it;
- never on a pytest-xdist worker, whose terminal output is not the user's terminal;
- with output capturing suspended for the line, so that it reaches the terminal at once and
  not the captured output of the item that happens to be running;
- from the main thread only: a step taken on a background thread (Vela compiling ahead) is
  written by the main thread's next step, as pytest's capturing is not thread-safe.

With ``-v`` pytest has printed the item's name when a step starts; the step goes on a line of
its own below it, left open so that pytest's verdict starts the next line without a blank one::

    qcheck::accuracy_drop[m.keras]
    qcheck: m.keras: converting
    qcheck::accuracy_drop[m.keras] PASSED
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest


class Progress:
    """Where the pipeline and the session say what they are doing; silent where it must be."""

    def __init__(self, config: pytest.Config | None = None) -> None:
        self._config = config
        self._line_open = False
        self._deferred: list[str] = []  # steps taken on background threads, not yet written

    @property
    def enabled(self) -> bool:
        config = self._config
        if config is None or hasattr(config, "workerinput"):
            return False
        return config.get_verbosity() >= 1 and self._reporter() is not None

    def step(self, model: str, what: str, done: int | None = None, total: int | None = None) -> None:
        """Say that ``model`` is at step ``what`` (e.g. "converting"), with ``done`` of ``total``
        samples (or items) when given: ``qcheck: m.keras: evaluating (500/1597)``."""
        if not self.enabled:
            return
        line = format_step(model, what, done, total)
        if threading.current_thread() is not threading.main_thread():
            self._deferred.append(line)  # list.append is atomic
            return
        reporter = self._reporter()
        assert reporter is not None
        lines = []
        while self._deferred:
            lines.append(self._deferred.pop(0))
        lines.append(line)
        with self._capture_suspended():
            for text in lines:
                # pytest ends an open line before it writes (currentfspath is then None); it does not
                # know about ours, so a step right after a step ends the previous one itself.
                if self._line_open and getattr(reporter, "currentfspath", 0) is None:
                    reporter.write("\n")
                reporter.ensure_newline()
                reporter.write(text, flush=True)
                self._line_open = True

    def _reporter(self) -> Any:
        assert self._config is not None
        return self._config.pluginmanager.get_plugin("terminalreporter")

    def _capture_suspended(self) -> AbstractContextManager[None]:
        assert self._config is not None
        capture = self._config.pluginmanager.get_plugin("capturemanager")
        if capture is None:
            return nullcontext()
        # The same call pytest's live logging uses to write while a test runs.
        manager: AbstractContextManager[None] = capture.global_and_fixture_disabled()
        return manager


def format_step(model: str, what: str, done: int | None = None, total: int | None = None) -> str:
    """One progress line, without a trailing newline."""
    count = ""
    if done is not None:
        count = f" ({done}/{total})" if total is not None else f" ({done})"
    return f"qcheck: {model}: {what}{count}"
