"""One way through: the same model, data and thresholds give the same verdict and message
whichever way qcheck is asked (issue 15): the command line, a ``qcheck_*.toml`` suite file, the
marker with the fixtures, and the Python API all plan and run through one resolver and one runner.

The cases where the entry points once drifted apart are in the suite: a memory check (``sram``)
that sets no accelerator, measured on the compilation the ``vela`` table describes (its
accelerator and memory mode), and a check that raises an unexpected exception, which becomes
that check's error result, never the end of the run or an exception out of the API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, SHARED_CACHE, QcheckRun, run_qcheck, write

# A third party's check that fails with a bug of its own: registered through the entry point.
EXPLODES = '''
from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement


@check("explodes", unit="count")
def explodes(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """A check with a bug."""
    raise RuntimeError("a bug in a check")
'''

SUITE = """
description = "the same thresholds through every entry point"

[checks.fully_quantized]
max = 0

[checks.accuracy_drop]
max = "3%"

[checks.size]
max = "1KB"

[checks.vela]
max = 0
accelerator = "ethos-u65-256"
memory_mode = "Dedicated_Sram_384KB"

[checks.sram]
max = "1KB"

[checks.explodes]
max = 0
"""
CHECKS = ("fully_quantized", "accuracy_drop", "size", "vela", "sram", "explodes")

MARKER_TEST = f"""
import json
from pathlib import Path

import pytest
import qcheck

@pytest.mark.qcheck(model="digits_cnn.keras", data="digits.npz")
def test_every_check(qcheck_quantized):
    results = [qcheck.run_check(name, qcheck_quantized).to_dict() for name in {CHECKS!r}]
    Path("marker.json").write_text(json.dumps(results))
"""

API_SCRIPT = f"""
import json, sys
import qcheck

q = qcheck.quantize("digits_cnn.keras", "digits.npz", suite="suite.toml", out="api-out", cache_dir=sys.argv[1])
print(json.dumps([qcheck.run_check(name, q).to_dict() for name in {CHECKS!r}]))
"""

Verdicts = dict[str, dict[str, Any]]  # check name -> what each entry point must agree on


def _verdicts(results: list[dict[str, Any]]) -> Verdicts:
    keys = ("status", "value", "threshold", "unit", "variant", "message")
    return {r["name"]: {key: r[key] for key in keys} for r in results}


def _from_report(run: QcheckRun) -> Verdicts:
    (model,) = run.report["models"]
    return _verdicts(model["checks"])


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdicts]:
    """Each entry point's verdicts on the same model, data and suite, each in its own folder."""
    site = tmp_path_factory.mktemp("site")
    write(site / "qcheck_explodes" / "__init__.py", EXPLODES)
    write(site / "qcheck_explodes-0.1.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: qcheck-explodes\n"
                                                                "Version: 0.1\n")
    write(site / "qcheck_explodes-0.1.dist-info" / "entry_points.txt", "[qcheck.checks]\nexplodes = qcheck_explodes\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cache = os.environ.get(SHARED_CACHE) or str(tmp_path_factory.mktemp("cache"))

    def workspace(name: str) -> Path:
        folder = tmp_path_factory.mktemp(name)
        for file in ("digits_cnn.keras", "digits.npz"):
            shutil.copy(FIXTURES / file, folder / file)
        write(folder / "suite.toml", SUITE)
        return folder

    found: dict[str, Verdicts] = {}
    cli = workspace("command_line")
    found["command line"] = _from_report(run_qcheck(
        cli, "--qcheck-model=digits_cnn.keras", "--qcheck-data=digits.npz", "--qcheck-suite=suite.toml", env=env))

    suite_file = workspace("suite_file")
    write(suite_file / "qcheck_digits.toml", 'model = "digits_cnn.keras"\ndata = "digits.npz"\nextends = "suite.toml"\n')
    found["suite file"] = _from_report(run_qcheck(suite_file, env=env))

    marker = workspace("marker")
    write(marker / "test_marker.py", MARKER_TEST)
    run = run_qcheck(marker, "test_marker.py", "--qcheck-suite=suite.toml", env=env)
    assert (marker / "marker.json").exists(), run.stdout
    found["marker"] = _verdicts(json.loads((marker / "marker.json").read_text()))

    api = workspace("api")
    write(api / "api.py", API_SCRIPT)
    proc = subprocess.run([sys.executable, "api.py", cache], cwd=api, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    found["api"] = _verdicts(json.loads(proc.stdout.strip().splitlines()[-1]))
    return found


def test_every_entry_point_gives_the_same_verdicts_and_messages(verdicts: dict[str, Verdicts]) -> None:
    reference = verdicts["command line"]
    assert set(reference) == set(CHECKS)
    # Not trivially equal: the thresholds make some pass and some fail.
    assert {v["status"] for v in reference.values()} >= {"passed", "failed", "error"}
    for entry_point, found in verdicts.items():
        assert found == reference, entry_point


def test_a_memory_check_measures_the_compilation_the_vela_table_describes(verdicts: dict[str, Verdicts]) -> None:
    # sram sets no accelerator: it inherits the vela table's, and its memory mode (the U65's
    # 384 KB dedicated SRAM, not the default configuration's), in every entry point.
    for entry_point, found in verdicts.items():
        assert found["vela"]["variant"] == found["sram"]["variant"] == "ethos-u65-256", entry_point
        assert found["sram"]["status"] == "failed" and found["sram"]["value"] > 1000, entry_point


def test_an_unexpected_exception_is_that_checks_error_everywhere(verdicts: dict[str, Verdicts]) -> None:
    for entry_point, found in verdicts.items():
        explodes = found["explodes"]
        assert explodes["status"] == "error", entry_point
        assert "internal error in qcheck (RuntimeError: a bug in a check, at __init__.py:" in explodes["message"]
        assert found["fully_quantized"]["status"] == "passed", entry_point  # the other checks still ran

