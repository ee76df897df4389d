"""Say why, not only that: the guilty layer, mismatched calibration, honest intervals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck

# The measured case of FIELD.md: one output channel of the first conv scaled x1000 and the next
# conv's weights for that channel scaled back, so the float model computes the same function.
MAKE_OUTLIER = """
import sys, keras
model = keras.saving.load_model(sys.argv[1], compile=False)
convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
first, second = convs[0], convs[1]
kernel, bias = first.get_weights()
kernel[..., 0] *= 1000.0
bias[0] *= 1000.0
first.set_weights([kernel, bias])
kernel2, bias2 = second.get_weights()
kernel2[:, :, 0, :] /= 1000.0
second.set_weights([kernel2, bias2])
model.save(sys.argv[2])
"""


@pytest.fixture(scope="module")
def outlier_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    cwd = tmp_path_factory.mktemp("outlier")
    subprocess.run([sys.executable, "-c", MAKE_OUTLIER, str(FIXTURES / "digits_cnn.keras"), str(cwd / "outlier.keras")],
                   check=True, capture_output=True)
    return run_qcheck(cwd, f"--qcheck-model={cwd / 'outlier.keras'}", f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
                      f"--qcheck-data={FIXTURES / 'digits.npz'}", "--qcheck-set", "accuracy_drop.strict=true",
                      "--qcheck-max-accuracy-drop=1%", "--qcheck-set", "layer_error.enabled=true", "-k", "not vela")


def test_the_outlier_channel_layer_is_named_as_the_cause(outlier_run: QcheckRun) -> None:
    check = outlier_run.check("outlier.keras", "accuracy_drop")
    assert check["passed"] is False
    accuracy = outlier_run.model("outlier.keras")["accuracy"]["digit"]
    assert accuracy["float"] > 0.95 and accuracy["drop"] > 0.3  # the float model is unchanged
    message = check["message"]
    # The error shows in the next layer, but the cause is the first conv's stretched range.
    assert "likely cause: CONV_2D" in message and "conv1" in message.split("likely cause:")[1]
    assert "channel 0 spans" in message
    assert "rebalance the outlier channel" in message
    layers = {layer["name"].split(";")[0]: layer for layer in outlier_run.model("outlier.keras")["layers"]}
    first = next(v for k, v in layers.items() if "conv1" in k)
    assert first["channels"]["crushed"] is True and first["channels"]["widest"] == 0


def test_layer_error_reports_every_layer_against_the_float_model(outlier_run: QcheckRun) -> None:
    good = outlier_run.model("digits_cnn.keras")
    assert outlier_run.check("digits_cnn.keras", "layer_error")["passed"] is True
    assert outlier_run.check("outlier.keras", "layer_error")["passed"] is False
    layers = good["layers"]
    assert len(layers) >= 5 and all(layer["rmse_steps"] >= 0 and layer["sqnr_db"] > 20 for layer in layers)
    tensors = good["tensors"]
    assert all(0 < t["levels_used"] <= t["levels"] == 256 for t in tensors)
    assert not any(t["channels"]["crushed"] for t in layers if "channels" in t)


def test_strict_mode_judges_the_upper_bound_of_the_interval(outlier_run: QcheckRun) -> None:
    check = outlier_run.check("digits_cnn.keras", "accuracy_drop")
    head = outlier_run.model("digits_cnn.keras")["accuracy"]["digit"]
    assert head["ci_low"] <= head["drop"] <= head["ci_high"]
    assert head["drop"] < 0.01 < head["ci_high"]  # passes on the point estimate, not on the bound
    assert check["passed"] is False and check["value"] == head["ci_high"]
    assert "strict" in check["message"]


def test_calibration_data_preprocessed_differently_is_diagnosed(tmp_path: Path) -> None:
    data = np.load(FIXTURES / "digits.npz")
    np.savez(tmp_path / "scaled.npz", x=data["x"][:200] * 0.3)  # the representative set, scaled by mistake
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
                     "--qcheck-calibration=scaled.npz", "-k", "saturation or accuracy_drop")
    saturation = run.check("digits_cnn.keras", "saturation")
    assert saturation["passed"] is False
    assert "worst: input" in saturation["message"]
    assert "look preprocessed differently" in saturation["message"] or "looks preprocessed differently" in saturation["message"]
    calibration = run.model("digits_cnn.keras")["calibration"]
    ratio = (calibration["evaluation_input"]["high"] - calibration["evaluation_input"]["low"]) / (
        calibration["calibration_input"]["high"] - calibration["calibration_input"]["low"])
    assert ratio == pytest.approx(1 / 0.3, rel=0.01)
    assert run.model("digits_cnn.keras")["saturation"]["input"] > 0.1


def test_dynamic_batch_is_reported_with_the_fix(pytester: pytest.Pytester) -> None:
    from helpers import REAL

    # A dynamic batch alone fails only with strict = true (for a runtime pinned to an old TFLite Micro).
    result = pytester.runpytest(f"--qcheck-model={REAL / 'mlperf_tiny/vww_96_int8.tflite'}", "-k", "static_shapes",
                                "--qcheck-set", "static_shapes.strict=true", "--qcheck-json=r.json")
    result.assert_outcomes(failed=1, deselected=6)
    (check,) = json.loads((pytester.path / "r.json").read_text())["models"][0]["checks"]
    assert "input 'input_1_int8' [-1, 96, 96, 3]" in check["message"]
    assert "batch_size=1" in check["message"] and "not rewritten" in check["message"]
