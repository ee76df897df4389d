"""Models as users have them: Keras 2 (tf.keras) `.h5` files, loaded with tf_keras when Keras 3
cannot, and SavedModels that only the TF1 converter takes (issue 16, items 1 and 2).

The models are written as their authors wrote them, with tf_keras and with `tf.compat.v1`,
trained on the digits' training split, in a child process: TensorFlow is never imported in
the pytest process that runs the plugin.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, REAL, QcheckRun, run_qcheck, without_tf_keras

# Every Keras 2 model has a DepthwiseConv2D: its config carries 'groups', which Keras 3 refuses,
# so these files take the tf_keras route (as MLPerf Tiny's vww_96.h5 does).
BUILD = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import tf_keras

sys.path.insert(0, sys.argv[2])
from make_fixtures import load_digits_split

out = sys.argv[1]
x, y, _, _ = load_digits_split()
L = tf_keras.layers


def trunk(inp):
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inp)
    h = L.DepthwiseConv2D(3, padding="same", name="depthwise")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="relu")(h)
    h = L.MaxPooling2D(2, name="pool")(h)
    return L.Flatten(name="flatten")(h)


tf_keras.utils.set_random_seed(0)
inp = tf_keras.Input((8, 8, 1), name="image")
model = tf_keras.Model(inp, L.Dense(10, activation="softmax", name="digit")(trunk(inp)))
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, y, epochs=15, batch_size=32, verbose=0)
model.save(os.path.join(out, "keras2_dw_bn.h5"))

tf_keras.utils.set_random_seed(0)
inp = tf_keras.Input((8, 8, 1), name="image")
h = L.Dense(32, activation="relu", name="shared")(trunk(inp))
zeta = L.Dense(10, activation="softmax", name="zeta")(h)
alpha = L.Dense(2, activation="softmax", name="alpha")(h)
model = tf_keras.Model(inp, [zeta, alpha])  # declared zeta first: not alphabetical
model.compile("adam", ["sparse_categorical_crossentropy"] * 2)
model.fit(x, [y, (y % 2 == 0).astype(np.int64)], epochs=15, batch_size=32, verbose=0)
model.save(os.path.join(out, "keras2_two_heads.h5"))

# A Lambda whose code writes a file when it runs (tf_keras runs it while loading, safe mode or not).
marker = os.path.join(out, "lambda_ran")


def plant(t, marker=marker):  # the path travels as the default: the bytecode is stored, not the globals
    open(marker, "w").write("written by the Lambda layer")
    return t


inp = tf_keras.Input((8, 8, 1), name="image")
h = L.Lambda(plant, name="plant")(L.DepthwiseConv2D(3, name="depthwise")(inp))
tf_keras.Model(inp, L.Dense(10, activation="softmax")(L.Flatten()(h))).save(os.path.join(out, "keras2_lambda.h5"))

# TensorFlow calls on Keras tensors, recorded as TFOpLambda / SlicingOpLambda layers naming the function.
inp = tf_keras.Input((8, 8, 1), name="image")
h = tf.nn.relu6(L.DepthwiseConv2D(3, padding="same", name="depthwise")(inp) * 2.0)[:, 1:, 1:, :]
tf_keras.Model(inp, L.Dense(10, activation="softmax")(L.Flatten()(h))).save(os.path.join(out, "keras2_tf_ops.h5"))

# A Keras 2 model trained with a (legacy) optimizer and saved as a SavedModel, as TF 2.3 did:
# the optimizer's slot variables are in the object graph. Two heads, declared zeta first.
tf_keras.utils.set_random_seed(0)
inp = tf_keras.Input((8, 8, 1), name="image")
h = L.Flatten()(L.MaxPooling2D(2)(L.Conv2D(8, 3, padding="same", activation="relu")(inp)))
h = L.Dense(32, activation="relu")(h)
model = tf_keras.Model(inp, [L.Dense(10, activation="softmax", name="zeta")(h),
                             L.Dense(2, activation="softmax", name="alpha")(h)])
model.compile(tf_keras.optimizers.legacy.Adam(), ["sparse_categorical_crossentropy"] * 2)
model.fit(x, [y, (y % 2 == 0).astype(np.int64)], epochs=15, batch_size=32, verbose=0)
model.save(os.path.join(out, "optimizer_savedmodel"), save_format="tf")

# A TF1 graph: placeholders, variables, a Session, simple_save.
v1 = tf.compat.v1
graph = tf.Graph()
with graph.as_default():
    v1.set_random_seed(0)
    image = v1.placeholder(tf.float32, [None, 8, 8, 1], name="image")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    w1 = v1.get_variable("w1", [3, 3, 1, 8])
    b1 = v1.get_variable("b1", [8], initializer=v1.zeros_initializer())
    h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(image, w1, 1, "SAME") + b1), 2, 2, "VALID")
    h = tf.reshape(h, [-1, 4 * 4 * 8])
    w2 = v1.get_variable("w2", [128, 10])
    b2 = v1.get_variable("b2", [10], initializer=v1.zeros_initializer())
    logits = tf.matmul(h, w2) + b2
    digit = tf.nn.softmax(logits, name="digit")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    step = v1.train.AdamOptimizer(0.01).minimize(loss)
    with v1.Session(graph=graph) as session:
        session.run(v1.global_variables_initializer())
        for epoch in range(15):
            for i in range(0, len(x), 32):
                session.run(step, {image: x[i:i + 32], labels: y[i:i + 32]})
        v1.saved_model.simple_save(session, os.path.join(out, "tf1_savedmodel"), inputs={"image": image},
                                   outputs={"digit": digit})
'''


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keras2_tf1")
    subprocess.run([sys.executable, "-c", BUILD, str(folder), str(FIXTURES)], check=True, capture_output=True,
                   timeout=900)
    (folder / "lambda_ran").unlink(missing_ok=True)  # tf_keras ran the Lambda when building the model
    return folder


def notes(run: QcheckRun, model: str) -> list[str]:
    return list(run.model(model).get("notes", []))


def assert_quantized_and_accurate(run: QcheckRun, model: str, heads: set[str]) -> None:
    for name in ("fully_quantized", "accuracy_drop"):
        check = run.check(model, name)
        assert check["passed"] is True, check["message"]
    accuracy = run.model(model)["accuracy"]
    assert set(accuracy) == heads
    for head in accuracy.values():
        assert head["float"] > 0.85 and head["quantized"] > 0.85 and abs(head["drop"]) < 0.03
    info = run.model(model)["quantization_info"]
    assert info["input"][0]["shape"] == info["input"][0]["shape_signature"] == [1, 8, 8, 1]


# -- Keras 2 .h5 files: tf_keras takes what Keras 3 refuses --------------------------------------------


@pytest.fixture(scope="module")
def keras2_run(made: Path) -> QcheckRun:
    return run_qcheck(made / "keras2_run", f"--qcheck-model={made / 'keras2_dw_bn.h5'}",
                      f"--qcheck-data={FIXTURES / 'digits.npz'}", "--qcheck-set", "layer_error.enabled=true",
                      "-k", "fully_quantized or accuracy_drop or layer_error", timeout=600)


def test_a_keras2_h5_with_depthwise_and_batchnorm_is_quantized_through_tf_keras(keras2_run: QcheckRun) -> None:
    assert keras2_run.returncode == 0, keras2_run.stdout
    assert_quantized_and_accurate(keras2_run, "keras2_dw_bn.h5", {"digit"})
    assert any(note.startswith("loaded with tf_keras 2.") and "Keras 3." in note and "groups" in note
               for note in notes(keras2_run, "keras2_dw_bn.h5")), notes(keras2_run, "keras2_dw_bn.h5")


def test_per_layer_error_of_a_tf_keras_model_is_measured_against_its_float_twin(keras2_run: QcheckRun) -> None:
    assert keras2_run.check("keras2_dw_bn.h5", "layer_error")["passed"] is True
    layers = keras2_run.model("keras2_dw_bn.h5")["layers"]
    names = " ".join(layer["name"] for layer in layers)
    # The quantized model's tensors were paired by name with the float twin's, layer by layer.
    assert "depthwise" in names and "conv" in names
    assert all(layer["sqnr_db"] > 20 for layer in layers)


def test_a_keras2_two_head_model_is_matched_by_name(made: Path) -> None:
    cwd = made / "two_heads_run"
    cwd.mkdir()
    data = np.load(FIXTURES / "multihead.npz")
    # The labels in the order the heads were declared, but the file names them: pairing by
    # position would score the 10-class labels on the 2-class head.
    np.savez(cwd / "heads.npz", x=data["x"], y_zeta=data["y_zeta"], y_alpha=data["y_alpha"])
    run = run_qcheck(cwd, f"--qcheck-model={made / 'keras2_two_heads.h5'}", "--qcheck-data=heads.npz",
                     "-k", "fully_quantized or accuracy_drop", timeout=600)
    assert run.returncode == 0, run.stdout
    assert_quantized_and_accurate(run, "keras2_two_heads.h5", {"zeta", "alpha"})
    assert any(note.startswith("loaded with tf_keras") for note in notes(run, "keras2_two_heads.h5"))


def test_an_h5_lambda_is_refused_before_tf_keras_could_run_it(made: Path) -> None:
    cwd = made / "lambda_refused"
    run = run_qcheck(cwd, f"--qcheck-model={made / 'keras2_lambda.h5'}", "-k", "fully_quantized", timeout=300)
    message = run.check("keras2_lambda.h5", "fully_quantized")["message"]
    assert "contains a Lambda layer, whose Python code would run on load" in message
    assert "--qcheck-unsafe-deserialization" in message
    assert not (made / "lambda_ran").exists()


def test_an_h5_lambda_loads_through_tf_keras_with_the_opt_in(made: Path) -> None:
    cwd = made / "lambda_opted_in"
    run = run_qcheck(cwd, f"--qcheck-model={made / 'keras2_lambda.h5'}", "--qcheck-unsafe-deserialization",
                     "-k", "fully_quantized", timeout=300)
    assert run.check("keras2_lambda.h5", "fully_quantized")["passed"] is True, run.stdout
    assert any(note.startswith("loaded with tf_keras") for note in notes(run, "keras2_lambda.h5"))
    assert (made / "lambda_ran").read_text() == "written by the Lambda layer"
    (made / "lambda_ran").unlink()


def test_tf_calls_in_an_h5_load_when_tensor_math_and_are_refused_otherwise(made: Path, tmp_path: Path) -> None:
    import h5py

    # The same file naming tf.io.write_file where it named tf.nn.relu6: tf_keras would look it up
    # among all of TensorFlow and run it with the model.
    shutil.copy(made / "keras2_tf_ops.h5", tmp_path / "writes.h5")
    with h5py.File(tmp_path / "writes.h5", "r+") as h5:
        config = h5.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else str(config)
        assert '"nn.relu6"' in config
        h5.attrs["model_config"] = config.replace('"nn.relu6"', '"io.write_file"')
    run = run_qcheck(tmp_path, f"--qcheck-model={made / 'keras2_tf_ops.h5'}", "--qcheck-model=writes.h5",
                     "-k", "fully_quantized", timeout=300)
    assert run.check("keras2_tf_ops.h5", "fully_quantized")["passed"] is True, run.stdout
    message = run.check("writes.h5", "fully_quantized")["message"]
    assert (f"{tmp_path / 'writes.h5'}: calls TensorFlow functions by name that are not tensor math, which would "
            "run with the model: tf.io.write_file") in message
    assert "math.multiply" not in message and "--qcheck-unsafe-deserialization" in message


def test_without_tf_keras_the_message_says_how_to_get_it(made: Path, tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={made / 'keras2_dw_bn.h5'}", "-k", "fully_quantized",
                     env=without_tf_keras(tmp_path / "hidden"), timeout=300)
    message = run.check("keras2_dw_bn.h5", "fully_quantized")["message"]
    first_line = message.splitlines()[0]
    assert f"{made / 'keras2_dw_bn.h5'}: Keras 3." in first_line
    assert first_line.endswith("could not load the model: Unrecognized keyword arguments passed to "
                               "DepthwiseConv2D: {'groups': 1}")
    assert "qcheck loads it with tf_keras, which is not installed: pip install \"tf-keras~=2." in message
    assert "config=" not in message and "depthwise_initializer" not in message


def test_a_truncated_h5_is_a_named_error(made: Path, tmp_path: Path) -> None:
    whole = (made / "keras2_dw_bn.h5").read_bytes()
    (tmp_path / "truncated.h5").write_bytes(whole[: len(whole) // 2])
    run = run_qcheck(tmp_path, "--qcheck-model=truncated.h5", f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
                     "-k", "fully_quantized", timeout=300)
    message = run.check("truncated.h5", "fully_quantized")["message"]
    assert f"{tmp_path / 'truncated.h5'}: is not a readable Keras model (" in message
    assert "truncated" in message
    assert run.check("digits_cnn.keras", "fully_quantized")["passed"] is True  # the session went on


def test_the_mlperf_tiny_resnet_h5_still_loads_in_keras3(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={REAL / 'mlperf_tiny' / 'pretrainedResnet.h5'}",
                     "-k", "fully_quantized", timeout=600)
    assert run.check("pretrainedResnet.h5", "fully_quantized")["passed"] is True, run.stdout
    assert not any("tf_keras" in note for note in notes(run, "pretrainedResnet.h5"))


# -- SavedModels: the TF1 converter when TensorFlow 2's loader fails -------------------------------------


def test_a_tf1_graph_savedmodel_is_quantized_with_the_right_verdicts(made: Path) -> None:
    run = run_qcheck(made / "tf1_run", f"--qcheck-model={made / 'tf1_savedmodel'}", "--qcheck-unsafe-deserialization",
                     f"--qcheck-data={FIXTURES / 'digits.npz'}", "-k", "fully_quantized or accuracy_drop",
                     timeout=600)
    assert run.returncode == 0, run.stdout
    assert_quantized_and_accurate(run, "tf1_savedmodel", {"digit"})


@pytest.fixture(scope="module")
def optimizer_run(made: Path, tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """The Keras 2 SavedModel with optimizer slots, where tf_keras is not installed: TensorFlow 2's
    loader revives the optimizer as a plain object and fails on its slots, as on MLPerf Tiny's
    TF 2.3 keyword-spotting model."""
    hidden = tmp_path_factory.mktemp("hidden")
    return run_qcheck(made / "optimizer_run", f"--qcheck-model={made / 'optimizer_savedmodel'}",
                      "--qcheck-unsafe-deserialization", f"--qcheck-data={FIXTURES / 'multihead.npz'}",
                      "-k", "fully_quantized or accuracy_drop", env=without_tf_keras(hidden), timeout=600)


def test_a_savedmodel_tf2_cannot_load_is_converted_with_the_tf1_converter(optimizer_run: QcheckRun) -> None:
    assert optimizer_run.returncode == 0, optimizer_run.stdout
    # Outputs named by the signature's keys (the TF1 converter writes no signature), paired by
    # name with the labels y_zeta and y_alpha: by position, accuracy would collapse.
    assert_quantized_and_accurate(optimizer_run, "optimizer_savedmodel", {"zeta", "alpha"})
    said = notes(optimizer_run, "optimizer_savedmodel")
    assert any(note.startswith("converted with the TF1 converter (tf.compat.v1.lite.TFLiteConverter.from_saved_model")
               and "[1, 8, 8, 1]" in note and "'_UserObject' object has no attribute 'add_slot'" in note
               for note in said), said
    assert "float outputs: the float model of the same TF1 conversion, run in LiteRT" in said


def test_the_tf1_route_still_needs_the_opt_in(made: Path, tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={made / 'optimizer_savedmodel'}", "-k", "fully_quantized",
                     env=without_tf_keras(tmp_path / "hidden"), timeout=300)
    message = run.check("optimizer_savedmodel", "fully_quantized")["message"]
    assert "is a SavedModel: loading it runs TensorFlow functions stored in it" in message


def test_a_savedmodel_with_damaged_variables_names_both_failures(made: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged_savedmodel"
    shutil.copytree(made / "optimizer_savedmodel", damaged)
    (data,) = (damaged / "variables").glob("variables.data-*")
    data.write_bytes(data.read_bytes()[:100])
    run = run_qcheck(tmp_path, f"--qcheck-model={damaged}", "--qcheck-unsafe-deserialization", "-k", "fully_quantized",
                     env=without_tf_keras(tmp_path / "hidden"), timeout=300)
    message = run.check("damaged_savedmodel", "fully_quantized")["message"]
    assert f"{damaged}: TensorFlow 2 could not load the SavedModel (" in message
    assert "nor could the TF1 converter: " in message


def test_a_savedmodel_tf2_cannot_load_serves_as_the_reference_of_a_quantized_model(
        made: Path, optimizer_run: QcheckRun, tmp_path: Path) -> None:
    # The MLPerf Tiny case: the int8 .tflite checked against the float SavedModel it came from.
    (quantized,) = optimizer_run.out_dir.rglob("*_quant.tflite")
    shutil.copy(quantized, tmp_path / "int8.tflite")
    run = run_qcheck(tmp_path, "--qcheck-model=int8.tflite", f"--qcheck-reference={made / 'optimizer_savedmodel'}",
                     "--qcheck-unsafe-deserialization", f"--qcheck-data={FIXTURES / 'multihead.npz'}",
                     "-k", "accuracy_drop", env=without_tf_keras(tmp_path / "hidden"), timeout=600)
    assert run.check("int8.tflite", "accuracy_drop")["passed"] is True, run.stdout
    accuracy = run.model("int8.tflite")["accuracy"]
    assert set(accuracy) == {"zeta", "alpha"}
    assert all(head["float"] > 0.85 and abs(head["drop"]) < 0.03 for head in accuracy.values())
