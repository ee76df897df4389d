"""Paths and a way to run qcheck as users do, shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
REAL = ROOT / "tests" / "real"  # copies of published models, with licenses and provenance


@dataclass(frozen=True)
class QcheckRun:
    """A finished ``python -m pytest --qcheck-...`` run: exit code, output and JSON report."""

    returncode: int
    stdout: str
    report: dict[str, Any]
    out_dir: Path

    def model(self, name: str) -> dict[str, Any]:
        matches: list[dict[str, Any]] = [m for m in self.report["models"] if Path(m["model"]).name == name]
        assert len(matches) == 1, f"{name} not in {[m['model'] for m in self.report['models']]}"
        return matches[0]

    def messages(self, check: str) -> dict[str, str]:
        """The message of ``check`` for every model of the run, keyed by the model as given."""
        found = {}
        for model in self.report["models"]:
            (result,) = [c for c in model["checks"] if c["name"] == check]
            found[model["model"]] = str(result["message"])
        return found

    def check(self, model: str, name: str) -> dict[str, Any]:
        found: dict[str, Any]
        (found,) = [c for c in self.model(model)["checks"] if c["name"] == name]
        return found


SHARED_CACHE = "QCHECK_TEST_SHARED_CACHE"  # set by conftest.py for the whole test session


def run_qcheck(cwd: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> QcheckRun:
    """Run qcheck as users do: a new pytest process, in ``cwd``, with a JSON report.

    Runs share one qcheck cache for the test session (the cache is content-addressed, and
    tested on its own), so a fixture model is converted once for all the tests that only need
    its results; a test that passes its own cache option keeps it.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    cache = [] if any(a.startswith("--qcheck-cache-dir") or a == "--qcheck-no-cache" for a in args) else (
        [f"--qcheck-cache-dir={os.environ[SHARED_CACHE]}"] if SHARED_CACHE in os.environ else [])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--qcheck-json=report.json", *cache, *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )
    report_path = cwd / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return QcheckRun(proc.returncode, proc.stdout + proc.stderr, report, cwd / "qcheck-out")


def write(path: Path, text: str) -> Path:
    """Write dedented text, creating folders: suite files and configs in tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def touch(path: Path) -> Path:
    """An empty file (a model path that must exist but is never read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def without_tf_keras(folder: Path) -> dict[str, str]:
    """An environment in which ``import tf_keras`` fails as when it is not installed (for qcheck's
    processes and their children): a package of that name first on the path that raises."""
    package = folder / "tf_keras"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tf_keras'\", name='tf_keras')\n", encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)}
