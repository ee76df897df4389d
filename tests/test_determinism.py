"""The same model, data and options give the same quantized bytes and the same numbers.

The main path runs twice on a Keras model, each run converting it (no cache), each in its own
folder with its own TMPDIR. The two runs must agree byte for byte on the quantized model and
on every number of the JSON report; and the conversions must leave the user's files and the
temporary folder as they found them.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck

MODEL_NAME = "..%2f..%2fdigits cnn.keras"  # a name that tries to leave its folder
STEM = "2f.._2fdigits_cnn"


@dataclass(frozen=True)
class Runs:
    first: QcheckRun
    second: QcheckRun
    tmpdirs: tuple[Path, Path]
    inputs: dict[Path, str]  # the user's files and their sha256 before the runs


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("determinism")
    shared = root / "inputs"
    shared.mkdir()
    model, data = shared / MODEL_NAME, shared / "digits.npz"
    shutil.copyfile(FIXTURES / "digits_cnn.keras", model)
    shutil.copyfile(FIXTURES / "digits.npz", data)
    inputs = {p: sha256(p) for p in (model, data)}
    done, tmpdirs = [], []
    for name in ("first", "second"):
        cwd, tmpdir = root / name, root / f"{name}_tmp"
        tmpdir.mkdir()
        done.append(run_qcheck(cwd, f"--qcheck-model={model}", f"--qcheck-data={data}", "--qcheck-no-cache",
                               env={"TMPDIR": str(tmpdir)}))
        tmpdirs.append(tmpdir)
    return Runs(done[0], done[1], (tmpdirs[0], tmpdirs[1]), inputs)


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs between runs by design: artifact paths, cache notes."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "artifacts"}
        if isinstance(value, list):
            return [clean(v) for v in value if not (isinstance(v, str) and "cache" in v)]
        return value

    cleaned: dict[str, Any] = clean(report)
    return cleaned


def test_both_runs_convert_and_check_the_model(runs: Runs) -> None:
    for run in (runs.first, runs.second):
        assert "Traceback" not in run.stdout
        (entry,) = run.report["models"]
        assert len(entry["checks"]) >= 6
        assert not [c for c in entry["checks"] if "could not be measured" in c["message"]]
        assert not any("cache" in note for note in entry.get("notes", []))  # each run converted


def test_the_quantized_model_is_the_same_bytes(runs: Runs) -> None:
    first = (runs.first.out_dir / f"{STEM}_quant.tflite").read_bytes()
    assert first[4:8] == b"TFL3"
    assert first == (runs.second.out_dir / f"{STEM}_quant.tflite").read_bytes()


def test_every_number_of_the_report_is_the_same(runs: Runs) -> None:
    first, second = _numbers(runs.first.report), _numbers(runs.second.report)
    assert first["models"][0]["accuracy"]  # the comparison covers the measured accuracy
    assert first == second


def test_the_artifacts_are_the_same(runs: Runs) -> None:
    for name in (f"{STEM}_quantization_info.json",
                 f"{STEM}_vela/ethos-u55-128/{STEM}_quant_vela.tflite",
                 f"{STEM}_vela/ethos-u55-128/{STEM}_quant_per-layer.csv",
                 f"{STEM}_vela/ethos-u55-128/{STEM}_quant_vela.log"):  # Vela's console: no scratch path
        assert (runs.first.out_dir / name).read_bytes() == (runs.second.out_dir / name).read_bytes(), name


def test_conversion_leaves_the_users_files_and_the_temporary_folder_alone(runs: Runs) -> None:
    assert {p: sha256(p) for p in runs.inputs} == runs.inputs
    assert [list(t.iterdir()) for t in runs.tmpdirs] == [[], []]


def test_a_converted_models_artifacts_stay_in_the_output_folder(runs: Runs) -> None:
    cwd = runs.first.out_dir.parent  # the run's folder: nothing else writes there
    outside = [p for p in cwd.rglob("*") if p.is_file() and not p.is_relative_to(runs.first.out_dir)]
    assert outside == [cwd / "report.json"]
    assert sorted(p.name for p in (cwd.parent / "inputs").iterdir()) == ["..%2f..%2fdigits cnn.keras", "digits.npz"]
    assert (runs.first.out_dir / f"{STEM}_quant.tflite").is_file()
