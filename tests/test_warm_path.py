"""What a warm run pays beyond pytest's own start (issue 20, item 2).

Hypothesis is the ``properties`` extra, not a dependency: its pytest plugin imports all of
Hypothesis at the end of every run of an environment where it is installed
(docs/hypothesis-plugin-import.md), and qcheck needs it only for the property checks.
"""

from __future__ import annotations

import hashlib
import os
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, ROOT, run_qcheck

from qcheck import stat_index
from qcheck.cache import Cache


def test_installing_qcheck_does_not_install_hypothesis() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.split(">")[0].split("=")[0].strip() == "hypothesis" for dep in project["dependencies"])
    assert any(dep.startswith("hypothesis") for dep in project["optional-dependencies"]["properties"])


def test_the_default_suite_runs_without_hypothesis(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "hypothesis").mkdir(parents=True)
    (hidden / "hypothesis" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'hypothesis'\", name='hypothesis')\n")
    path = os.pathsep.join(p for p in (str(hidden), os.environ.get("PYTHONPATH", "")) if p)
    run = run_qcheck(tmp_path / "run", f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
                     f"--qcheck-data={FIXTURES / 'digits.npz'}", "-p", "no:hypothesispytest", "-p", "no:xdist",
                     env={"PYTHONPATH": path})
    assert run.returncode == 0, run.stdout
    assert {check["status"] for check in run.model("digits_cnn.keras")["checks"]} == {"passed"}


# -- large data files: digests found by the files' identity (qcheck.stat_index) ----------------------


def _counting() -> tuple[list[Path], Any]:
    from qcheck.files import _read_digest

    reads: list[Path] = []

    def compute(path: Path) -> str:
        reads.append(path)
        return _read_digest(path)

    return reads, compute


def _big(path: Path, fill: int) -> Path:
    path.write_bytes(bytes([fill]) * (stat_index.MIN_SIZE + 10))
    return path


def test_a_settled_file_is_read_once_and_then_known_by_its_identity(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stat_index, "SETTLED_NS", 0)  # the file is old enough at once
    cache, data = Cache(tmp_path / "cache"), _big(tmp_path / "x.npy", 1)
    reads, compute = _counting()
    with stat_index.using(cache):
        first = stat_index.file_digest(data, compute)
        again = stat_index.file_digest(data, compute)
    assert first == again == hashlib.sha256(data.read_bytes()).hexdigest()
    assert reads == [data]
    reads.clear()
    assert stat_index.file_digest(data, compute) == first and reads == [data]  # no index in use: read


def test_a_file_changed_with_its_size_and_times_put_back_is_read_again(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stat_index, "SETTLED_NS", 0)
    cache, data = Cache(tmp_path / "cache"), _big(tmp_path / "x.npy", 1)
    reads, compute = _counting()
    with stat_index.using(cache):
        old = stat_index.file_digest(data, compute)
        before = os.stat(data)
        _big(data, 2)  # same size; the modification time is put back, as a careful tool would
        os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
        new = stat_index.file_digest(data, compute)
    assert new != old and new == hashlib.sha256(data.read_bytes()).hexdigest() and len(reads) == 2


def test_a_file_written_moments_ago_is_not_recorded(tmp_path: Path) -> None:
    # Within the same tick of the kernel's coarse clock a second write could leave every time as it
    # was: a digest is recorded only for a file whose times are settled_ns() old.
    cache, data = Cache(tmp_path / "cache"), _big(tmp_path / "x.npy", 1)
    reads, compute = _counting()
    with stat_index.using(cache):
        stat_index.file_digest(data, compute)
        stat_index.file_digest(data, compute)
    assert len(reads) == 2


def test_small_files_are_always_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stat_index, "SETTLED_NS", 0)
    cache, data = Cache(tmp_path / "cache"), tmp_path / "y.npy"
    data.write_bytes(b"small")
    reads, compute = _counting()
    with stat_index.using(cache):
        stat_index.file_digest(data, compute)
        stat_index.file_digest(data, compute)
    assert len(reads) == 2


@pytest.mark.slow
def test_changed_data_in_a_folder_is_evaluated_again_even_with_its_times_put_back(tmp_path: Path) -> None:
    digits = np.load(FIXTURES / "digits.npz")
    x, y = np.tile(digits["x"], (9, 1, 1, 1)).astype(np.float32), np.tile(digits["y"], 9)  # 1.2 MB of x
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    # Calibrated on a file of its own: the evaluation samples reach the cache keys only through
    # x.npy's digest (calibration samples split from x.npy would be hashed as arrays).
    np.savez(tmp_path / "cal.npz", x=digits["x"][:200].astype(np.float32))
    time.sleep(stat_index.settled_ns() / 1e9 + 0.5)  # settled: the index records it
    args = (f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={folder}",
            f"--qcheck-calibration={tmp_path / 'cal.npz'}",
            f"--qcheck-cache-dir={tmp_path / 'cache'}", "-p", "no:xdist", "-k", "accuracy_drop")
    first = run_qcheck(tmp_path / "a", *args)
    warm = run_qcheck(tmp_path / "b", *args)
    assert first.report["models"][0]["accuracy"] == warm.report["models"][0]["accuracy"], warm.stdout
    # The samples reversed in place (the labels stay): same size, times put back; only the change
    # time moves. A digest taken from the index for the old bytes would give the cached verdict.
    before = os.stat(folder / "x.npy")
    np.save(folder / "x.npy", x[::-1].copy())
    os.utime(folder / "x.npy", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(folder / "x.npy").st_size == before.st_size
    changed = run_qcheck(tmp_path / "c", *args)
    (head,) = changed.report["models"][0]["accuracy"].values()
    (was,) = warm.report["models"][0]["accuracy"].values()
    assert head["float"] < 0.5 < was["float"], changed.stdout  # the new samples against the labels


def test_digests_wait_out_the_kernels_write_back_of_dirty_pages() -> None:
    # A write through a shared memory map to a page that is already dirty sets no time until the
    # kernel writes the page back: a digest recorded before that could be served for new bytes.
    vm = Path("/proc/sys/vm")
    expire = int((vm / "dirty_expire_centisecs").read_text()) * 10_000_000
    writeback = int((vm / "dirty_writeback_centisecs").read_text()) * 10_000_000
    assert stat_index.SETTLED_NS is None and stat_index.settled_ns() > expire + writeback
