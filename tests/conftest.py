"""Session-wide runs of qcheck on the fixture models, shared by many tests."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from helpers import FIXTURES, SHARED_CACHE, QcheckRun, run_qcheck


def pytest_configure(config: pytest.Config) -> None:
    # Made by the controller before xdist starts its workers, which inherit it.
    if SHARED_CACHE not in os.environ:
        os.environ[SHARED_CACHE] = tempfile.mkdtemp(prefix="qcheck-test-cache-")
        config.stash[_OWNED] = os.environ[SHARED_CACHE]


def pytest_unconfigure(config: pytest.Config) -> None:
    owned = config.stash.get(_OWNED, None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
        del os.environ[SHARED_CACHE]


_OWNED = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """The main path on the bundled fixtures: a good CNN, a two-head model, a model with a float op.

    One conversion per model for the whole test session; many tests read this run, and its
    HTML, CSV and JUnit reports (in the run's folder, ``digits_run.out_dir.parent``).
    """
    cwd = tmp_path_factory.mktemp("digits_run")
    return run_qcheck(
        cwd,
        f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
        f"--qcheck-model={FIXTURES / 'float_op.keras'}",
        f"--qcheck-data={FIXTURES / 'digits.npz'}",
        # The reports people read, from the same run (tests/test_report_outputs.py).
        "--qcheck-html=reports/report.html",
        "--qcheck-csv=tables",
        "--junitxml=junit.xml",
    )


@pytest.fixture(scope="session")
def multihead_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    cwd = tmp_path_factory.mktemp("multihead_run")
    return run_qcheck(cwd, f"--qcheck-model={FIXTURES / 'multihead.keras'}", f"--qcheck-data={FIXTURES / 'multihead.npz'}")
