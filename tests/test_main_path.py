"""The main path end to end: real conversions, the real interpreter, real Vela."""

from __future__ import annotations

import json

import numpy as np

from helpers import FIXTURES, QcheckRun

CHECKS = {"fully_quantized", "float32_tensors", "accuracy_drop", "saturation", "static_shapes", "size", "vela"}


def test_good_model_passes_every_check(digits_run: QcheckRun) -> None:
    model = digits_run.model("digits_cnn.keras")
    assert {c["name"] for c in model["checks"]} == CHECKS
    assert all(c["passed"] is True for c in model["checks"]), model["checks"]
    assert model["passed"] is True


def test_one_failing_model_fails_the_run_and_names_the_float_op(digits_run: QcheckRun) -> None:
    assert digits_run.returncode == 1
    check = digits_run.check("float_op.keras", "fully_quantized")
    assert check["passed"] is False
    assert "ELU" in check["message"] and "try:" in check["message"]
    float32 = digits_run.check("float_op.keras", "float32_tensors")
    assert float32["passed"] is False and float32["value"] >= 1


def test_vela_names_cpu_operators_with_reasons(digits_run: QcheckRun) -> None:
    check = digits_run.check("float_op.keras", "vela")
    assert check["passed"] is False and check["variant"] == "ethos-u55-128"
    vela = digits_run.model("float_op.keras")["vela"]["ethos-u55-128"]
    ops = {op["op"].upper() for op in vela["cpu_operators"]}
    assert "ELU" in ops
    assert all(op["reason"] for op in vela["cpu_operators"])
    good = digits_run.model("digits_cnn.keras")["vela"]["ethos-u55-128"]
    assert good["cpu_ops"] == 0 and good["npu_ops"] > 0 and good["sram_bytes"] > 0


def test_accuracy_is_measured_on_samples_kept_apart_from_calibration(digits_run: QcheckRun) -> None:
    n = len(np.load(FIXTURES / "digits.npz")["x"])
    (head,) = digits_run.model("digits_cnn.keras")["accuracy"].values()
    assert head["samples"] == n - 200  # the default 200 calibration samples are not evaluated
    assert head["float"] > 0.9 and head["quantized"] > 0.9
    assert abs(head["drop"] - (head["float"] - head["quantized"])) < 1e-12
    check = digits_run.check("digits_cnn.keras", "accuracy_drop")
    assert check["value"] == head["drop"] and check["threshold"] == 0.03


def test_quantization_info_artifact(digits_run: QcheckRun) -> None:
    info = json.loads((digits_run.out_dir / "digits_cnn_quantization_info.json").read_text())
    assert info["fully_quantized"] is True
    assert info["float32_tensors"] == 0 and info["int8_tensors"] > 0
    assert info["uint8_tensors"] == 2  # uint8 input and output by default
    assert info["input"][0]["dtype"] == "uint8" and info["output"][0]["dtype"] == "uint8"
    assert info["input"][0]["shape_signature"][0] == 1  # static batch
    assert sum(info["operators"].values()) > 0
    assert info["size_bytes"] == (digits_run.out_dir / "digits_cnn_quant.tflite").stat().st_size
    assert digits_run.model("digits_cnn.keras")["quantization_info"] == info


def test_json_report_shape(digits_run: QcheckRun) -> None:
    report = digits_run.report
    assert report["schema_version"] == 1 and report["qcheck_version"]
    assert report["passed"] is False
    for model in report["models"]:
        assert model["suite"] == "default"
        for check in model["checks"]:
            assert set(check) >= {"name", "passed", "value", "threshold", "unit", "message"}


def test_terminal_summary_has_a_table_per_model(digits_run: QcheckRun) -> None:
    out = digits_run.stdout
    assert "digits_cnn.keras: PASS" in out and "float_op.keras: FAIL" in out
    assert "check" in out and "threshold" in out and "verdict" in out
    assert "3 failed, 11 passed" in out
    # The converter's own logs stay out of the report.
    assert "Saved artifact" not in out and "fully_quantize:" not in out


def test_multihead_outputs_are_matched_by_name(multihead_run: QcheckRun) -> None:
    accuracy = multihead_run.model("multihead.keras")["accuracy"]
    labels = np.load(FIXTURES / "multihead.npz")
    assert set(accuracy) == {k[2:] for k in labels.files if k.startswith("y_")}
    # If the heads were paired by position, the 10-class labels would be scored on the
    # 2-class head (or the reverse) and accuracy would collapse.
    for head in accuracy.values():
        assert head["float"] > 0.85 and head["quantized"] > 0.85
    assert multihead_run.returncode == 0, multihead_run.stdout
