"""int16x8 conversions and the converter outputs a user may hand in by mistake (issue 16 items 4, 5).

``[quantization] activations = "int16"`` in a suite, or ``--qcheck-activations=int16``, converts a
float model with int16 activations and int8 weights; float16-quantized and int16x8-with-float-I/O
models are named in the failure with the conversion that fixes them. TensorFlow runs only in child
processes: qcheck's own, and the one that builds the models users hand in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck, write

from qcheck.errors import QcheckError
from qcheck.suites import load_suite

DIGITS = FIXTURES / "digits_cnn.keras"
DATA = FIXTURES / "digits.npz"
INT16_NOTE = "converted to int16x8 (int16 activations, int8 weights; int16 input and output)"

# Converts the digits CNN as a user might by mistake: float16-quantized, and int16x8 without
# integer I/O types (float32 at the input and output).
MAKE_MISTAKES = """
import sys
from pathlib import Path
import numpy as np
import keras
import tensorflow as tf

model = keras.saving.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])["x"][:64].astype(np.float32)
out = Path(sys.argv[3])
i = keras.Input(batch_shape=(1, 8, 8, 1))
wrapper = keras.Model(i, model(i))

c = tf.lite.TFLiteConverter.from_keras_model(wrapper)
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.target_spec.supported_types = [tf.float16]
(out / "digits_float16.tflite").write_bytes(c.convert())

c = tf.lite.TFLiteConverter.from_keras_model(wrapper)
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = lambda: ([s[None]] for s in x)
c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
(out / "digits_int16x8_float_io.tflite").write_bytes(c.convert())
"""


# -- the [quantization] table of a suite ------------------------------------------------------------


def test_a_suite_sets_int16_activations_and_a_suite_extending_it_inherits_them(tmp_path: Path) -> None:
    base = write(tmp_path / "int16.toml", """
        extends = "ethos-u55"
        [quantization]
        activations = "int16"
    """)
    write(tmp_path / "child.toml", """
        extends = "int16.toml"
        [checks.accuracy_drop]
        max = "1%"
    """)
    assert load_suite(str(base)).quantization_for().activations == "int16"
    assert load_suite(str(base)).quantization_for().kind == "int16x8"
    child = load_suite(str(tmp_path / "child.toml"))
    assert child.quantization_for().activations == "int16"
    assert child.quantization_for("int8").activations == "int8"  # the command line wins
    assert load_suite("default").quantization_for().activations == "int8"
    assert child.quantization_for().key() != load_suite("default").quantization_for().key()


def test_activations_int4_is_a_suite_error_naming_the_key_and_the_allowed_values(tmp_path: Path) -> None:
    suite = write(tmp_path / "bad.toml", """
        [quantization]
        activations = "int4"
    """)
    with pytest.raises(QcheckError) as err:
        load_suite(str(suite))
    assert str(suite) in str(err.value)
    assert "quantization.activations must be one of \"int8\", \"int16\", not 'int4'" in str(err.value)


@pytest.mark.parametrize(("table", "expected"), [
    ('[quantization]\nactivation = "int16"\n', "[quantization]: unknown key 'activation' (did you mean 'activations'?)"),
    ('[quantization]\nint4_layers = ["conv1"]\n', "[quantization]: unknown key 'int4_layers'"),  # int16_layers is one now
    ('quantization = "int16"\n', "'quantization' must be a table ([quantization]), not 'int16'"),
])
def test_an_unknown_or_misshapen_quantization_key_is_refused_by_name(tmp_path: Path, table: str, expected: str) -> None:
    suite = write(tmp_path / "bad.toml", table)
    with pytest.raises(QcheckError) as err:
        load_suite(str(suite))
    assert str(suite) in str(err.value) and expected in str(err.value)


def test_activations_int4_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={DIGITS}", "--qcheck-activations=int4")
    assert run.returncode == 4
    assert "--qcheck-activations: invalid choice: 'int4'" in run.stdout and "'int16'" in run.stdout


# -- converting with int16 activations --------------------------------------------------------------


@pytest.fixture(scope="session")
def int16_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """The digits CNN converted with --qcheck-activations=int16, checked for Ethos-U55."""
    return run_qcheck(tmp_path_factory.mktemp("int16"), f"--qcheck-model={DIGITS}", f"--qcheck-data={DATA}",
                      "--qcheck-suite=ethos-u55", "--qcheck-activations=int16")


def test_activations_int16_converts_to_int16x8_which_is_fully_quantized(int16_run: QcheckRun) -> None:
    assert int16_run.returncode == 0, int16_run.stdout
    model = int16_run.model("digits_cnn.keras")
    info = model["quantization_info"]
    assert info["quantization"] == "int16x8"
    assert info["fully_quantized"] and info["float32_tensors"] == 0
    assert [io["dtype"] for io in info["input"] + info["output"]] == ["int16", "int16"]
    assert info["input"][0]["zero_point"] == 0  # int16 is symmetric
    assert info["dtypes"]["int16"] > 0 and info["dtypes"]["int8"] > 0  # int16 activations, int8 weights
    assert "int64" in info["dtypes"]  # 16x8 biases are int64 constants, not int32 activations
    fully = int16_run.check("digits_cnn.keras", "fully_quantized")
    assert fully["status"] == "passed" and "int16" in fully["message"]
    assert "int32 activation" not in fully["message"]
    assert any(n.startswith(INT16_NOTE) for n in model["notes"])
    # Vela 5.2 places every operator of the 16x8 digits model on the NPU.
    assert int16_run.check("digits_cnn.keras", "vela")["value"] == 0
    accuracy = int16_run.check("digits_cnn.keras", "accuracy_drop")
    assert accuracy["status"] == "passed" and "340 samples" in accuracy["message"]
    assert (int16_run.out_dir / "digits_cnn_quant.tflite").stat().st_size == info["size_bytes"]


def test_a_suite_file_converts_int16_the_command_line_overrides_it_and_the_cache_tells_them_apart(
        tmp_path: Path) -> None:
    cache = f"--qcheck-cache-dir={tmp_path / 'cache'}"
    first = run_qcheck(tmp_path / "int8", f"--qcheck-model={DIGITS}", f"--qcheck-data={DATA}", "-k", "fully_quantized",
                       cache)
    assert first.model("digits_cnn.keras")["quantization_info"]["quantization"] == "full-integer"
    project = tmp_path / "project"
    write(project / "qcheck_int16.toml", f"""
        model = "{DIGITS}"
        data = "{DATA}"
        [quantization]
        activations = "int16"
        [checks.vela]
        enabled = false
    """)
    from_file = run_qcheck(project, "-k", "fully_quantized", cache)
    model = from_file.model("digits_cnn.keras")
    assert model["quantization_info"]["quantization"] == "int16x8"  # not the int8 conversion from the cache
    assert "quantized model and float outputs taken from the cache" not in model["notes"]
    assert any(n.startswith(INT16_NOTE) for n in model["notes"])
    overridden = run_qcheck(project, "-k", "fully_quantized", cache, "--qcheck-activations=int8")
    model = overridden.model("digits_cnn.keras")
    assert model["quantization_info"]["quantization"] == "full-integer"
    assert "quantized model and float outputs taken from the cache" in model["notes"]  # the first run's


def test_an_int16x8_tflite_is_checked_as_it_is_and_activations_said_not_to_apply(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'model_kinds' / 'digits_int16x8.tflite'}",
                     "-k", "fully_quantized", "--qcheck-activations=int16")
    model = run.model("digits_int16x8.tflite")
    assert model["quantization_info"]["quantization"] == "int16x8"
    assert run.check("digits_int16x8.tflite", "fully_quantized")["status"] == "passed"
    assert any('activations = "int16" is not applied: a .tflite is checked as it is' in n for n in model["notes"])


# -- converter outputs handed in by mistake ---------------------------------------------------------


@pytest.fixture(scope="session")
def mistakes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float16-quantized and an int16x8-with-float32-I/O conversion of the digits CNN."""
    out = tmp_path_factory.mktemp("mistakes")
    subprocess.run([sys.executable, "-c", MAKE_MISTAKES, str(DIGITS), str(DATA), str(out)],
                   check=True, capture_output=True, timeout=600)
    return out


def test_a_float16_model_fails_named_with_how_to_convert_to_full_integer(mistakes: Path, tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={mistakes / 'digits_float16.tflite'}", "-k", "fully_quantized")
    check = run.check("digits_float16.tflite", "fully_quantized")
    assert check["status"] == "failed"
    assert ("float16 quantized: float16 weights, float32 activations; convert with a representative dataset "
            "and TFLITE_BUILTINS_INT8 instead of float16") in check["message"]
    assert run.model("digits_float16.tflite")["quantization_info"]["quantization"] == "float16"


def test_int16x8_with_float_io_is_told_to_use_int16_io(mistakes: Path, tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={mistakes / 'digits_int16x8_float_io.tflite'}", "-k", "fully_quantized")
    check = run.check("digits_int16x8_float_io.tflite", "fully_quantized")
    assert check["status"] == "failed"
    assert "int16 inside, float32 at the input and output" in check["message"]
    # TensorFlow refuses int8 and uint8 I/O for a 16x8 conversion: the fix must name int16.
    hint = check["message"].split("try: ", 1)[1]
    assert "inference_input_type = tf.int16" in hint and "inference_output_type = tf.int16" in hint
    assert "tf.int8" not in hint


def test_an_int8_io_with_int16_activations_is_a_usage_error(tmp_path: Path) -> None:
    suite = write(tmp_path / "int16.toml", """
        [quantization]
        activations = "int16"
    """)
    run = run_qcheck(tmp_path, f"--qcheck-model={DIGITS}", f"--qcheck-suite={suite}", "--qcheck-io=int8")
    assert run.returncode == 4
    assert "--qcheck-io=int8 does not apply to int16 activations" in run.stdout


def test_a_users_marked_test_and_the_python_api_convert_int16_too(tmp_path: Path) -> None:
    # The marker's test takes the run's activations; the API takes its suite's [quantization].
    write(tmp_path / "test_user.py", f"""
        import pytest

        @pytest.mark.qcheck(model="{DIGITS}", data="{DATA}")
        def test_kind(qcheck_quantized):
            assert qcheck_quantized.quantization_info["quantization"] == "int16x8"
            assert qcheck_quantized.input_params["image"].dtype == "int16"
    """)
    marked = run_qcheck(tmp_path, "test_user.py", "--qcheck-activations=int16")
    assert marked.returncode == 0, marked.stdout[-3000:]
    suite = write(tmp_path / "int16.toml", """
        [quantization]
        activations = "int16"
    """)
    script = (f"import qcheck\nq = qcheck.quantize({str(DIGITS)!r}, {str(DATA)!r}, suite={str(suite)!r})\n"
              "print(q.quantization_info['quantization'])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["int16x8"]


def test_int16_layers_are_calibrated_on_the_datas_minimum_and_maximum() -> None:
    # ai-edge-quantizer's default calibration is a moving average of each sample's extremes:
    # hello_world_float's input got 0..4.06 from samples spanning 0..6.27, so a third of the inputs
    # clipped, and the int16_layers remedy on an MLPerf Tiny ad01 twin lost 7.7 points (its input
    # range -58..4.7 on data spanning -72..20) where whole-model int8 lost 0.8: the remedy row blamed
    # int16 for what its calibration did. TensorFlow's converter takes the minimum and maximum.
    import numpy as np

    from ai_edge_litert.interpreter import Interpreter
    from helpers import REAL
    from qcheck.tflite.mixed import quantize_int16_layers

    model = REAL / "tflm" / "hello_world_float.tflite"
    x = np.random.default_rng(0).uniform(0, 2 * np.pi, (100, 1)).astype(np.float32)
    tflite, _ = quantize_int16_layers(model.read_bytes(), {"x": x}, ("dense_1",), model)
    interpreter = Interpreter(model_content=tflite)
    entry = interpreter.get_input_details()[0]
    scale, zero_point = entry["quantization"]
    low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
    assert low <= x.min() and high >= x.max() - scale / 2, (low, high)
    assert any(t["dtype"] == np.int16 for t in interpreter.get_tensor_details())  # dense_1 in int16
