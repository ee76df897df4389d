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
    # Every FULLY_CONNECTED has a kernel, but TFLite Micro refuses hybrid models, in its own words.
    assert model["tflm_ops"]["passed"] is False and model["tflm_ops"]["value"] == 10
    assert "Input type: FLOAT32 with filter type: INT8 not supported" in model["tflm_ops"]["message"]
    assert "hybrid (dynamic-range" in model["tflm_ops"]["message"]
    assert model["arena"]["passed"] is None and model["arena"]["value"] is None
    assert "Input type: FLOAT32 with filter type: INT8 not supported" in model["arena"]["message"]

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


# -- stateful models: independent samples start from the initial state ------------------------------


def _fresh_per_sample(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Each sample on a new interpreter: what an independent sample gives (raw outputs)."""
    from qcheck.tflite.quant import QuantParams, quantize
    from qcheck.tflite.run import _make_interpreter

    outputs = []
    for sample in x:
        interpreter = _make_interpreter(tflite)
        detail = interpreter.get_input_details()[0]
        scale, zero_point = detail["quantization"]
        feed = sample[None] if scale == 0 else quantize(sample[None], QuantParams(scale, zero_point,
                                                                                   np.dtype(detail["dtype"]).name))[0]
        interpreter.set_tensor(detail["index"], feed)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy())
    return np.stack(outputs)


def test_an_int8_lstm_keeps_state_in_variable_tensors_between_invokes() -> None:
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflite.quant import QuantParams, quantize
    from qcheck.tflite.run import _make_interpreter

    tflite = (KINDS / "lstm_int8.tflite").read_bytes()
    info = inspect_model(tflite)
    assert info.stateful and sum(t.variable for t in info.tensors) == 2  # its hidden and cell state
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in info.operator_counts()
    x = np.load(KINDS / "lstm.npz")["x"]
    interpreter = _make_interpreter(tflite)
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    params = QuantParams(float(scale), int(zero_point), "int8")
    out = interpreter.get_output_details()[0]["index"]

    def once(sample: np.ndarray, reset: bool = False) -> np.ndarray:
        if reset:
            interpreter.reset_all_variables()
        interpreter.set_tensor(detail["index"], quantize(sample[None], params)[0])
        interpreter.invoke()
        return np.array(interpreter.get_tensor(out)[0])

    first = once(x[0])
    once(x[1])
    assert not np.array_equal(once(x[0]), first)  # the same sample again: the state carried over
    assert np.array_equal(once(x[0], reset=True), first)


@pytest.mark.parametrize("analysed", [0, 16])
def test_the_evaluation_equals_a_fresh_interpreter_per_sample(analysed: int) -> None:
    from qcheck.tflite.convert import reference_outputs
    from qcheck.tflite.run import run

    tflite, float_tflite = (KINDS / "lstm_int8.tflite").read_bytes(), (KINDS / "lstm_float.tflite").read_bytes()
    x = np.load(KINDS / "lstm.npz")["x"][:40]
    # With analysis, calibration samples run first on the same interpreter: their state must not leak.
    result = run(tflite, x, float_tflite=float_tflite, calibration=x[::-1][:8] if analysed else None,
                 analysis_samples=analysed)
    (head,) = result.outputs.values()
    assert np.array_equal(head.raw, _fresh_per_sample(tflite, x))
    reference = reference_outputs(KINDS / "lstm_float.tflite", x)
    (values,) = reference.outputs.values()
    np.testing.assert_allclose(values, _fresh_per_sample(float_tflite, x), rtol=0, atol=1e-6)


def test_keep_runs_the_data_as_one_sequence() -> None:
    from qcheck.tflite.run import run

    tflite = (KINDS / "lstm_int8.tflite").read_bytes()
    x = np.load(KINDS / "lstm.npz")["x"][:24]
    kept = next(iter(run(tflite, x, stateful="keep").outputs.values())).raw
    reset = next(iter(run(tflite, x).outputs.values())).raw
    assert np.array_equal(kept[0], reset[0])  # the sequence starts from the initial state
    assert not np.array_equal(kept, reset)
    # One interpreter over the samples in order, without a reset, is what "keep" means.
    from qcheck.tflite.quant import QuantParams, quantize
    from qcheck.tflite.run import _make_interpreter

    interpreter = _make_interpreter(tflite)
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    params = QuantParams(float(scale), int(zero_point), "int8")
    in_order = []
    for sample in x:
        interpreter.set_tensor(detail["index"], quantize(sample[None], params)[0])
        interpreter.invoke()
        in_order.append(np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]))
    assert np.array_equal(kept, np.stack(in_order))


def test_qcheck_scores_the_lstm_as_its_keras_model_does(pytester: pytest.Pytester) -> None:
    # lstm.npz's labels are the Keras model's own top-1 per sample: the float .tflite, each sample
    # independent, scores 100%; carrying state from sample to sample, it scored 43.5%.
    data = np.load(KINDS / "lstm.npz")
    args = (f"--qcheck-model={KINDS / 'lstm_int8.tflite'}", f"--qcheck-reference={KINDS / 'lstm_float.tflite'}",
            f"--qcheck-data={KINDS / 'lstm.npz'}", "-k", "accuracy_drop")
    model = _checks(pytester, *args)["lstm_int8.tflite"]["_model"]
    accuracy = model["accuracy"]["dense"]
    assert accuracy["float"] == 1.0
    fresh = _fresh_per_sample((KINDS / "lstm_int8.tflite").read_bytes(), data["x"]).argmax(axis=1)
    assert accuracy["quantized"] == pytest.approx(float(np.mean(fresh == data["y"])))
    assert any("2 variable tensor(s)" in n and "reset before each sample" in n for n in model["notes"])

    # A suite file's stateful = "keep": the data is one sequence, the state carried.
    (pytester.path / "qcheck_lstm.toml").write_text(
        f'model = "{KINDS / "lstm_int8.tflite"}"\nreference = "{KINDS / "lstm_float.tflite"}"\n'
        f'data = "{KINDS / "lstm.npz"}"\nstateful = "keep"\n')
    pytester.runpytest("-p", "no:cacheprovider", "--qcheck-json=kept.json", "qcheck_lstm.toml", "-k", "accuracy_drop")
    (kept,) = json.loads((pytester.path / "kept.json").read_text())["models"]
    assert kept["accuracy"]["dense"]["float"] < 0.9
    assert any("kept from sample to sample" in n for n in kept["notes"])


# -- too little data, said plainly -------------------------------------------------------------------


def test_calibrating_and_evaluating_on_one_sample_each_is_said(pytester: pytest.Pytester) -> None:
    from helpers import FIXTURES

    digits = np.load(DIGITS)
    np.savez(pytester.path / "two.npz", x=digits["x"][:2], y=digits["y"][:2])  # split: 1 to calibrate, 1 to evaluate
    checks = _checks(pytester, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", "--qcheck-data=two.npz",
                     "-k", "accuracy_drop or saturation")["digits_cnn.keras"]
    notes = checks["_model"]["notes"]
    assert any("calibrated on only 1 sample(s), fewer than the 200" in n for n in notes), notes
    assert any("only 1 evaluation sample(s)" in n for n in notes), notes
    for name in ("accuracy_drop", "saturation"):
        assert "calibrated on only 1 sample(s)" in checks[name]["message"], checks[name]["message"]
    assert "too few" in checks["accuracy_drop"]["message"]


def test_an_interval_wider_than_the_threshold_is_named_on_the_non_strict_path() -> None:
    from qcheck.checks import registry
    from qcheck.results import Measurement
    from qcheck.suites import CheckSpec
    from qcheck.verdict import judge

    check = registry()["accuracy_drop"]
    # 40 samples, quantized better on 2 of them: the point estimate passes and so does the upper
    # bound, but the interval is 10 points wide against a 3-point threshold.
    measured = Measurement(-0.05, "drop -5.00 points", interval=(-0.12, 0.025), samples=40)
    result = judge("m", check, CheckSpec("accuracy_drop", max=0.03), measured)
    assert result.passed is True
    assert "40 samples are too few for a threshold of 3.00%" in result.message
    assert "wider than the threshold" in result.message


def test_the_property_search_runs_each_input_from_the_initial_state(pytester: pytest.Pytester) -> None:
    # robustness runs an input, another, then the first again: with the state reset before each,
    # a stateful model is deterministic (its state is not the property's concern).
    checks = _checks(pytester, f"--qcheck-model={KINDS / 'lstm_int8.tflite'}", "-k", "robustness",
                     "--qcheck-set", "robustness.enabled=true", "--qcheck-set", "robustness.examples=10")
    robustness = checks["lstm_int8.tflite"]["robustness"]
    violations = checks["lstm_int8.tflite"]["_model"]["robustness"]["violations"]
    assert not [v for v in violations if v["property"] == "deterministic"], robustness["message"]
