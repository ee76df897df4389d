"""The content-addressed cache: hits, damaged entries, killed writers, concurrent workers,
and warm runs that never import TensorFlow."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, REAL, run_qcheck

from qcheck.cache import Cache
from qcheck.hashing import digest
from qcheck.tflite.convert import FloatReference, Quantized


def _counted(made: list[int]) -> Quantized:
    """_value(), counting the calls in ``made``."""
    made.append(1)
    return _value()


def _value() -> Quantized:
    outputs = {"zeta": np.arange(12, dtype=np.float32).reshape(3, 4)}
    return Quantized(b"TFL3 model bytes", FloatReference(outputs, ("zeta",)), False)


def _entry_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "entries").rglob("*") if p.is_file())


def test_a_stored_value_comes_back_equal(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    made: list[int] = []
    first, hit = cache.get_or_make("k" * 64, lambda: _counted(made))
    second, hit2 = cache.get_or_make("k" * 64, lambda: _counted(made))
    assert (hit, hit2, len(made)) == (False, True, 1)
    assert second.tflite == first.tflite and second.synthetic_calibration is False
    assert first.reference is not None and second.reference is not None
    assert second.reference.output_names == ("zeta",)
    np.testing.assert_array_equal(second.reference.outputs["zeta"], first.reference.outputs["zeta"])


def test_keys_follow_content_not_names(tmp_path: Path) -> None:
    a, b = tmp_path / "a.keras", tmp_path / "b.keras"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert digest(a) == digest(b)
    b.write_bytes(b"different")
    assert digest(a) != digest(b)
    assert digest(np.zeros(3, np.float32)) != digest(np.zeros(3, np.float64))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_entry_is_discarded_and_rebuilt(tmp_path: Path, damage: str) -> None:
    cache = Cache(tmp_path)
    cache.get_or_make("d" * 64, _value)
    target = next(p for p in _entry_files(tmp_path) if p.name == "arrays.npz")
    data = target.read_bytes()
    if damage == "flip":
        target.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    else:
        target.unlink()
    made: list[int] = []
    value, hit = cache.get_or_make("d" * 64, lambda: _counted(made))
    assert not hit and made == [1] and value.tflite == b"TFL3 model bytes"
    assert cache.get_or_make("d" * 64, _value)[1]  # rebuilt entry is whole again


def test_a_writer_killed_mid_write_leaves_nothing_trusted(tmp_path: Path) -> None:
    """A child process is SIGKILLed while its value is being made and stored."""
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_store_slowly, args=(tmp_path,))
    proc.start()
    deadline = time.monotonic() + 20
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.pid is not None
    os.kill(proc.pid, 9)
    proc.join()
    made: list[int] = []
    _, hit = Cache(tmp_path).get_or_make("w" * 64, lambda: _counted(made))
    assert not hit and made == [1]


def _store_slowly(root: Path) -> None:
    def make() -> Quantized:
        (root / "started").touch()
        time.sleep(30)
        return _value()

    Cache(root).get_or_make("w" * 64, make)


def test_concurrent_workers_make_an_entry_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_make_counting, args=(tmp_path,)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert (tmp_path / "made").read_text() == "x"


def _make_counting(root: Path) -> None:
    def make() -> Quantized:
        with open(root / "made", "a") as handle:
            handle.write("x")
        time.sleep(0.5)
        return _value()

    Cache(root).get_or_make("c" * 64, make)


def test_warm_run_imports_no_tensorflow(tmp_path: Path) -> None:
    """The second run has a TensorFlow that fails on import, in this process and in children."""
    args = (f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
            f"--qcheck-cache-dir={tmp_path / 'cache'}", "-k", "not vela")
    cold = run_qcheck(tmp_path / "cold", *args)
    assert cold.returncode == 0, cold.stdout

    warm = run_qcheck(tmp_path / "warm", *args, env=_poisoned(tmp_path / "poison", "tensorflow", "keras"))
    assert warm.returncode == 0, warm.stdout
    assert warm.report["models"][0]["checks"] == cold.report["models"][0]["checks"]
    assert any("from the cache" in note for note in warm.report["models"][0]["notes"])


def _poisoned(folder: Path, *names: str) -> dict[str, str]:
    """An environment in which importing any of ``names`` fails, here and in child processes."""
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} imported in a warm run')\n")
    # In front of the PYTHONPATH that may point at the source under test, not instead of it.
    return {"PYTHONPATH": os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_warm_run_takes_vela_from_the_cache_and_writes_its_files_again(tmp_path: Path) -> None:
    model = REAL / "mlperf_tiny" / "kws_ref_model.tflite"
    args = (f"--qcheck-model={model}", f"--qcheck-cache-dir={tmp_path / 'cache'}", "-k", "vela or sram")
    cold = run_qcheck(tmp_path / "cold", *args)
    assert cold.returncode == 0, cold.stdout
    no_vela = _poisoned(tmp_path / "poison", "ethosu")

    warm = run_qcheck(tmp_path / "warm", *args, env=no_vela)
    assert warm.returncode == 0, warm.stdout
    assert warm.report["models"][0]["checks"] == cold.report["models"][0]["checks"]
    files = {p.relative_to(cold.out_dir): p.read_bytes() for p in cold.out_dir.rglob("*_vela/**/*") if p.is_file()}
    assert {p.suffix for p in files} == {".tflite", ".csv", ".log", ".xml"}  # .xml: Vela's debug database
    assert {p.relative_to(warm.out_dir): p.read_bytes() for p in warm.out_dir.rglob("*_vela/**/*")
            if p.is_file()} == files

    # Another configuration is another entry: Vela must run, and here it cannot.
    other = run_qcheck(tmp_path / "other", *args, "--qcheck-accelerator=ethos-u65-256", env=no_vela)
    assert other.returncode == 1
    assert "ethosu imported in a warm run" in other.stdout


def test_keys_follow_qcheck_s_source_not_only_its_version(tmp_path: Path) -> None:
    """A cache kept across a change of qcheck's code within one version number (an install from
    git, an editable checkout, a cache restored in CI) served what the older code measured: the
    TFLite Micro CPU part and its parity were keyed by the version alone. Every key now carries a
    digest of qcheck's source: a copy of the package with one module changed keys differently,
    and bytecode beside it changes nothing."""
    import shutil
    import subprocess
    import sys

    import qcheck

    copy = tmp_path / "site" / "qcheck"
    shutil.copytree(Path(qcheck.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))

    def key() -> str:
        code = "from qcheck.cache import versions; print(versions('numpy'))"
        # Run from tmp_path: python -c puts the working folder (this checkout) first on sys.path.
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(copy.parent)},
                              cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    first = key()
    assert first.startswith(f"qcheck={qcheck.__version__}+") and key() == first
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"not source")
    assert key() == first
    cut = copy / "tflm" / "cpu_part.py"
    cut.write_text(cut.read_text() + "\n# the CPU part cut otherwise\n")
    assert key() != first
