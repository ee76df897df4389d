"""Adding a check is one module and one suite line: a third party's check, registered through the
``qcheck.checks`` entry point, is validated, run, judged and reported like a built-in one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REAL, QcheckRun, run_qcheck, write

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"  # already quantized: no conversion, one input

# The whole of a new check: one module. It declares its option's values and its report section.
CHECK_MODULE = '''
"""io_count: how many inputs (or outputs) the model has."""

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.units import one_of


@check("io_count", unit="count", options={"side": one_of("inputs", "outputs")}, sections=("io_count",))
def io_count(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Inputs (or outputs) of the model."""
    side = str(options.get("side", "inputs"))
    info = evidence.info()
    count = len(info.inputs if side == "inputs" else info.outputs)
    return Measurement(float(count), f"{count} {side}", sections={"io_count": {side: count}})
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder on sys.path holding the check's package and its distribution's metadata, as
    ``pip install`` would leave them (an entry point in the ``qcheck.checks`` group)."""
    folder = tmp_path_factory.mktemp("site")
    write(folder / "qcheck_io_count" / "__init__.py", CHECK_MODULE)
    dist_info = folder / "qcheck_io_count-0.1.dist-info"
    write(dist_info / "METADATA", "Metadata-Version: 2.1\nName: qcheck-io-count\nVersion: 0.1\n")
    write(dist_info / "entry_points.txt", "[qcheck.checks]\nio_count = qcheck_io_count\n")
    return folder


def _env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _run(tmp_path: Path, site: Path, table: str) -> QcheckRun:
    write(tmp_path / "nothing.toml", 'description = "no checks: only the file\'s own"\n')
    write(tmp_path / "qcheck_io.toml", f'model = "{VWW}"\nextends = "nothing.toml"\n\n' + textwrap.dedent(table))
    return run_qcheck(tmp_path, env=_env(site))


def test_a_plugin_check_runs_from_one_suite_line(tmp_path: Path, site: Path) -> None:
    run = _run(tmp_path, site, "[checks.io_count]\nmax = 1\n")
    assert run.returncode == 0, run.stdout
    model = run.model(VWW.name)
    assert [c["name"] for c in model["checks"]] == ["io_count"]
    result = run.check(VWW.name, "io_count")
    assert (result["passed"], result["value"], result["threshold"]) == (True, 1.0, 1.0)
    assert model["io_count"] == {"inputs": 1}  # its declared section reaches the JSON report


def test_a_plugin_check_fails_on_its_threshold(tmp_path: Path, site: Path) -> None:
    run = _run(tmp_path, site, '[checks.io_count]\nside = "outputs"\nmax = 0\n')
    assert run.returncode == 1, run.stdout
    result = run.check(VWW.name, "io_count")
    assert result["passed"] is False and result["value"] == 1.0
    assert "1 outputs" in result["message"]


def test_a_plugin_checks_option_is_validated_when_the_suite_loads(tmp_path: Path, site: Path) -> None:
    run = _run(tmp_path, site, '[checks.io_count]\nside = "output"\nmax = 1\n')
    assert run.returncode != 0
    assert "qcheck_io.toml: checks.io_count.side: must be one of 'inputs', 'outputs', not 'output'" in run.stdout
    assert "(did you mean 'outputs'?)" in run.stdout


def test_a_plugin_check_has_its_assertion_helper(tmp_path: Path, site: Path) -> None:
    code = textwrap.dedent(f"""
        import qcheck
        q = qcheck.quantize({str(VWW)!r})
        print(qcheck.assert_io_count(q, max=1, side="inputs").value)
        try:
            qcheck.assert_io_count(q, max=0)
        except AssertionError as exc:
            print("failed:", exc)
        print("assert_io_count" in dir(qcheck))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **_env(site)}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1.0", out.stdout.splitlines()[1], "True"]
    assert out.stdout.splitlines()[1].startswith("failed: ") and "1 inputs" in out.stdout


def test_a_broken_plugin_is_named(tmp_path: Path, site: Path) -> None:
    broken = tmp_path / "broken_site"
    write(broken / "qcheck_broken.py", "raise ImportError('needs a library that is not installed')\n")
    write(broken / "qcheck_broken-0.1.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: qcheck-broken\nVersion: 0.1\n")
    write(broken / "qcheck_broken-0.1.dist-info" / "entry_points.txt", "[qcheck.checks]\nbroken = qcheck_broken\n")
    code = "from qcheck.checks import registry\nregistry()\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **_env(broken)}, cwd=tmp_path)
    assert out.returncode != 0
    assert "qcheck.checks entry point broken = 'qcheck_broken' (distribution qcheck-broken) failed to load" in out.stderr
    assert "needs a library that is not installed" in out.stderr
