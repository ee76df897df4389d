"""What a warm run pays beyond pytest's own start (issue 20, item 2).

Hypothesis is the ``properties`` extra, not a dependency: its pytest plugin imports all of
Hypothesis at the end of every run of an environment where it is installed
(docs/hypothesis-plugin-import.md), and qcheck needs it only for the property checks.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from helpers import FIXTURES, ROOT, run_qcheck


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
