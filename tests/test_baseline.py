"""Baselines (issue 19): the last good run's figures, compared with and updated on purpose.

The runs are real: qcheck converts the bundled digits CNN with TensorFlow, runs it in LiteRT and
compiles it with Vela, as users run it (``run_qcheck``). The file-format and comparison tests read
and judge files and records made here, with no model involved.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck, write

from qcheck.baseline.compare import compare
from qcheck.baseline.record import Figure, Head, Record, toolchain_versions
from qcheck.baseline.store import MAX_JSON_BYTES, encode, paths, read, write as write_baseline
from qcheck.errors import QcheckError
from qcheck.files import InputFiles

DATA = FIXTURES / "digits.npz"


def _qcheck(cwd: Path, *args: str) -> QcheckRun:
    return run_qcheck(cwd, "--qcheck-model=model.keras", f"--qcheck-data={DATA}", "--qcheck-baseline=bl",
                      "--junitxml=junit.xml", *args)


def _message(run: QcheckRun) -> str:
    return str(run.check("model.keras", "baseline")["message"])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose baseline was written by --qcheck-baseline-update from the digits CNN,
    calibrated on 200 samples from their own file (so every run evaluates the same 540 samples)."""
    cwd = tmp_path_factory.mktemp("recorded")
    shutil.copy(FIXTURES / "digits_cnn.keras", cwd / "model.keras")
    x = np.load(DATA)["x"]
    np.savez(cwd / "cal_full.npz", x=x[:200])
    np.savez(cwd / "cal_small.npz", x=x[200:202])
    run = _qcheck(cwd, "--qcheck-calibration=cal_full.npz", "--qcheck-baseline-update")
    assert run.returncode == 0, run.stdout
    assert "baseline written (new)" in run.stdout
    return cwd


@pytest.fixture
def project(recorded: Path, tmp_path: Path) -> Path:
    """A copy of the recorded project, for a test to change."""
    cwd = tmp_path / "project"
    shutil.copytree(recorded, cwd, ignore=shutil.ignore_patterns("qcheck-out", "report.json", "junit.xml"))
    return cwd


def test_update_writes_a_small_sorted_baseline_and_an_unchanged_model_passes(project: Path) -> None:
    json_path, npz_path = project / "bl" / "model.json", project / "bl" / "model.npz"
    document = json.loads(json_path.read_text())
    assert json_path.read_text() == json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert document["toolchain"] == toolchain_versions()
    assert {"size", "arena", "layer_error", "vela", "sram", "flash", "npu_weights", "inference_time",
            "accuracy_drop"} <= set(document["figures"])
    assert document["heads"][0]["name"] == "digit" and document["evaluation"]["samples"] == 540
    with np.load(npz_path, allow_pickle=False) as arrays:
        assert arrays["golden_0"].dtype == np.uint8 and arrays["golden_0"].shape == (32, 10)
    assert json_path.stat().st_size + npz_path.stat().st_size < 4096  # small enough to review

    run = _qcheck(project, "--qcheck-calibration=cal_full.npz", "--qcheck-csv=tables")
    assert run.returncode == 0, run.stdout
    assert run.check("model.keras", "baseline")["status"] == "passed"
    assert "quantized bytes and toolchain unchanged" in _message(run)
    assert "golden outputs of 'digit': identical on 32 samples" in _message(run)
    # The baseline beside each figure: the terminal table, the JSON report and JUnit.
    assert "baseline  change" in run.stdout
    size = run.check("model.keras", "size")
    assert size["baseline"]["baseline"] == document["figures"]["size"]["value"] == size["value"]
    assert size["baseline"]["verdict"] == "same"
    junit = ET.parse(project / "junit.xml").getroot()
    properties = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert (properties["qcheck_baseline.size"] or "").endswith("(same)")
    csv = (project / "tables" / "model_checks.csv").read_text().splitlines()
    assert "baseline.baseline" in csv[0].split(",") and "baseline.verdict" in csv[0].split(",")


def test_a_second_update_leaves_the_files_byte_identical(project: Path) -> None:
    before = {p.name: p.read_bytes() for p in (project / "bl").iterdir()}
    run = _qcheck(project, "--qcheck-calibration=cal_full.npz", "--qcheck-baseline-update")
    assert run.returncode == 0, run.stdout
    assert {p.name: p.read_bytes() for p in (project / "bl").iterdir()} == before
    assert "baseline unchanged" in run.stdout


def test_a_smaller_calibration_set_fails_on_the_figure_that_regressed_not_on_noise(project: Path) -> None:
    run = _qcheck(project, "--qcheck-calibration=cal_small.npz")
    result = run.check("model.keras", "baseline")
    assert result["status"] == "failed", run.stdout
    message = result["message"]
    assert message.startswith("baseline failed: layer_error grew"), message
    assert "the model changed: its quantized bytes differ, with the same tensorflow" in message
    # The same samples give the same answers: the paired test sees no accuracy regression.
    assert "head 'digit' accuracy" in message and "accuracy" not in message.split(". ")[0]
    assert result["value"] == 1
    figures = run.model("model.keras")["baseline"]["figures"]
    assert figures["layer_error"]["verdict"] == "regressed"
    # Updating on purpose says what changed, figure by figure, and then the run passes.
    update = _qcheck(project, "--qcheck-calibration=cal_small.npz", "--qcheck-baseline-update")
    assert "baseline updated" in update.stdout and "layer_error:" in update.stdout
    assert _qcheck(project, "--qcheck-calibration=cal_small.npz").returncode == 0


def test_a_worse_model_fails_on_accuracy_by_the_paired_test(project: Path) -> None:
    # The same task and data; an outlier channel crushes an int8 range (about 7 points lost).
    shutil.copy(FIXTURES / "flatten_outlier.keras", project / "model.keras")
    run = _qcheck(project, "--qcheck-calibration=cal_full.npz", "--qcheck-html=report.html")
    result = run.check("model.keras", "baseline")
    assert result["status"] == "failed", run.stdout
    failures = result["message"].split("\n")[0]
    assert "head 'digit' accuracy" in failures and "exact McNemar p = " in failures
    head = run.model("model.keras")["baseline"]["heads"]["digit"]
    assert head["verdict"] == "regressed" and head["lost"] > 10 * max(head["gained"], 1) and head["p_value"] < 1e-3
    assert "golden outputs of 'digit' moved" in result["message"]
    # The baseline beside each figure, with the change: the terminal table and the HTML report.
    drop = run.check("model.keras", "accuracy_drop")
    assert drop["baseline"]["baseline"] == 0 and drop["baseline"]["verdict"] == "worse"
    assert f"+{drop['value'] * 100:.2f} points worse, judged on the paired samples" in run.stdout
    html = (project / "report.html").read_text()
    assert '<th class="num">baseline</th><th>change</th>' in html
    assert f'<td class="trend worse">▲ +{drop["value"] * 100:.2f} points worse' in html


def test_a_toolchain_recorded_differently_is_named(project: Path) -> None:
    json_path = project / "bl" / "model.json"
    document = json.loads(json_path.read_text())
    document["toolchain"]["tensorflow"] = "2.0.0"
    document["toolchain"]["ethos-u-vela"] = "3.0.0"
    json_path.write_text(json.dumps(document))
    installed = metadata.version("tensorflow")
    run = _qcheck(project, "--qcheck-calibration=cal_full.npz")
    message = _message(run)
    assert run.check("model.keras", "baseline")["status"] == "passed", message
    vela = metadata.version("ethos-u-vela")
    assert (f"quantized bytes unchanged; the toolchain changed: ethos-u-vela 3.0.0 -> {vela}, "
            f"tensorflow 2.0.0 -> {installed}") in message
    changes = run.model("model.keras")["baseline"]["toolchain_changes"]
    assert changes["tensorflow"] == {"baseline": "2.0.0", "now": installed}

    document["quantized_sha256"] = "0" * 64
    json_path.write_text(json.dumps(document))
    message = _message(_qcheck(project, "--qcheck-calibration=cal_full.npz"))
    assert "the quantized bytes differ and the toolchain changed" in message
    assert "the model, the converter or both changed" in message


def test_a_missing_baseline_fails_with_the_command_that_creates_it(project: Path) -> None:
    shutil.rmtree(project / "bl")
    run = _qcheck(project, "--qcheck-calibration=cal_full.npz")
    result = run.check("model.keras", "baseline")
    assert result["status"] == "failed" and run.returncode == 1
    assert "no baseline for this model" in result["message"] and "--qcheck-baseline-update" in result["message"]
    assert not (project / "bl").exists()


def test_update_never_writes_over_an_input(project: Path) -> None:
    # The evaluation data sits where the model's baseline arrays would go.
    shutil.copy(DATA, project / "bl" / "model.npz")
    before = (project / "bl" / "model.npz").read_bytes()
    run = run_qcheck(project, "--qcheck-model=model.keras", "--qcheck-data=bl/model.npz", "--qcheck-baseline=bl",
                     "--qcheck-calibration=cal_full.npz", "--qcheck-baseline-update")
    result = run.check("model.keras", "baseline")
    assert result["status"] == "error" and "never writes over its inputs" in result["message"], result["message"]
    assert (project / "bl" / "model.npz").read_bytes() == before


def test_an_unreadable_baseline_is_replaced_on_update_saying_so(project: Path) -> None:
    (project / "bl" / "model.json").write_text("{not json")
    failed = _qcheck(project, "--qcheck-calibration=cal_full.npz")
    assert failed.check("model.keras", "baseline")["status"] == "error"
    assert "model.json: is not valid JSON" in _message(failed)
    run = _qcheck(project, "--qcheck-calibration=cal_full.npz", "--qcheck-baseline-update")
    assert "replaced a baseline that could not be read" in run.stdout and "is not valid JSON" in run.stdout
    assert _qcheck(project, "--qcheck-calibration=cal_full.npz").returncode == 0


def test_an_already_quantized_tflite_is_judged_on_its_labels(tmp_path: Path) -> None:
    # No float model: each sample's top-1 against the labels is what pairs the two runs.
    shutil.copy(FIXTURES / "model_kinds" / "digits_float_io.tflite", tmp_path / "model.tflite")
    args = ("--qcheck-model=model.tflite", f"--qcheck-data={DATA}", "--qcheck-baseline=bl")
    assert run_qcheck(tmp_path, *args, "--qcheck-baseline-update").check("model.tflite", "baseline")["passed"]
    document = json.loads((tmp_path / "bl" / "model.json").read_text())
    (head,) = document["heads"]
    assert (head["outcome"], head["task"], document["evaluation"]["samples"]) == ("correct", "classification", 540)
    # Its int16x8 twin answers the same, but needs twice the SRAM and arena.
    shutil.copy(FIXTURES / "model_kinds" / "digits_int16x8.tflite", tmp_path / "model.tflite")
    run = run_qcheck(tmp_path, *args)
    message = run.check("model.tflite", "baseline")["message"]
    failures = message.split("\n")[0]
    assert "sram grew" in failures and "arena grew" in failures and "accuracy" not in failures
    assert run.model("model.tflite")["baseline"]["heads"][head["name"]]["paired"] is True
    assert f"golden outputs of '{head['name']}' not compared: float32 [32, 10] in the baseline, int16" in message


def test_a_configured_baseline_folder_stays_inside_the_project(tmp_path: Path) -> None:
    cwd = tmp_path / "repo"
    write(cwd / "pyproject.toml", """
        [tool.qcheck]
        baseline = "../elsewhere"
    """)
    shutil.copy(FIXTURES / "digits_cnn.keras", cwd / "model.keras")
    run = run_qcheck(cwd, "--qcheck-model=model.keras", "--qcheck-baseline-update")
    assert run.returncode == 4, run.stdout
    assert "[tool.qcheck] baseline leads to" in run.stdout and "outside the project folder" in run.stdout
    assert not (tmp_path / "elsewhere").exists()


def test_update_needs_a_baseline_folder(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, "--qcheck-model=model.keras", "--qcheck-baseline-update")
    assert run.returncode == 4 and "--qcheck-baseline-update needs the baseline folder" in run.stdout


# -- the files, read as untrusted ------------------------------------------------------------------


def _record(*, correct: np.ndarray | None = None, sha: str = "a" * 64, size: float = 1000.0,
            toolchain: dict[str, str] | None = None) -> Record:
    outcomes = np.ones(40, bool) if correct is None else correct
    golden = np.arange(20, dtype=np.int8).reshape(4, 5)
    head = Head("cls", "classification", "correct", outcomes, golden, 0.1)
    return Record("m.keras", toolchain or toolchain_versions(), sha,
                  {"size": Figure(size, "bytes"), "sram": Figure(2048.0, "bytes")}, "ethos-u55-128", len(outcomes),
                  "d" * 64, np.array([0, 10, 20, 39]), (head,))


def _written(folder: Path, rec: Record | None = None) -> tuple[Path, Path]:
    return write_baseline(folder, "m", rec or _record(), InputFiles())


def test_files_round_trip_deterministically(tmp_path: Path) -> None:
    rec = _record(correct=np.arange(40) % 3 != 0)
    assert encode(rec, "m.npz") == encode(rec, "m.npz")
    _written(tmp_path)
    again = read(tmp_path, "m")
    assert again is not None
    assert again.figures == rec.figures and again.toolchain == rec.toolchain
    first = (tmp_path / "m.npz").read_bytes()
    _written(tmp_path / "b")
    assert (tmp_path / "b" / "m.npz").read_bytes() == first  # no time of writing in the archive
    assert read(tmp_path / "nothing", "m") is None


def test_a_baseline_behind_a_link_is_refused(tmp_path: Path) -> None:
    json_path, _ = _written(tmp_path / "real")
    (tmp_path / "bl").mkdir()
    shutil.copy(tmp_path / "real" / "m.npz", tmp_path / "bl" / "m.npz")
    os.symlink(json_path, tmp_path / "bl" / "m.json")
    with pytest.raises(QcheckError, match="is a symbolic link") as error:
        read(tmp_path / "bl", "m")
    assert error.value.path == str(tmp_path / "bl" / "m.json")
    with pytest.raises(QcheckError, match="not a file qcheck wrote"):  # and never written through
        _written(tmp_path / "bl")


def test_a_huge_baseline_is_refused(tmp_path: Path) -> None:
    json_path, _ = _written(tmp_path)
    json_path.write_bytes(b" " * (MAX_JSON_BYTES + 1))
    with pytest.raises(QcheckError, match="more than a baseline file may be"):
        read(tmp_path, "m")


def test_a_fifo_in_place_of_a_baseline_is_refused(tmp_path: Path) -> None:
    json_path, _ = _written(tmp_path)
    json_path.unlink()
    os.mkfifo(json_path)
    with pytest.raises(QcheckError, match="FIFO"):
        read(tmp_path, "m")


def _replace_arrays(folder: Path, **arrays: np.ndarray) -> None:
    """Write other arrays into m.npz (pickles allowed: the reader must refuse them) and make the
    JSON name their hash, as a hostile pull request could."""
    import hashlib

    json_path, npz_path = paths(folder, "m")
    with np.load(npz_path, allow_pickle=False) as old:
        merged = {name: old[name] for name in old.files} | arrays
    np.savez(npz_path, **merged)
    document = json.loads(json_path.read_text())
    document["arrays"]["sha256"] = hashlib.sha256(npz_path.read_bytes()).hexdigest()
    json_path.write_text(json.dumps(document))


def test_arrays_of_the_wrong_shape_are_refused_naming_the_file(tmp_path: Path) -> None:
    _, npz_path = _written(tmp_path)
    _replace_arrays(tmp_path, golden_0=np.zeros((4, 6), np.int8))
    with pytest.raises(QcheckError, match=r"array 'golden_0' must be int8 of shape \[4, 5\]") as error:
        read(tmp_path, "m")
    assert error.value.path == str(npz_path)


def test_a_pickled_array_is_refused(tmp_path: Path) -> None:
    _written(tmp_path)
    _replace_arrays(tmp_path, outcomes_0=np.array([{"run": "code"}], dtype=object))
    with pytest.raises(QcheckError, match="array 'outcomes_0' cannot be read: Object arrays cannot be loaded"):
        read(tmp_path, "m")


def test_arrays_changed_without_the_json_are_refused(tmp_path: Path) -> None:
    _, npz_path = _written(tmp_path)
    npz_path.write_bytes(npz_path.read_bytes() + b"\0")
    with pytest.raises(QcheckError, match="does not match m.json"):
        read(tmp_path, "m")


def test_json_fields_are_validated(tmp_path: Path) -> None:
    json_path, _ = _written(tmp_path)
    document = json.loads(json_path.read_text())
    document["figures"]["size"]["value"] = "big"
    json_path.write_text(json.dumps(document))
    with pytest.raises(QcheckError, match="'figures.size.value' must be a finite number"):
        read(tmp_path, "m")


# -- judging -------------------------------------------------------------------------------------


def _outcomes(lost: int, gained: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    base = np.ones(n, bool)
    base[:gained] = False
    now = base.copy()
    now[:gained] = True
    now[gained:gained + lost] = False
    return base, now


def test_noise_on_the_paired_samples_passes_and_a_real_drop_fails() -> None:
    base, now = _outcomes(lost=4, gained=2)  # 0.5 points lost, as noise gives it
    comparison = compare(_record(correct=base), _record(correct=now), {"accuracy": 0.002})
    assert comparison.failures == []
    assert comparison.section["heads"]["cls"]["lost"] == 4
    base, now = _outcomes(lost=12, gained=1)  # 2.75 points, beyond chance
    failures = compare(_record(correct=base), _record(correct=now), {}).failures
    assert len(failures) == 1 and failures[0].startswith("head 'cls' accuracy") and "McNemar" in failures[0]


def test_growth_beyond_the_tolerance_fails_naming_the_figure() -> None:
    from qcheck.baseline.compare import tolerance

    base, grown = _record(size=1000.0), _record(size=1030.0)
    assert compare(base, grown, {"size": tolerance("bytes")("5%")}).failures == []
    failures = compare(base, grown, {}).failures  # default 2%
    assert len(failures) == 1 and failures[0].startswith("size grew")
    assert compare(base, grown, {"size": tolerance("bytes")("40B")}).failures == []


def _golden(rec: Record, golden: np.ndarray) -> Record:
    from dataclasses import replace

    return replace(rec, heads=(replace(rec.heads[0], golden=golden),))


def test_golden_outputs_that_move_with_the_same_bytes_fail_naming_output_and_samples() -> None:
    base = _record()
    moved = base.heads[0].golden.copy()
    moved[2, 3] += 2  # sample 20, output [3], two steps
    comparison = compare(base, _golden(base, moved), {})
    (failure,) = comparison.failures
    assert "golden outputs of 'cls' moved on 1 of 4 samples (samples 20), up to 2 steps" in failure
    assert "first: sample 20, output [3] 13 -> 15" in failure
    assert "the runtime computes the model differently" in failure
    assert compare(base, _golden(base, moved), {"golden_steps": 2.0}).failures == []
    # Other bytes: the move is reported, and the figures judge.
    other = _golden(_record(sha="b" * 64), moved)
    assert compare(base, other, {}).failures == []
    assert any("moved on 1 of 4 samples" in line for line in compare(base, other, {}).lines)


def test_what_changed_is_told_apart() -> None:
    tools = toolchain_versions()
    older = {**tools, "tensorflow": "2.0.0"}
    assert compare(_record(), _record(), {}).lines[0] == "quantized bytes and toolchain unchanged"
    assert compare(_record(sha="b" * 64), _record(), {}).lines[0].startswith(
        "the model changed: its quantized bytes differ, with the same tensorflow and toolchain")
    assert compare(_record(toolchain=older), _record(), {}).lines[0] == (
        f"quantized bytes unchanged; the toolchain changed: tensorflow 2.0.0 -> {tools['tensorflow']}")
    assert compare(_record(toolchain=older, sha="b" * 64), _record(), {}).lines[0].startswith(
        f"the quantized bytes differ and the toolchain changed (tensorflow 2.0.0 -> {tools['tensorflow']})")


def test_suite_tolerances_are_validated_when_the_suite_loads(tmp_path: Path) -> None:
    from qcheck.baseline.compare import Tolerance
    from qcheck.suites import load_suite

    suite = write(tmp_path / "team.toml", """
        extends = "default"
        [checks.baseline]
        size = "5%"
        sram = "1KB"
        accuracy = "1%"
    """)
    options = load_suite(str(suite)).checks["baseline"].options
    assert options["size"] == Tolerance(relative=0.05) and options["sram"] == Tolerance(absolute=1000)
    assert options["accuracy"] == pytest.approx(0.01)
    write(suite, """
        [checks.baseline]
        layer_error = 3
    """)
    with pytest.raises(QcheckError, match=r"checks.baseline.layer_error: must be a share such as \"10%\""):
        load_suite(str(suite))


def test_figures_are_measured_with_the_suites_options(project: Path) -> None:
    # strict judges the upper end of the drop's interval: the baseline records what the check reports.
    run = _qcheck(project, "--qcheck-calibration=cal_full.npz", "--qcheck-set=accuracy_drop.strict=true",
                  "--qcheck-baseline-update")
    drop = run.check("model.keras", "accuracy_drop")["value"]
    figure = json.loads((project / "bl" / "model.json").read_text())["figures"]["accuracy_drop"]["value"]
    assert drop > 0.005 and figure == pytest.approx(drop, rel=1e-5)
    assert "baseline updated" in run.stdout and "accuracy_drop: 0.00% -> " in run.stdout


def test_errors_are_judged_on_the_paired_change() -> None:
    from dataclasses import replace

    rng = np.random.default_rng(0)
    errors = rng.uniform(0.01, 0.03, 400).astype(np.float32)

    def with_errors(values: np.ndarray) -> Record:
        rec = _record()
        return replace(rec, samples=400, heads=(replace(rec.heads[0], outcome="error", task="regression",
                                                        outcomes=values),))

    noisy = errors + rng.normal(0, 0.002, 400).astype(np.float32)  # no real change
    assert compare(with_errors(errors), with_errors(noisy), {"accuracy": 0.0}).failures == []
    worse = errors + 0.01  # every sample a point of the range worse
    (failure,) = compare(with_errors(errors), with_errors(worse), {}).failures
    assert failure.startswith("head 'cls' error (share of the float range)") and "paired change 95% CI" in failure
    # Stored as float16 and read back: still finite, still judged the same.
    tmp = with_errors(worse)
    text, npz = encode(tmp, "m.npz")
    from qcheck.baseline.store import decode

    again = decode(text, npz, Path("m.json"), Path("m.npz"))
    assert again.heads[0].outcomes.dtype == np.float16
    assert compare(with_errors(errors), again, {}).failures


def test_under_xdist_each_worker_writes_its_models_baselines(project: Path) -> None:
    shutil.copy(project / "model.keras", project / "other.keras")
    args = ("--qcheck-model=model.keras", "--qcheck-model=other.keras", f"--qcheck-data={DATA}",
            "--qcheck-calibration=cal_full.npz", "--qcheck-baseline=bl", "-n", "2")
    run = run_qcheck(project, *args, "--qcheck-baseline-update")
    assert run.returncode == 0, run.stdout
    # The controller prints what the workers wrote: the new model's baseline, and the other unchanged.
    assert f"baseline written (new): {project / 'bl' / 'other.json'}" in run.stdout
    assert f"baseline unchanged: {project / 'bl' / 'model.json'}" in run.stdout
    ours, theirs = (json.loads((project / "bl" / f"{stem}.json").read_text()) for stem in ("model", "other"))
    assert (theirs["model"], theirs["arrays"]["file"]) == ("other.keras", "other.npz")
    assert (ours["source"], theirs["source"]) == ("../model.keras", "../other.keras")
    assert {**ours, "model": "", "arrays": "", "source": ""} == {**theirs, "model": "", "arrays": "",
                                                                 "source": ""}  # the same model
    again = run_qcheck(project, *args)
    assert again.returncode == 0 and {r["status"] for r in (again.check("model.keras", "baseline"),
                                                            again.check("other.keras", "baseline"))} == {"passed"}
