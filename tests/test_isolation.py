"""Native steps run in child processes: a crash, a hang or an error there is reported, not fatal."""

from __future__ import annotations

import pytest

from qcheck.errors import QcheckError, StepFailed
from qcheck.isolation import call_isolated


def test_results_come_back_from_the_child() -> None:
    assert call_isolated("math:hypot", 3.0, 4.0, what="hypot") == 5.0


def test_a_crash_is_reported_with_its_signal() -> None:
    with pytest.raises(StepFailed, match=r"running the model crashed with SIGABRT"):
        call_isolated("os:abort", what="running the model")


def test_a_hang_is_stopped_at_the_time_limit() -> None:
    with pytest.raises(StepFailed, match=r"converting m.keras did not finish within 1 s.*--qcheck-timeout"):
        call_isolated("time:sleep", 30, what="converting m.keras", timeout=1)


def test_an_exception_in_the_child_keeps_its_text() -> None:
    with pytest.raises(StepFailed, match=r"reading failed: ValueError: invalid literal"):
        call_isolated("builtins:int", "not a number", what="reading")


def test_a_user_facing_error_crosses_the_boundary_intact() -> None:
    with pytest.raises(QcheckError) as info:
        call_isolated("qcheck.data:load_npz", "/nonexistent/val.npz", what="loading")
    assert info.value.path == "/nonexistent/val.npz" and info.value.problem == "data file does not exist"
