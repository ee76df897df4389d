"""Run native steps (conversion, the interpreter) in a child process.

Real models crash the TFLite runtime (SIGABRT or SIGSEGV after ``invoke()`` returns), hang, or
exhaust memory. In a child process that costs the checks that needed the step, with the signal
and the model named, and nothing else: the session and every other model go on.

The request and the answer travel as pickles through files in a private temporary folder that
is removed afterwards. Both ends are qcheck's own code; nothing the user gave is unpickled.

Memory: no limit is set on the child. ``RLIMIT_AS`` cannot be used (TensorFlow reserves
gigabytes of address space it never touches) and ``RLIMIT_DATA`` counts every thread's stack:
under it TensorFlow's import aborts (``pthread_create`` fails) or spins, measured with
TensorFlow 2.21. Instead the child volunteers for the kernel's out-of-memory killer
(:mod:`qcheck.worker`), so when memory runs out it is the step's child that is killed
(SIGKILL), reported as such, and the session goes on.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from qcheck.errors import QcheckError, StepFailed

DEFAULT_TIMEOUT = 900.0
_TAIL_LINES = 6
# Lines every child prints that say nothing about what went wrong.
_NOISE = ("cuda", "created tensorflow lite xnnpack delegate")


def call_isolated(function: str, *args: Any, what: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
    """Call ``module:function`` with the arguments in a fresh Python process and return its result.

    A QcheckError raised there is raised here as it was; any other exception, a crash, a
    timeout or a process killed for memory becomes StepFailed naming ``what``.
    """
    with tempfile.TemporaryDirectory(prefix="qcheck-") as tmp:
        request, answer = Path(tmp) / "request.pickle", Path(tmp) / "answer.pickle"
        request.write_bytes(pickle.dumps((function, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "qcheck.worker", str(request), str(answer)],
                capture_output=True, text=True, errors="replace", timeout=timeout, env=env, cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{what} did not finish within {timeout:g} s and was stopped "
                             "(raise the limit with --qcheck-timeout)") from None
        if proc.returncode != 0 or not answer.exists():
            raise StepFailed(_crash_message(what, proc.returncode, proc.stderr))
        ok, value = pickle.loads(answer.read_bytes())
    if ok:
        return value
    kind, payload = value
    if kind == "QcheckError":
        raise QcheckError(*payload)
    raise StepFailed(f"{what} failed: {payload}")


def _crash_message(what: str, returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        cause = f"crashed with {name}"
        if name == "SIGKILL":
            cause += " (killed, most likely by the system because memory ran out)"
    else:
        cause = f"exited with code {returncode}"
    lines = [line for line in stderr.splitlines()
             if line.strip() and not any(noise in line.lower() for noise in _NOISE)]
    tail = "\n    ".join(lines[-_TAIL_LINES:])
    return f"{what} {cause}" + (f":\n    {tail}" if tail else "")
