"""Multi-input models (issue 16 item 3): data as ``x_<input name>``, matched by name.

``fixtures/two_input.keras`` declares its inputs ``[pixels, level]`` (not alphabetical; the
converter's signature orders them ``level``, ``pixels``); ``pixels`` is a digit with the sample's
``level`` added to every pixel, so the model needs both inputs, each fed to the right tensor, to
classify. Everything runs as users run qcheck: a pytest process with the plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import FIXTURES, QcheckRun, run_qcheck

import qcheck

MODEL = FIXTURES / "two_input.keras"
DATA = FIXTURES / "two_input.npz"
NAME = "two_input.keras"


def _arrays() -> dict[str, np.ndarray]:
    with np.load(DATA) as npz:
        return {name: npz[name] for name in npz.files}


@pytest.fixture(scope="module")
def two_input_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    return run_qcheck(tmp_path_factory.mktemp("two_input"), f"--qcheck-model={MODEL}", f"--qcheck-data={DATA}",
                      "-k", "fully_quantized or accuracy_drop or saturation")


def test_a_two_input_model_is_fully_quantized_with_each_input_its_own_parameters(two_input_run: QcheckRun) -> None:
    assert two_input_run.check(NAME, "fully_quantized")["passed"], two_input_run.stdout
    inputs = {i["name"]: i for i in two_input_run.model(NAME)["quantization_info"]["input"]}
    assert set(inputs) == {"pixels", "level"}
    assert all(i["dtype"] == "uint8" for i in inputs.values())
    # Calibrated per input: pixels span about -3..4, level -3..3.
    assert inputs["pixels"]["scale"] != inputs["level"]["scale"]
    assert inputs["pixels"]["zero_point"] != inputs["level"]["zero_point"]
    notes = " ".join(two_input_run.model(NAME)["notes"])
    assert "2 inputs" in notes and "'level' (uint8" in notes and "'pixels' (uint8" in notes


def test_accuracy_is_measured_against_the_labels_with_each_input_fed_by_name(two_input_run: QcheckRun) -> None:
    check = two_input_run.check(NAME, "accuracy_drop")
    assert check["passed"], check["message"]
    digit = two_input_run.model(NAME)["accuracy"]["digit"]
    assert digit["labelled"] and digit["samples"] == 340
    # Inputs swapped or mixed up would leave the classifier near chance (10%).
    assert digit["float"] > 0.9 and digit["quantized"] > 0.9


def test_saturation_is_measured_per_input(two_input_run: QcheckRun) -> None:
    shares = two_input_run.model(NAME)["saturation"]
    assert set(shares) >= {"input 'level'", "input 'pixels'"}
    assert "input" not in shares
    spreads = two_input_run.model(NAME)["calibration"]["inputs"]
    assert spreads["level"]["evaluation_input"]["high"] < spreads["pixels"]["evaluation_input"]["high"]


def test_an_input_beyond_its_calibrated_range_is_named_by_saturation(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["x_level"] = arrays["x_level"] * 3  # -9..9 against a range calibrated on -3..3
    wide = tmp_path / "wide_level.npz"
    np.savez(wide, **dict[str, Any](arrays))
    run = run_qcheck(tmp_path / "run", f"--qcheck-model={MODEL}", f"--qcheck-data={wide}",
                     f"--qcheck-calibration={DATA}", "-k", "saturation")
    check = run.check(NAME, "saturation")
    assert not check["passed"], check["message"]
    assert "worst: input 'level'" in check["message"]
    shares = run.model(NAME)["saturation"]
    assert shares["input 'level'"] > 0.5  # about 2/3 of the values lie beyond -3..3
    assert shares["input 'pixels'"] < 0.01  # unchanged: calibrated on the same range


def test_a_folder_of_x_name_npy_files_is_read_per_input(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, array in _arrays().items():
        np.save(folder / f"{name}.npy", array)
    run = run_qcheck(tmp_path / "run", f"--qcheck-model={MODEL}", f"--qcheck-data={folder}", "-k", "accuracy_drop")
    check = run.check(NAME, "accuracy_drop")
    assert check["passed"], check["message"]
    assert run.model(NAME)["accuracy"]["digit"]["quantized"] > 0.9


@pytest.mark.parametrize(("drop", "add", "problem"), [
    ("x_level", {}, "no array for the model's input(s) 'level'"),
    ("x_level", {"x_levle": "x_level"}, "array(s) x_levle name no input of the model"),
])
def test_a_missing_or_unknown_input_array_lists_the_models_inputs(tmp_path: Path, drop: str, add: dict[str, str],
                                                                   problem: str) -> None:
    arrays = _arrays()
    for new, old in add.items():
        arrays[new] = arrays[old]
    del arrays[drop]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **dict[str, Any](arrays))
    run = run_qcheck(tmp_path / "run", f"--qcheck-model={MODEL}", f"--qcheck-data={bad}", "-k", "fully_quantized")
    check = run.check(NAME, "fully_quantized")
    assert check["status"] == "error", check
    message = check["error"] or check["message"]
    assert str(bad) in message and problem in message
    assert "the model's inputs are 'level', 'pixels'" in message and "x_level, x_pixels" in message


def test_a_single_x_array_for_a_two_input_model_lists_the_models_inputs(tmp_path: Path) -> None:
    arrays = _arrays()
    bad = tmp_path / "single.npz"
    np.savez(bad, x=arrays["x_pixels"], y=arrays["y"])
    run = run_qcheck(tmp_path / "run", f"--qcheck-model={MODEL}", f"--qcheck-data={bad}", "-k", "fully_quantized")
    check = run.check(NAME, "fully_quantized")
    message = check["error"] or check["message"]
    assert check["status"] == "error" and str(bad) in message, check
    assert "the model has 2 inputs ('level', 'pixels')" in message and "x_level, x_pixels" in message


def test_the_python_api_takes_a_dict_of_arrays_keyed_by_input_name(tmp_path: Path) -> None:
    arrays = _arrays()
    data = {"level": arrays["x_level"], "pixels": arrays["x_pixels"], "y": arrays["y"]}
    q = qcheck.quantize(MODEL, data, out=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert set(q.input_params) == {"level", "pixels"}
    qcheck.assert_fully_quantized(q)
    qcheck.assert_accuracy_drop(q, max="3%")
    assert qcheck.run_check("saturation", q).passed
    # Another data set, as (inputs by name, labels), measured through the same helpers.
    held = qcheck.run_check("accuracy_drop", q, ({"pixels": arrays["x_pixels"][:200], "level": arrays["x_level"][:200]},
                                                 arrays["y"][:200]), max="3%")
    assert held.passed, held.message
    (probabilities,) = q({"pixels": arrays["x_pixels"], "level": arrays["x_level"]}).values()
    assert np.mean(probabilities.argmax(axis=1) == arrays["y"]) > 0.9
    with pytest.raises(ValueError, match="the model's inputs are 'level', 'pixels'"):
        q({"pixels": arrays["x_pixels"]})


def test_the_property_checks_say_multi_input_is_not_supported_yet(tmp_path: Path) -> None:
    q = qcheck.quantize(MODEL, DATA, out=tmp_path / "out", cache_dir=tmp_path / "cache")
    result = qcheck.run_check("robustness", q)
    assert result.passed is None
    assert "2 inputs ('level', 'pixels'): multi-input models are not supported by this check yet" in result.message
