"""A model's steps are made once, failures included, also when two threads ask at once."""

from __future__ import annotations

import threading
import time

import pytest

from qcheck.errors import StepFailed
from qcheck.pipeline import Memo


def test_two_threads_asking_for_one_step_make_it_once() -> None:
    memo, made, release = Memo(), [], threading.Event()

    def make() -> str:
        made.append(threading.current_thread().name)
        assert release.wait(10)
        return "value"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(memo.get("step", make)), name=f"t{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # both threads are inside get(): one makes, the other waits for it
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["value", "value"] and len(made) == 1


def test_a_step_being_made_does_not_hold_up_other_steps() -> None:
    # Vela compiles on a background thread while the main thread evaluates the model.
    memo, other_done = Memo(), threading.Event()

    def slow() -> str:
        assert other_done.wait(10), "the other step waited for this one"
        return "slow"

    background = threading.Thread(target=lambda: memo.get("vela", slow))
    background.start()
    time.sleep(0.1)
    assert memo.get("evaluation", lambda: "fast") == "fast"
    other_done.set()
    background.join(10)
    assert memo.made("vela") == "slow"


def test_a_failed_step_is_remembered_and_raised_to_every_caller() -> None:
    memo, calls = Memo(), []

    def fail() -> None:
        calls.append(1)
        raise StepFailed("converting m.keras crashed")

    for _ in range(2):
        with pytest.raises(StepFailed, match="crashed"):
            memo.get("quantized", fail)
    assert calls == [1] and memo.made("quantized") is None


def test_an_unexpected_error_is_not_remembered() -> None:
    # A bug, or a background thread interrupted: the next caller makes the step again.
    memo, calls = Memo(), []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("interrupted")
        return "value"

    with pytest.raises(RuntimeError):
        memo.get("step", flaky)
    assert memo.get("step", flaky) == "value" and len(calls) == 2
