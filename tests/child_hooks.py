"""Functions the tests run in qcheck's child processes (``call_isolated("child_hooks:...")``).

The child imports this module through PYTHONPATH (tests/test_hostile_children.py puts tests/ on
it). Each function behaves as a misbehaving step does: it blocks without using CPU, computes
for a while, leaves temporary files, or is killed the way the out-of-memory killer kills.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path


def _announce(path: Path, *lines: str) -> None:
    """Tell the test this child's pid (and more), atomically: it waits for the file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join([str(os.getpid()), *lines]) + "\n")
    os.rename(tmp, path)


def deadlock(announce: Path) -> None:
    """Wait forever on a lock nobody releases: a futex wait, no CPU used (a deadlocked allocator)."""
    _announce(announce)
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()


def compute(seconds: float) -> int:
    """Use the CPU for ``seconds`` (a slow step that is working) and return how many rounds it ran."""
    rounds, end = 0, time.process_time() + seconds
    while time.process_time() < end:
        rounds += 1
    return rounds


def leave_files_and_wait(announce: Path) -> None:
    """Write a temporary file as TensorFlow's autograph does, then wait (to be killed)."""
    handle, name = tempfile.mkstemp(prefix="__autograph_generated_file", suffix=".py")
    os.close(handle)
    _announce(announce, name, str(Path.cwd()))
    while True:
        time.sleep(1)


def files_here() -> dict[str, bytes]:
    """The files in the child's working folder (where the request is) and their first bytes."""
    return {p.name: p.read_bytes()[:8] for p in Path.cwd().iterdir() if p.is_file()}


class _NotSendable:
    pass


def unsendable() -> object:
    """A value of a class qcheck never exchanges."""
    return _NotSendable()


def echo(*args: object, **kwargs: object) -> tuple[object, ...]:
    """The arguments, as the child received them."""
    return args, kwargs


def killed_after_tensorflow_logs() -> None:
    """Convert a tiny model, printing TensorFlow's real log noise, then die as the OOM killer kills."""
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.full((1, 4), i / 3, np.float32)] for i in range(3))
    converter.convert()
    os.kill(os.getpid(), signal.SIGKILL)
