"""Round-2 review: wrong verdicts and lost files found by red-teaming the merged capabilities
(merge, shards, baselines). Each test failed on the code before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, run_qcheck, write

# -- python -m qcheck merge: what a merged report may claim ------------------------------------


def _merge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qcheck", "merge", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _report(models: list[Any], **extra: Any) -> dict[str, Any]:
    return {"schema_version": 1, "qcheck_version": "0", "passed": True, "models": models, "suite_file_errors": [],
            **extra}


def _model(name: str, passed: Any = True, status: str = "passed") -> dict[str, Any]:
    return {"model": name, "suite_file": "", "passed": passed, "status": status,
            "checks": [{"name": "size", "variant": "", "status": status, "passed": status == "passed"}]}


@pytest.mark.parametrize("entry", [
    _model("a.keras", passed="false"),  # a string is truthy: it must not read as a pass
    _model("a.keras", passed=True, status="failed"),  # a failed check under a model said to pass
])
def test_merge_never_passes_a_model_whose_report_does_not_say_pass_plainly(tmp_path: Path,
                                                                           entry: dict[str, Any]) -> None:
    (tmp_path / "in.json").write_text(json.dumps(_report([entry])))
    done = _merge("out.json", "in.json", cwd=tmp_path)
    assert done.returncode != 0, done.stdout
    assert "all passed" not in done.stdout
    if done.returncode == 1:
        assert json.loads((tmp_path / "out.json").read_text())["passed"] is False


def test_merge_does_not_pass_a_shard_report_that_says_it_failed(tmp_path: Path) -> None:
    # A report's own verdict stands: what made it fail may be nothing merge can see.
    (tmp_path / "in.json").write_text(json.dumps(_report([_model("a.keras")], passed=False)))
    done = _merge("out.json", "in.json", cwd=tmp_path)
    assert done.returncode == 1 and json.loads((tmp_path / "out.json").read_text())["passed"] is False


@pytest.mark.parametrize("text", [
    json.dumps(_report(["not a model"])),
    json.dumps(_report([], suite_file_errors=[{"file": "qcheck_x.toml"}])),
    json.dumps(_report([{"model": "a.keras", "passed": True, "checks": "none"}])),
    "[" * 100_000 + "]" * 100_000,
    json.dumps(_report([], shard={"index": "one", "count": 1, "groups": {}})),
])
def test_merge_names_the_file_of_a_malformed_report_instead_of_a_traceback(tmp_path: Path, text: str) -> None:
    (tmp_path / "in.json").write_text(text)
    done = _merge("out.json", "in.json", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "in.json" in done.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("option", ["--html", "--junit", "--costs"])
def test_merge_refuses_two_outputs_at_one_path(tmp_path: Path, option: str) -> None:
    (tmp_path / "in.json").write_text(json.dumps(_report([_model("a.keras")])))
    done = _merge("out.json", "in.json", option, "./out.json", cwd=tmp_path)
    assert done.returncode == 2 and "out.json" in done.stderr, done.stderr
    assert not (tmp_path / "out.json").exists()  # nothing written: the merged JSON is not lost under another


# -- shards: a job that did not finish --------------------------------------------------------


@pytest.mark.slow
def test_a_cancelled_shard_does_not_merge_as_passed(tmp_path: Path) -> None:
    # The CI job is stopped after its first check (a cancel, a timeout: pytest still writes the
    # report). float_op.keras, which fails when it runs, never ran.
    write(tmp_path / "job" / "conftest.py", """
        import pytest
        def pytest_runtest_teardown(item, nextitem):
            pytest.exit("the CI job was cancelled", returncode=2)
    """)
    shard = run_qcheck(tmp_path / "job", f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
                       f"--qcheck-model={FIXTURES / 'float_op.keras'}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
                       "-p", "no:xdist", "--qcheck-shard=1/1")
    assert shard.report["shard"]["groups"] and len(shard.report["models"]) == 1  # the report is written
    done = _merge("merged.json", tmp_path / "job" / "report.json", cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert "float_op.keras" in done.stderr and "all passed" not in done.stdout
    assert not (tmp_path / "merged.json").exists()


# -- baselines: two models of one file name -----------------------------------------------------


def _baseline_run(cwd: Path, *models: str, update: bool = False) -> Any:
    return run_qcheck(cwd, *(f"--qcheck-model={m}" for m in models), f"--qcheck-data={FIXTURES / 'digits.npz'}",
                      "--qcheck-baseline=bl", "-p", "no:xdist", "-k", "baseline",
                      *(["--qcheck-baseline-update"] if update else []))


def _baseline_of(run: Any, model: str) -> dict[str, Any]:
    (entry,) = [m for m in run.report["models"] if m["model"] == model]
    (check,) = [c for c in entry["checks"] if c["name"] == "baseline"]
    return dict(check)


@pytest.mark.slow
def test_a_model_is_never_judged_against_the_baseline_of_another_of_the_same_file_name(tmp_path: Path) -> None:
    # a/model.keras gets bl/model.json, b/model.keras bl/model-2.json (named in the order given).
    for folder, fixture in (("a", "digits_cnn.keras"), ("b", "float_op.keras")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.keras").write_bytes((FIXTURES / fixture).read_bytes())
    made = _baseline_run(tmp_path, "a/model.keras", "b/model.keras", update=True)
    assert {p.name for p in (tmp_path / "bl").iterdir()} == {"model.json", "model.npz", "model-2.json",
                                                             "model-2.npz"}, made.stdout
    a_baseline = (tmp_path / "bl" / "model.json").read_bytes()
    # b alone (as a developer runs the model they changed) is now named "model": a's baseline.
    alone = _baseline_run(tmp_path, "b/model.keras")
    result = _baseline_of(alone, "b/model.keras")
    assert result["status"] != "passed"
    assert "a/model.keras" in result["message"] and "b/model.keras" in result["message"], result["message"]
    # ... and an update from that run does not write b's figures over a's baseline.
    _baseline_run(tmp_path, "b/model.keras", update=True)
    assert (tmp_path / "bl" / "model.json").read_bytes() == a_baseline
    # In the order the baselines were made, each model passes against its own.
    again = _baseline_run(tmp_path, "a/model.keras", "b/model.keras")
    assert _baseline_of(again, "a/model.keras")["status"] == "passed"
    assert _baseline_of(again, "b/model.keras")["status"] == "passed"


def test_merge_keeps_every_shards_remedies(tmp_path: Path) -> None:
    # The remedies tried for a failing model are in its shard's report; the first shard's alone
    # must not stand for all of them.
    for name, model in (("s1.json", "a.keras"), ("s2.json", "b.keras")):
        remedies = [{"model": model, "candidates": [], "notes": [f"tried for {model}"]}]
        (tmp_path / name).write_text(json.dumps(_report([_model(model, passed=False, status="failed")],
                                                        passed=False, remedies=remedies)))
    done = _merge("out.json", "s1.json", "s2.json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    merged = json.loads((tmp_path / "out.json").read_text())
    assert [r["model"] for r in merged["remedies"]] == ["a.keras", "b.keras"]


def test_merge_names_the_file_of_a_check_without_a_name(tmp_path: Path) -> None:
    entry = {"model": "a.keras", "passed": True, "checks": [{"status": "passed", "passed": True}]}
    (tmp_path / "in.json").write_text(json.dumps(_report([entry])))
    done = _merge("out.json", "in.json", "--junit", "j.xml", cwd=tmp_path)
    assert done.returncode == 2 and "in.json" in done.stderr and "Traceback" not in done.stderr, done.stderr
