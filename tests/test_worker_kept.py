"""The kept conversion worker (issue 20, item 1): TensorFlow imported once per process, models
converted one after another in it, each as a fresh process would convert it, and the isolation
promises kept: a crash or hang fails that call only and a new worker serves the next one.

Conversions are real (TensorFlow in a child process; never in this one).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, run_qcheck, write

from qcheck.errors import StepFailed
from qcheck.isolation import call_isolated, kept_worker, start_kept, stop_kept

TF = "tensorflow"
PLAIN = "plain"  # a kept worker that preloads nothing: the protocol without TensorFlow's import


@pytest.fixture(autouse=True)
def no_worker_left() -> Iterator[None]:
    """Each test starts without kept workers and leaves none behind."""
    stop_kept()
    yield
    stop_kept()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Calibration and evaluation samples of the digits fixture."""
    x = np.load(FIXTURES / "digits.npz")["x"].astype(np.float32)
    return x[:60], x[60:100]


def _convert(model: str, data: tuple[np.ndarray, np.ndarray], kept: str) -> Any:
    calibration, evaluation = data
    return call_isolated("qcheck.tflite.convert:quantize", FIXTURES / model, calibration, evaluation,
                         what=f"converting {model}", kept=kept)


def _fingerprint(quantized: Any) -> tuple[str, str, str]:
    reference = hashlib.sha256()
    for name in sorted(quantized.reference.outputs):
        reference.update(name.encode() + quantized.reference.outputs[name].tobytes())
    return (hashlib.sha256(quantized.tflite).hexdigest(), hashlib.sha256(quantized.float_tflite).hexdigest(),
            reference.hexdigest())


def _worker_pid(kind: str) -> int:
    worker = kept_worker(kind)
    assert worker is not None and worker.alive()
    return worker.proc.pid


@pytest.mark.slow
def test_a_model_converted_second_in_the_kept_worker_is_byte_identical_to_a_fresh_process(digits: Any) -> None:
    fresh = _fingerprint(_convert("digits_cnn.keras", digits, kept=""))
    _convert("float_op.keras", digits, kept=TF)  # another model first: Keras's counters move on
    pid = _worker_pid(TF)
    second = _fingerprint(_convert("digits_cnn.keras", digits, kept=TF))
    third = _fingerprint(_convert("digits_cnn.keras", digits, kept=TF))
    assert _worker_pid(TF) == pid, "the three conversions were not served by one worker"
    assert second == fresh and third == fresh  # quantized bytes, float twin and float outputs alike


@pytest.mark.slow
def test_a_crash_in_the_kept_worker_fails_that_call_and_a_new_worker_converts_the_next_model(digits: Any) -> None:
    start_kept(TF)
    first = _worker_pid(TF)
    with pytest.raises(StepFailed, match=r"^converting m.keras crashed with SIGABRT"):
        call_isolated("os:abort", what="converting m.keras", kept=TF)
    assert kept_worker(TF) is None  # retired with the call
    quantized = _convert("digits_cnn.keras", digits, kept=TF)
    assert _worker_pid(TF) != first
    assert _fingerprint(quantized) == _fingerprint(_convert("digits_cnn.keras", digits, kept=""))


def test_a_call_past_the_time_limit_is_stopped_and_the_worker_replaced() -> None:
    start_kept(PLAIN)
    first = _worker_pid(PLAIN)
    with pytest.raises(StepFailed, match=r"converting m.keras did not finish within 1 s"):
        call_isolated("time:sleep", 30, what="converting m.keras", timeout=1, kept=PLAIN)
    assert not _exists(first)
    assert call_isolated("math:hypot", 3.0, 4.0, what="hypot", kept=PLAIN) == 5.0
    assert _worker_pid(PLAIN) != first


def test_a_call_that_uses_no_cpu_is_stopped_as_hung() -> None:
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"converting m.keras hung: its process used no CPU time for 1 s"):
        call_isolated("time:sleep", 60, what="converting m.keras", idle_limit=1, kept=PLAIN)
    assert time.monotonic() - started < 20
    assert call_isolated("math:hypot", 3.0, 4.0, what="hypot", kept=PLAIN) == 5.0


def test_an_error_in_a_call_keeps_the_worker_and_its_text() -> None:
    with pytest.raises(StepFailed, match=r"reading failed: ValueError: invalid literal"):
        call_isolated("builtins:int", "not a number", what="reading", kept=PLAIN)
    pid = _worker_pid(PLAIN)
    assert call_isolated("builtins:int", "7", what="reading", kept=PLAIN) == 7
    assert _worker_pid(PLAIN) == pid


def test_calls_run_in_their_own_folder_removed_after_the_call() -> None:
    made = call_isolated("tempfile:mkdtemp", what="making a folder", kept=PLAIN)
    here = call_isolated("os:getcwd", what="asking", kept=PLAIN)
    folder = Path(made).parent
    assert folder.name.startswith("call-") and not folder.exists()  # TMPDIR was the call's folder
    assert Path(here).name.startswith("call-") and Path(here) != folder


def test_a_worker_past_the_memory_mark_is_retired_after_its_call(monkeypatch: pytest.MonkeyPatch) -> None:
    assert call_isolated("math:hypot", 3.0, 4.0, what="hypot", kept=PLAIN) == 5.0
    kept = _worker_pid(PLAIN)  # under the default mark (3 GiB): kept
    assert call_isolated("math:hypot", 3.0, 4.0, what="hypot", kept=PLAIN) == 5.0
    assert _worker_pid(PLAIN) == kept
    monkeypatch.setenv("QCHECK_WORKER_MAX_RSS_MB", "1")  # any Python process is past 1 MB
    assert call_isolated("math:hypot", 3.0, 4.0, what="hypot", kept=PLAIN) == 5.0
    assert kept_worker(PLAIN) is None and not _exists(kept)


def test_a_worker_started_from_a_thread_that_ends_lives_on() -> None:
    # The kernel's parent-death signal follows the thread that started a child: a worker started
    # from a short-lived thread (Vela's) must not die with it.
    def first_call() -> None:  # answered: the worker has asked for its parent-death signal by now
        call_isolated("math:hypot", 3.0, 4.0, what="hypot", kept=PLAIN)

    thread = threading.Thread(target=first_call)
    thread.start()
    thread.join()
    pid = _worker_pid(PLAIN)
    time.sleep(0.5)
    assert call_isolated("math:hypot", 3.0, 4.0, what="hypot", kept=PLAIN) == 5.0
    assert _worker_pid(PLAIN) == pid


def test_a_worker_dies_with_its_session(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, sys, time
        from qcheck.isolation import kept_worker, start_kept
        start_kept("plain")
        print(kept_worker("plain").proc.pid, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        assert _exists(worker)
        proc.kill()
        proc.wait()
        assert _gone_within(worker, 10)
    finally:
        proc.kill()


@pytest.mark.slow
def test_in_a_session_a_killed_worker_fails_only_its_model_and_the_next_model_is_converted(tmp_path: Path) -> None:
    # The worker is killed with SIGSEGV when it begins its first call (the first model's
    # conversion: its current folder becomes the call's folder).
    watcher = write(tmp_path / "conftest.py", textwrap.dedent("""
        import os, signal, threading, time
        from pathlib import Path

        def _kill_first_call():
            end = time.monotonic() + 300
            while time.monotonic() < end:
                from qcheck.isolation import kept_worker
                worker = kept_worker("tensorflow")
                if worker is not None:
                    try:
                        if Path(os.readlink(f"/proc/{worker.proc.pid}/cwd")).name.startswith("call-"):
                            os.kill(worker.proc.pid, signal.SIGSEGV)
                            return
                    except OSError:
                        pass
                time.sleep(0.01)

        def pytest_sessionstart(session):
            threading.Thread(target=_kill_first_call, daemon=True).start()
    """))
    assert watcher.exists()
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
                     f"--qcheck-model={FIXTURES / 'float_op.keras'}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
                     "--qcheck-no-cache", "-p", "no:xdist")
    first = {check["name"]: check for check in run.model("digits_cnn.keras")["checks"]}
    assert first["fully_quantized"]["status"] == "error", run.stdout
    assert "converting" in first["fully_quantized"]["message"]
    assert "crashed with SIGSEGV" in first["fully_quantized"]["message"]
    second = {check["name"]: check["status"] for check in run.model("float_op.keras")["checks"]}
    assert second["fully_quantized"] == "failed" and second["accuracy_drop"] == "passed", run.stdout


@pytest.mark.slow
def test_a_warm_run_starts_no_conversion_worker(tmp_path: Path) -> None:
    probe = write(tmp_path / "conftest.py", textwrap.dedent("""
        from pathlib import Path

        def pytest_sessionfinish(session):
            from qcheck.isolation import kept_worker
            Path("worker.txt").write_text("started" if kept_worker("tensorflow") else "none")
    """))
    assert probe.exists()
    args = (f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
            f"--qcheck-cache-dir={tmp_path / 'cache'}", "-p", "no:xdist")
    cold = run_qcheck(tmp_path, *args)
    assert cold.returncode == 0 and (tmp_path / "worker.txt").read_text() == "started", cold.stdout
    warm = run_qcheck(tmp_path, *args)
    assert warm.returncode == 0 and (tmp_path / "worker.txt").read_text() == "none", warm.stdout
    assert "taken from the cache" in warm.stdout


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _exists(pid):
            return True
        time.sleep(0.1)
    return False



def test_a_worker_that_cannot_start_fails_the_call_with_the_reason(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    shim = tmp_path / "tensorflow"
    shim.mkdir()
    (shim / "__init__.py").write_text("raise ImportError('this TensorFlow is broken on purpose')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    start_kept(TF)  # started ahead, as for a model's data: it fails before the call reaches it
    time.sleep(1)
    with pytest.raises(StepFailed, match=r"(?s)converting m.keras exited with code 1.*broken on purpose"):
        call_isolated("math:hypot", 3.0, 4.0, what="converting m.keras", kept=TF)
    assert kept_worker(TF) is None
