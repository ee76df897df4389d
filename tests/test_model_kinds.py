"""Right verdicts on real kinds of models: dynamic batches, hybrid and float-I/O models, stateful
models, too little data (issue 14 items 2, 3, 5, 8; issue 21 items 2 and 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REAL
from tflite_edits import edit_model

INT8_MODELS = ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model.tflite", "mlperf_tiny/ad01_int8.tflite",
               "mlperf_tiny/pretrainedResnet_quant.tflite", "tflm/hello_world_int8.tflite"]


def _checks(pytester: pytest.Pytester, *args: str) -> dict[str, dict[str, Any]]:
    """Run qcheck in the pytester folder; checks keyed by model file name, then check name."""
    pytester.runpytest("-p", "no:cacheprovider", "--qcheck-json=r.json", *args)
    report = json.loads((pytester.path / "r.json").read_text())
    return {Path(m["model"]).name: {c["name"]: c for c in m["checks"]} | {"_model": m} for m in report["models"]}


# -- static_shapes: judged by what breaks -----------------------------------------------------------


def test_a_dynamic_batch_alone_passes_with_a_note_on_older_runtimes(pytester: pytest.Pytester) -> None:
    checks = _checks(pytester, "-k", "static_shapes", *(f"--qcheck-model={REAL / n}" for n in INT8_MODELS))
    for name in INT8_MODELS:
        check = checks[Path(name).name]["static_shapes"]
        assert check["passed"] is True, check["message"]
        assert check["value"] == 0
        assert "dynamic batch only" in check["message"] and "[-1, " in check["message"]
        assert "tensorflow#54261" in check["message"] and "tflite-micro#197" in check["message"]


def test_strict_static_shapes_fails_a_dynamic_batch(pytester: pytest.Pytester) -> None:
    checks = _checks(pytester, "-k", "static_shapes", "--qcheck-set", "static_shapes.strict=true",
                     *(f"--qcheck-model={REAL / n}" for n in INT8_MODELS))
    for name in INT8_MODELS:
        check = checks[Path(name).name]["static_shapes"]
        assert check["passed"] is False and check["value"] == 2, check["message"]  # input and output
        assert "strict" in check["message"]


def test_a_dynamic_dimension_past_the_batch_fails(pytester: pytest.Pytester) -> None:
    # ad01 with its 640 input features made dynamic, as a model taking sequences of any length has it.
    def change(model: Any, schema: Any) -> None:
        graph = model.subgraphs[0]
        graph.tensors[int(graph.inputs[0])].shapeSignature = np.array([-1, -1], dtype=np.int32)

    edited = edit_model(REAL / "mlperf_tiny/ad01_int8.tflite", pytester.path / "ad01_any_length.tflite", change)
    checks = _checks(pytester, "-k", "static_shapes", f"--qcheck-model={edited}")
    check = checks["ad01_any_length.tflite"]["static_shapes"]
    assert check["passed"] is False and check["value"] == 1
    assert "past the batch in input 'input_1' [-1, -1]" in check["message"]
    assert "dynamic batch only in output" in check["message"]


# -- what the model is: dynamic-range, float I/O around an int8 body, int16 I/O, NCHW -------------

KINDS = Path(__file__).resolve().parents[1] / "fixtures" / "model_kinds"
DIGITS = Path(__file__).resolve().parents[1] / "fixtures" / "digits.npz"


def test_a_dynamic_range_model_is_named_and_refused_for_tflite_micro(pytester: pytest.Pytester) -> None:
    toycar = REAL / "mlperf_tiny/model_ToyCar_quant.tflite"
    checks = _checks(pytester, "--qcheck-suite=cortex-m", "-k", "fully_quantized or tflm_ops or arena",
                     f"--qcheck-model={toycar}", f"--qcheck-model={REAL / 'mlperf_tiny/ad01_int8.tflite'}",
                     f"--qcheck-model={REAL / 'tflm/hello_world_float.tflite'}")
    model = checks["model_ToyCar_quant.tflite"]
    info = json.loads((pytester.path / "qcheck-out" / "model_ToyCar_quant_quantization_info.json").read_text())
    assert info["quantization"] == "dynamic-range"
    assert len(info["hybrid_operators"]) == 10  # its ten FULLY_CONNECTED layers
    assert model["_model"]["quantization_info"]["quantization"] == "dynamic-range"
    assert model["fully_quantized"]["passed"] is False
    assert ("dynamic-range quantized: int8 weights, float activations; convert with a representative dataset "
            "and TFLITE_BUILTINS_INT8") in model["fully_quantized"]["message"]
    # Every FULLY_CONNECTED has a kernel, but TFLite Micro refuses hybrid models.
    assert model["tflm_ops"]["passed"] is False and model["tflm_ops"]["value"] == 10
    assert "Hybrid models are not supported on TFLite Micro" in model["tflm_ops"]["message"]
    assert model["arena"]["passed"] is None and model["arena"]["value"] is None
    assert "Hybrid models are not supported on TFLite Micro" in model["arena"]["message"]

    assert checks["ad01_int8.tflite"]["_model"]["quantization_info"]["quantization"] == "full-integer"
    assert checks["ad01_int8.tflite"]["tflm_ops"]["passed"] is True
    assert checks["ad01_int8.tflite"]["arena"]["value"] > 0
    hello = checks["hello_world_float.tflite"]
    assert hello["_model"]["quantization_info"]["quantization"] == "float"
    assert "float: nothing is quantized" in hello["fully_quantized"]["message"]


def test_float_io_around_an_int8_body_is_named_with_its_fix_and_clipping_is_measured_at_the_entry(
        pytester: pytest.Pytester) -> None:
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflite.quant import QuantParams, quantize

    model = KINDS / "digits_float_io.tflite"
    x = np.load(DIGITS)["x"] * 1.5  # brighter than calibration: some inputs fall outside the entry's range
    np.savez(pytester.path / "bright.npz", x=x)
    checks = _checks(pytester, f"--qcheck-model={model}", "--qcheck-data=bright.npz",
                     "-k", "fully_quantized or saturation")["digits_float_io.tflite"]
    assert checks["_model"]["quantization_info"]["float_io"] == ["input", "output"]
    quantized = checks["fully_quantized"]
    assert quantized["passed"] is False
    assert "int8 inside, float32 at the input and output" in quantized["message"]
    fix = quantized["message"].split("try:")[1]
    assert "inference_input_type" in fix and "inference_output_type" in fix and "tf.int8" in fix

    # The entry QUANTIZE's int8 output: its scale and zero point decide what is clipped.
    info = inspect_model(model.read_bytes())
    (entry,) = [info.tensor(0, op.outputs[0]) for op in info.operators if op.op == "QUANTIZE"]
    _, clipped = quantize(x, QuantParams(entry.scale[0], entry.zero_point[0], entry.dtype))
    saturation = checks["saturation"]
    assert clipped > 0
    assert saturation["passed"] is False
    assert checks["_model"]["saturation"]["input"] == pytest.approx(clipped / x.size)
    assert f"entry QUANTIZE's int8 output '{entry.name}'" in saturation["message"]


def test_int16x8_and_channels_first_models_are_named_in_the_notes(pytester: pytest.Pytester) -> None:
    checks = _checks(pytester, "-k", "fully_quantized", f"--qcheck-model={KINDS / 'digits_int16x8.tflite'}",
                     f"--qcheck-model={KINDS / 'nchw_input.tflite'}")
    int16 = checks["digits_int16x8.tflite"]["_model"]
    assert int16["quantization_info"]["quantization"] == "int16x8"
    assert any("input" in n and "is int16, not int8/uint8" in n for n in int16["notes"])
    assert any("output" in n and "is int16, not int8/uint8" in n for n in int16["notes"])
    nchw = checks["nchw_input.tflite"]["_model"]
    assert any("[1, 3, 8, 8] looks channels-first (NCHW)" in n for n in nchw["notes"])
