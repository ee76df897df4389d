"""Child processes that hang, are killed, die with their parent or leave files (issue 13, items 10-12, 15).

The misbehaving steps are functions in tests/child_hooks.py, run by qcheck's own worker in a real
child process. Tests that kill a process start it here, bound every wait, and kill whatever is
left when they end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REAL, run_qcheck

from qcheck.errors import StepFailed
from qcheck.isolation import call_isolated

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def hooks_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children inherit the environment: put tests/ on their path so they find child_hooks."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped, as in a container without init, counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture
def reaper() -> Iterator[list[int]]:
    """Pids to kill when the test ends, whatever happened (an orphan must not outlive a failure)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _announced(path: Path, seconds: float = 120) -> list[str]:
    assert _wait_until(path.exists, seconds), f"the child did not start within {seconds} s"
    return path.read_text().split("\n")


def _parent(tmpdir: Path, code: str) -> subprocess.Popen[str]:
    """A Python process that uses qcheck as the pytest session does, with its own TMPDIR."""
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen[str], seconds: float = 120) -> str:
    out, _ = proc.communicate(timeout=seconds)
    assert proc.returncode == 0, out
    return out


# -- item 12: no pickles between parent and child -------------------------------------------------


def test_the_exchange_with_a_child_is_not_a_pickle() -> None:
    files = call_isolated("child_hooks:files_here", what="listing")
    assert "request.npz" in files, files
    for name, head in files.items():
        assert not head.startswith(b"\x80"), f"{name} is a pickle"
    assert files["request.npz"].startswith(b"PK")  # an .npz archive, read with allow_pickle=False


def test_values_cross_the_boundary_intact(tmp_path: Path) -> None:
    from qcheck.lazy_arrays import LazyArray

    np.save(tmp_path / "x.npy", np.arange(24, dtype=np.float32).reshape(4, 6))
    lazy = LazyArray("npy", (str(tmp_path / "x.npy"),), (4,), (6,), np.array([3, 1]))
    sent = (tmp_path / "m.keras", b"\x00\xffbytes", np.arange(6, dtype=np.int8).reshape(2, 3), lazy)
    options: dict[str, Any] = {"steps": 1.5, "names": ("a", "b"), "nested": {1: [None, True, "text"]}}
    args, kwargs = call_isolated("child_hooks:echo", *sent, what="echo", **options)
    assert args[0] == tmp_path / "m.keras" and isinstance(args[0], Path)
    assert args[1] == b"\x00\xffbytes"
    assert args[2].dtype == np.int8 and np.array_equal(args[2], sent[2])
    assert isinstance(args[3], LazyArray) and np.array_equal(np.asarray(args[3]), [np.arange(18, 24), np.arange(6, 12)])
    assert kwargs == options


def test_a_value_qcheck_does_not_exchange_is_refused() -> None:
    with pytest.raises(StepFailed, match=r"making it failed: its result cannot be sent back \(_NotSendable"):
        call_isolated("child_hooks:unsendable", what="making it")


def test_a_planted_pickle_as_request_runs_no_code(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    (tmp_path / "request.npz").write_bytes(pickle.dumps(Payload()))
    proc = subprocess.run([sys.executable, "-m", "qcheck.worker", str(tmp_path), str(os.getpid())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "allow_pickle=False" in proc.stderr
    assert not marker.exists() and not (tmp_path / "answer.npz").exists()


def test_a_child_whose_parent_is_already_gone_does_nothing(tmp_path: Path) -> None:
    from qcheck import codec
    from qcheck.isolation import exchanged_classes

    marker = tmp_path / "announce"
    request = codec.pack(("child_hooks:leave_files_and_wait", [marker], {}), exchanged_classes())
    (tmp_path / "request.npz").write_bytes(request)
    # Started by this process, but told its parent was another one (that process died first).
    proc = subprocess.run([sys.executable, "-m", "qcheck.worker", str(tmp_path), "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not marker.exists()


# -- item 11: a child that makes no progress is hung ---------------------------------------------


def test_a_child_that_uses_no_cpu_is_stopped_as_hung_long_before_the_time_limit(
        tmp_path: Path, reaper: list[int]) -> None:
    announce = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(StepFailed) as info:
        call_isolated("child_hooks:deadlock", announce, what="running m.tflite in the LiteRT interpreter",
                      timeout=300, idle_limit=2)
    elapsed = time.monotonic() - start
    pid = int(_announced(announce, 0)[0])
    reaper.append(pid)
    assert str(info.value) == ("running m.tflite in the LiteRT interpreter hung: its process used no CPU time "
                               "for 2 s (deadlocked, or waiting for something that never comes) and was stopped")
    assert elapsed < 60, elapsed  # far from the 300 s limit
    assert not _alive(pid)


def test_a_child_that_computes_keeps_its_full_time() -> None:
    # Three seconds of work, checked every quarter second against a one-second idle limit.
    rounds = call_isolated("child_hooks:compute", 3.0, what="converting big.keras", timeout=120, idle_limit=1)
    assert rounds > 0


def test_a_child_that_computes_past_the_time_limit_is_still_stopped() -> None:
    with pytest.raises(StepFailed, match=r"converting big.keras did not finish within 2 s.*--qcheck-timeout"):
        call_isolated("child_hooks:compute", 60.0, what="converting big.keras", timeout=2, idle_limit=1)


# -- item 12: children die with their parent, their files go with them ---------------------------


def _root(tmpdir: Path) -> Path:
    return tmpdir / f"qcheck-{os.getuid()}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_parent_leaves_no_child_and_the_next_run_removes_its_files(
        tmp_path: Path, reaper: list[int], sig: signal.Signals) -> None:
    tmpdir, announce = tmp_path / "tmp", tmp_path / "announce"
    parent = _parent(tmpdir, f"""
        from pathlib import Path
        from qcheck.isolation import call_isolated
        call_isolated("child_hooks:leave_files_and_wait", Path({str(announce)!r}), what="converting", timeout=600)
    """)
    reaper.append(parent.pid)
    child_pid, autograph, cwd = _announced(announce)[:3]
    reaper.append(int(child_pid))
    # TensorFlow's files go to the child's temporary folder: inside this run's folder, not TMPDIR itself.
    assert Path(autograph).parent == Path(cwd) and Path(cwd).parent.parent == _root(tmpdir), autograph
    assert Path(autograph).exists()

    parent.send_signal(sig)
    parent.communicate(timeout=60)
    assert _wait_until(lambda: not _alive(int(child_pid)), 30), "the child outlived its killed parent"
    assert Path(autograph).exists()  # a killed parent removes nothing: the next run does

    _finish(_parent(tmpdir, """
        from qcheck.isolation import call_isolated
        assert call_isolated("math:hypot", 3.0, 4.0, what="hypot") == 5.0
    """))
    assert not Path(autograph).exists()
    # The finished run removed its own folder too, and the shared root with it, once empty.
    assert list(tmpdir.iterdir()) == []


def test_cleaning_up_touches_only_what_qcheck_made(tmp_path: Path) -> None:
    import fcntl

    tmpdir = tmp_path / "tmp"
    root = _root(tmpdir)
    root.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim"  # the user's folder, with what a run folder holds
    victim.mkdir()
    (victim / ".lock").write_text("")
    (victim / "model.keras").write_text("precious")
    (root / "run-planted-link").symlink_to(victim)
    (root / "notes").mkdir()
    (root / "notes" / "keep.txt").write_text("not qcheck's")
    alive = root / "run-alive"  # a run of a living process: its lock is held
    alive.mkdir()
    (alive / "answer.npz").write_text("in use")
    with open(alive / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        stale = root / "run-stale"  # a killed run: a lock nobody holds
        stale.mkdir()
        (stale / ".lock").write_text("")
        (stale / "call-x").mkdir()
        (stale / "call-x" / "__autograph_generated_file1.py").write_text("")
        _finish(_parent(tmpdir, """
            from qcheck.isolation import call_isolated
            assert call_isolated("math:hypot", 3.0, 4.0, what="hypot") == 5.0
        """))
        assert (alive / "answer.npz").read_text() == "in use"
    assert not stale.exists()
    assert (victim / "model.keras").read_text() == "precious" and (victim / ".lock").exists()
    assert (root / "run-planted-link").is_symlink() and (root / "notes" / "keep.txt").exists()


def test_a_temporary_root_that_is_a_link_is_not_used(tmp_path: Path) -> None:
    tmpdir, victim = tmp_path / "tmp", tmp_path / "victim"
    victim.mkdir(mode=0o700)
    tmpdir.mkdir()
    _root(tmpdir).symlink_to(victim)
    out = _finish(_parent(tmpdir, """
        import tempfile
        from qcheck.isolation import call_isolated
        print(call_isolated("tempfile:gettempdir", what="where"))
    """))
    assert list(victim.iterdir()) == []  # nothing made in (or removed from) the link's target
    assert str(victim) not in out and str(tmpdir) in out
    assert [p.name for p in tmpdir.iterdir()] == [_root(tmpdir).name]  # the private folder went at exit


# -- item 15: an out-of-memory kill says so, without TensorFlow's log noise -----------------------


def test_an_oom_kill_message_ends_with_what_is_wrong() -> None:
    with pytest.raises(StepFailed) as info:
        call_isolated("child_hooks:killed_after_tensorflow_logs", what="converting big.keras", timeout=600)
    assert str(info.value) == ("converting big.keras crashed with SIGKILL (killed, most likely by the system "
                               "because memory ran out)")


# -- item 10: --qcheck-timeout reaches the property checks' children -------------------------------


def test_the_property_checks_stop_at_the_qcheck_timeout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "val.npz", x=rng.random((20, 96, 96, 3), dtype=np.float32),
             y=rng.integers(0, 2, 20))
    run = run_qcheck(
        tmp_path,
        f"--qcheck-model={REAL / 'mlperf_tiny' / 'vww_96_int8.tflite'}",
        f"--qcheck-reference={REAL / 'mlperf_tiny' / 'vww_96_float.tflite'}",
        "--qcheck-data=val.npz", "--qcheck-no-cache", "--qcheck-timeout=3",
        # Each takes a minute or more at this budget, far past the limit.
        "--qcheck-set", "robustness.enabled=true", "--qcheck-set", "robustness.examples=2000",
        "--qcheck-set", "consistency.enabled=true", "--qcheck-set", "consistency.examples=2000",
        "-k", "robustness or consistency", timeout=300,
    )
    robustness = run.check("vww_96_int8.tflite", "robustness")
    consistency = run.check("vww_96_int8.tflite", "consistency")
    assert robustness["passed"] is False and consistency["passed"] is False, json.dumps(run.report)[:2000]
    assert "searching inputs that break" in robustness["message"]
    assert "perturbing evaluation samples of" in consistency["message"]
    for check in (robustness, consistency):
        assert "did not finish within 3 s and was stopped (raise the limit with --qcheck-timeout)" in check["message"]
