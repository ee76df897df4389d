"""A check that could not be measured is an error, not a failed threshold (issue 14.6, 21.6).

Each report tells the two apart (JSON ``status``, JUnit ``<error>``/``<failure>``, the terminal
table, the HTML badge); a model that cannot be loaded is one error with its cause, not one
failure per check; and a check never errors because of a step it does not need.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REAL, QcheckRun, run_qcheck

from qcheck.checks import registry
from qcheck.results import CheckResult
from qcheck.suites import CheckSpec
from qcheck.verdict import error_result

HELLO_WORLD = REAL / "tflm" / "hello_world_int8.tflite"  # 2704 bytes: fails a 1 KB size budget
NOT_A_ZIP = "broken.keras: is not a Keras 3 model archive"
# Inputs within hello_world's input range (0..6.24), so that nothing saturates.
SINE_X = np.linspace(0, 6.2, 24, dtype=np.float32).reshape(24, 1)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """A .keras file that is not a zip, a damaged .tflite, and a good model over its size budget."""
    cwd = tmp_path_factory.mktemp("statuses")
    (cwd / "broken.keras").write_bytes(b"this is not a zip archive")
    (cwd / "damaged.tflite").write_bytes(HELLO_WORLD.read_bytes()[:600])
    return run_qcheck(cwd, "--qcheck-model=broken.keras", "--qcheck-model=damaged.tflite",
                      f"--qcheck-model={HELLO_WORLD}", "--qcheck-max-size=1KB",
                      "--junitxml=junit.xml", "--qcheck-html=report.html")


def _statuses(entry: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in entry["checks"]}


def test_a_model_that_cannot_be_loaded_is_one_error_in_the_json(mixed_run: QcheckRun) -> None:
    assert mixed_run.returncode == pytest.ExitCode.TESTS_FAILED  # errors still fail the run
    broken = mixed_run.model("broken.keras")
    statuses = _statuses(broken)
    # Without data, accuracy and saturation are skipped as they are for any model; the rest errors.
    assert {k for k, v in statuses.items() if v == "skipped"} == {"accuracy_drop", "saturation"}
    assert {k for k, v in statuses.items() if v != "skipped"} == {k for k, v in statuses.items() if v == "error"}
    assert broken["status"] == "error" and broken["passed"] is False and mixed_run.report["passed"] is False
    (error,) = broken["errors"]  # one cause for the model, naming every check it stopped
    assert NOT_A_ZIP in error["cause"]
    assert sorted(error["checks"]) == sorted(c["name"] + (f"[{c['variant']}]" if c["variant"] else "")
                                             for c in broken["checks"] if c["status"] == "error")
    # The cause in full once; the other checks point to that check, without repeating it.
    full = [c for c in broken["checks"] if NOT_A_ZIP in c["message"]]
    assert len(full) == 1
    first = full[0]["name"]
    for c in (c for c in broken["checks"] if c["status"] == "error"):
        assert NOT_A_ZIP in c["error"]
        if c is not full[0]:
            assert c["message"] == f"{c['name']} could not be measured: broken.keras could not be loaded or " \
                                   f"converted (see {first})"


def test_a_failed_threshold_stays_failed_beside_errors(mixed_run: QcheckRun) -> None:
    good = mixed_run.model(HELLO_WORLD.name)
    statuses = _statuses(good)
    assert statuses["size"] == "failed"
    assert "size failed: 2.64 KiB > max 1000 B" in mixed_run.check(HELLO_WORLD.name, "size")["message"]
    assert "error" not in statuses.values()
    assert good["status"] == "failed" and good["errors"] == []


def test_a_damaged_tflite_is_one_error(mixed_run: QcheckRun) -> None:
    damaged = mixed_run.model("damaged.tflite")
    statuses = _statuses(damaged)
    assert statuses["fully_quantized"] == statuses["size"] == statuses["vela"] == "error"
    assert damaged["status"] == "error"
    (error,) = damaged["errors"]
    assert "damaged.tflite" in error["cause"] and len(error["checks"]) == list(statuses.values()).count("error")


def test_junit_tells_errors_from_failures(mixed_run: QcheckRun) -> None:
    root = ET.parse(mixed_run.out_dir.parent / "junit.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    errors = {c["name"] + (f"[broken.keras-{c['variant']}]" if c["variant"] else "[broken.keras]")
              for c in mixed_run.model("broken.keras")["checks"] if c["status"] == "error"}
    broken = {name: case for name, case in cases.items() if name in errors}
    assert len(broken) == len(errors)
    assert broken and all(case.find("error") is not None and case.find("failure") is None
                          for case in broken.values())
    size = cases[f"size[{HELLO_WORLD}]"]
    assert size.find("failure") is not None and size.find("error") is None
    status = {p.get("name"): p.get("value") for p in broken["fully_quantized[broken.keras]"].iter("property")}
    assert status["qcheck_status"] == "error"


def test_the_terminal_says_error_and_the_cause_once(mixed_run: QcheckRun) -> None:
    # qcheck's own summary only: with CI set, pytest's short summary below it is not truncated
    # and repeats each error's message.
    table = mixed_run.stdout.split("= qcheck =")[1].split("short test summary info")[0]
    checks = mixed_run.model("broken.keras")["checks"]
    errors = [c["name"] + (f"[{c['variant']}]" if c["variant"] else "") for c in checks if c["status"] == "error"]
    assert f"broken.keras: ERROR ({len(errors)} of {len(checks)} could not be measured)" in table
    assert re.search(re.escape(str(HELLO_WORLD)) + r": FAIL \(\d+ of \d+ checks failed\)", table)
    rows = [line for line in table.splitlines() if re.match(r"  \w", line) and line.rstrip().endswith("ERROR")]
    assert len(rows) >= len(errors)
    assert table.count(NOT_A_ZIP) == 1, table
    assert f"  - could not be measured ({', '.join(sorted(errors))}): " in table
    summary = mixed_run.stdout.splitlines()[-1]
    assert re.search(r"\d+ failed, .*\d+ errors", summary)


def test_the_html_page_has_an_error_badge_and_the_cause(mixed_run: QcheckRun) -> None:
    html = (mixed_run.out_dir.parent / "report.html").read_text()
    assert '<span class="pill error">ERROR</span>' in html
    assert '<span class="pill fail">FAIL</span>' in html  # hello_world's size
    assert html.count('data-section="errors"') == 2  # broken.keras and damaged.tflite, one cause each
    assert "is not a Keras 3 model archive" in html


# -- a step a check does not need ------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_reference_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """hello_world int8 with its data and a float reference that Keras cannot load."""
    cwd = tmp_path_factory.mktemp("bad_reference")
    (cwd / "broken.keras").write_bytes(b"this is not a zip archive")
    np.savez(cwd / "sine.npz", x=SINE_X)
    return run_qcheck(cwd, f"--qcheck-model={HELLO_WORLD}", "--qcheck-reference=broken.keras",
                      "--qcheck-data=sine.npz", "-k", "saturation or accuracy_drop")


def test_a_reference_keras_cannot_load_does_not_stop_saturation(bad_reference_run: QcheckRun) -> None:
    saturation = bad_reference_run.check(HELLO_WORLD.name, "saturation")
    assert saturation["passed"] is True and saturation["value"] == 0.0, saturation["message"]
    assert saturation["status"] == "passed"
    assert "because the float model could not be run" in saturation["message"]
    accuracy = bad_reference_run.check(HELLO_WORLD.name, "accuracy_drop")
    assert accuracy["status"] == "error" and NOT_A_ZIP in accuracy["message"]
    assert bad_reference_run.returncode == pytest.ExitCode.TESTS_FAILED


def test_a_damaged_float_tflite_reference_does_not_stop_saturation(tmp_path: Path) -> None:
    """The reference's .tflite is also the twin of the per-layer analysis, which runs with the
    quantized model: it must not make the quantized model's run fail."""
    float_model = REAL / "tflm" / "hello_world_float.tflite"
    (tmp_path / "damaged_float.tflite").write_bytes(float_model.read_bytes()[:600])
    np.savez(tmp_path / "sine.npz", x=SINE_X)
    run = run_qcheck(tmp_path, f"--qcheck-model={HELLO_WORLD}", "--qcheck-reference=damaged_float.tflite",
                     "--qcheck-data=sine.npz", "-k", "saturation or accuracy_drop")
    saturation = run.check(HELLO_WORLD.name, "saturation")
    assert saturation["passed"] is True and saturation["status"] == "passed", saturation["message"]
    accuracy = run.check(HELLO_WORLD.name, "accuracy_drop")
    assert accuracy["status"] == "error" and "damaged_float.tflite" in accuracy["error"]
    assert any("damaged_float.tflite cannot be read" in note for note in run.model(HELLO_WORLD.name)["notes"])


def test_the_python_api_gives_the_same_statuses(tmp_path: Path) -> None:
    import qcheck
    from qcheck.api import run_check

    (tmp_path / "broken.keras").write_bytes(b"this is not a zip archive")
    q = qcheck.quantize(HELLO_WORLD, SINE_X, reference=tmp_path / "broken.keras", out=tmp_path / "out")
    saturation = run_check("saturation", q)
    assert saturation.status == "passed"
    accuracy = run_check("accuracy_drop", q)
    assert accuracy.status == "error" and accuracy.passed is False
    assert accuracy.error is not None and NOT_A_ZIP in accuracy.error
    size = run_check("size", q, max="1KB")
    assert size.status == "failed"


# -- pure parts ------------------------------------------------------------------------------


def test_status_travels_with_the_result_and_renders() -> None:
    from qcheck.report.terminal import render

    check = registry()["size"]
    first = error_result("m.keras", check, CheckSpec("size"), ValueError("m.keras: cannot be read\n  hint: fix it"))
    again = error_result("m.keras", registry()["vela"], CheckSpec("vela"), ValueError("m.keras: cannot be read\n"
                         "  hint: fix it"), "ethos-u55-128", see="size")
    failed = CheckResult("m.keras", "arena", False, 2.0, 1.0, "bytes", "arena failed: 2 B > max 1 B")
    assert [r.status for r in (first, again, failed)] == ["error", "error", "failed"]
    assert again.message == "vela could not be measured: m.keras: cannot be read (see size)"
    assert CheckResult.from_json(json.dumps(first.to_dict())) == first
    lines = render([first, again, failed])
    assert lines[0] == "m.keras: FAIL (1 of 3 checks failed, 2 could not be measured)"
    assert "  - could not be measured (size, vela[ethos-u55-128]): m.keras: cannot be read" in lines
    assert "    hint: fix it" in lines
    assert sum("cannot be read" in line for line in lines) == 1
    assert "  - arena failed: 2 B > max 1 B" in lines
