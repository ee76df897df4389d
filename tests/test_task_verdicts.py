"""Wrong accuracy_drop verdicts found by the red-team review (items 1-6 and 12c), each pinned.

The metrics are pure numpy, tested directly on arrays shaped like the reviewed models' outputs;
the verdicts are tested as users get them (a new pytest process: real conversions, the real
LiteRT interpreter) on tiny models built in a child process, so TensorFlow is never imported here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers import FIXTURES, QcheckRun, run_qcheck, write
from qcheck.checks.tasks import infer_task, judge_head, reconstructs
from qcheck.data import load_npz
from qcheck.errors import QcheckError
from qcheck.suites import load_suite

# -- the models, built once in a child process ---------------------------------------------------

_BUILD = textwrap.dedent('''
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    out, fixtures = sys.argv[1], sys.argv[2]
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8)).astype(np.float32)

    # 1: logits, one of them a large constant (-3000) that sets the int8 scale: every int8 output equal.
    i = keras.Input((8,)); h = keras.layers.Dense(16, activation="relu")(i); o = keras.layers.Dense(10, name="logits")(h)
    m = keras.Model(i, o); W, b = m.layers[-1].get_weights(); W[:, 9] = 0; b[9] = -3000; m.layers[-1].set_weights([W, b])
    m.save(f"{out}/logits_crushed.keras"); np.savez(f"{out}/x8.npz", x=x)

    # 4: a regression in [0.05, 0.35] whose hidden range is crushed by a constant 3000, and a sigmoid;
    # each also as a float-I/O .tflite (QUANTIZE in, DEQUANTIZE out).
    def float_io(model, name):
        c = tf.lite.TFLiteConverter.from_keras_model(model); c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[j:j + 1]] for j in range(200))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        open(f"{out}/{name}_floatio.tflite", "wb").write(c.convert())
    i = keras.Input((8,)); h = keras.layers.Dense(16, activation="relu")(i); o = keras.layers.Dense(1, name="level")(h)
    m = keras.Model(i, o)
    W, b = m.layers[1].get_weights(); W[:, 0] = 0; b[0] = 3000; m.layers[1].set_weights([W, b])
    W2, b2 = m.layers[2].get_weights(); W2[0, 0] = 0
    p = (x @ W + b).clip(0) @ W2
    W2 = W2 * 0.3 / (p.max() - p.min()); b2[:] = 0.05 - p.min() * 0.3 / (p.max() - p.min())
    m.layers[2].set_weights([W2, b2]); m.save(f"{out}/level.keras"); float_io(m, "level")
    i = keras.Input((8,)); h = keras.layers.Dense(16, activation="relu")(i)
    o = keras.layers.Dense(1, activation="sigmoid", name="p")(h)
    m = keras.Model(i, o); m.save(f"{out}/sigmoid.keras"); float_io(m, "sigmoid")

    # 2: the outlier autoencoder fixture behind its own Rescaling(1/255), on frames in 0..255.
    frames = np.load(f"{fixtures}/frames.npz")["x"]
    for name in ("autoencoder", "autoencoder_outlier"):
        inner = keras.saving.load_model(f"{fixtures}/{name}.keras")
        i = keras.Input(frames.shape[1:]); o = inner(keras.layers.Rescaling(1 / 255.0)(i))
        keras.Model(i, o).save(f"{out}/{name}_rescaled.keras")
    np.savez(f"{out}/frames255.npz", x=(frames * 255).astype(np.float32))
''')


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("review_models")
    subprocess.run([sys.executable, "-c", _BUILD, str(out), str(FIXTURES)], check=True, timeout=600)
    return out


def _check(run: QcheckRun, model: str) -> dict[str, object]:
    return dict(run.check(model, "accuracy_drop"))


def _head(run: QcheckRun, model: str) -> dict[str, object]:
    return dict(next(iter(run.model(model)["accuracy"].values())))


# -- 1: a constant int8 output never passes -------------------------------------------------------


def test_constant_output_fails_whatever_the_task() -> None:
    """Logits whose int8 output is one row for every sample (one score at -3000 sets the scale):
    the cosine is 1.0000, so as an 'embedding' it passed at 0.00%."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 10))
    f[:, 9] = -3000.0
    q = np.tile(np.r_[np.zeros(9), -3000.0], (200, 1))
    for declared in (None, "embedding", "regression", "classification"):
        result = judge_head("logits", f, q, None, rng.normal(size=(200, 8)), declared)
        assert any("the same for all 200 samples" in f for f in result.failures), (declared, result)


def test_two_valued_but_faithful_binary_output_is_not_collapsed() -> None:
    """A confident sigmoid whose int8 output is only 0 or 1 where the float is near 0 or 1 is fine."""
    rng = np.random.default_rng(1)
    f = np.where(rng.random((100, 1)) < 0.5, 1e-4, 1 - 1e-4) + rng.uniform(-5e-5, 5e-5, (100, 1))
    q = np.round(f)
    assert judge_head("p", f, q, None, np.zeros((100, 3)), None, output_scale=1 / 256).failures == ()


def test_crushed_logits_without_labels_fail(built: Path, tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={built / 'logits_crushed.keras'}", f"--qcheck-data={built / 'x8.npz'}",
                     "-k", "accuracy_drop")
    check = _check(run, "logits_crushed.keras")
    assert check["passed"] is False, check["message"]
    assert "the same for all 200 samples" in str(check["message"])


# -- 4: a float-I/O model is judged like its int8-output twin -------------------------------------


def test_float_output_model_is_judged_by_the_int8_scale_behind_its_dequantize(built: Path, tmp_path: Path) -> None:
    """level_floatio.tflite (a regression in [0, 1]) passed as 'binary'; level.keras failed."""
    run = run_qcheck(tmp_path, f"--qcheck-model={built / 'level_floatio.tflite'}",
                     f"--qcheck-reference={built / 'level.keras'}", f"--qcheck-data={built / 'x8.npz'}",
                     "-k", "accuracy_drop")
    check = _check(run, "level_floatio.tflite")
    assert check["passed"] is False, check["message"]
    assert _head(run, "level_floatio.tflite")["task"] == "regression"
    # The twin with a sigmoid: its DEQUANTIZE reads an int8 tensor of the fixed 1/256 scale.
    run = run_qcheck(tmp_path / "sigmoid", f"--qcheck-model={built / 'sigmoid_floatio.tflite'}",
                     f"--qcheck-reference={built / 'sigmoid.keras'}", f"--qcheck-data={built / 'x8.npz'}",
                     "-k", "accuracy_drop")
    assert _head(run, "sigmoid_floatio.tflite")["task"] == "binary"


def test_values_in_0_1_alone_are_not_a_sigmoid() -> None:
    rng = np.random.default_rng(2)
    f = rng.uniform(0.05, 0.35, (50, 1))
    assert judge_head("level", f, f, None, np.zeros((50, 8)), None).task == "regression"


# -- 2: reconstruction error in the output's units -------------------------------------------------


def test_reconstruction_is_measured_in_the_output_units() -> None:
    """Input in 0..255, output in 0..1 (a Rescaling in the model): the error against raw x is x
    itself, the same for both models, so a broken reconstruction had Spearman 1.0 and passed."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (200, 16))
    f = x / 255 + rng.normal(0, 0.01, x.shape)
    q = np.clip(f + rng.normal(0, 0.3, x.shape), 0, 1)  # a reconstruction quantization broke
    result = judge_head("ae", f, q, None, x, None)
    assert result.task == "reconstruction"
    assert result.loss > 0.2 and result.failures, result.describe()
    good = judge_head("ae", f, f + rng.normal(0, 1e-4, x.shape), None, x, None)
    assert good.loss < 0.03 and good.failures == (), good.describe()


def test_rescaled_outlier_autoencoder_fails_like_the_plain_one(built: Path, tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={built / 'autoencoder_outlier_rescaled.keras'}",
                     f"--qcheck-model={built / 'autoencoder_rescaled.keras'}",
                     f"--qcheck-data={built / 'frames255.npz'}", "-k", "accuracy_drop")
    broken = _check(run, "autoencoder_outlier_rescaled.keras")
    assert broken["passed"] is False, broken["message"]
    assert "output's units" in str(broken["message"])
    good = _check(run, "autoencoder_rescaled.keras")
    assert good["passed"] is True, good["message"]


# -- 3: reversed anomaly labels, and max_score_change with labels ---------------------------------


def _autoencoder_outputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    y = (rng.random(200) < 0.3).astype(np.int64)
    x = rng.uniform(0, 1, (200, 16))
    f = x + rng.normal(0, 0.02, x.shape) * np.where(y == 1, 10, 1)[:, None]  # anomalies reconstruct worse
    return x, f, y, rng.normal(0, 0.05, x.shape)


def test_reversed_anomaly_labels_fail_and_say_so() -> None:
    x, f, y, noise = _autoencoder_outputs()
    q = f + noise  # quantization worsens every reconstruction: the AUC against reversed labels rises
    result = judge_head("ae", f, q, 1 - y, x, None)
    assert result.numbers["float"] is not None and result.numbers["float"] < 0.5
    assert any("labels look reversed" in f and "y = 1 - y" in f for f in result.failures), result.failures
    assert judge_head("ae", f, f, y, x, None).failures == ()


def test_max_score_change_applies_with_labels() -> None:
    x, f, y, noise = _autoencoder_outputs()
    result = judge_head("ae", f, f + noise, y, x, None)
    assert result.labelled and result.numbers["mean_score_change"] is not None
    assert any("max_score_change" in f for f in result.failures), result.failures


# -- 6: a softmax or a mask of the input's shape is no reconstruction -----------------------------


def test_softmax_of_the_input_shape_is_classification() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(100, 10))
    f = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert infer_task(f, None, (10,))[0] == "classification"
    labels = f.argmax(axis=1)
    assert judge_head("probs", f, f, labels, x, None).task == "classification"  # was an error


def test_sigmoid_mask_of_the_input_shape_is_not_a_reconstruction() -> None:
    rng = np.random.default_rng(6)
    x = rng.uniform(size=(100, 8, 8, 1))
    f = 1 / (1 + np.exp(-rng.normal(size=x.shape)))  # does not follow the input
    assert judge_head("mask", f, f, None, x, None, output_scale=1 / 256).task != "reconstruction"


# -- 5: integer labels are class indices only one per sample or one-hot ---------------------------


def _labels(tmp_path: Path, y: np.ndarray) -> np.ndarray:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((len(y), 4), np.float32), y=y)
    return load_npz(path).labels[""]


def test_integer_coordinates_are_regression_targets(tmp_path: Path) -> None:
    y = np.array([[48, 50], [12, 70], [0, 3]], np.float32)
    labels = _labels(tmp_path, y)
    assert labels.shape == (3, 2) and labels.dtype == np.float32
    f = np.random.default_rng(7).normal(size=(3, 2))
    assert infer_task(f, labels, (4,))[0] == "regression"


def test_one_hot_rows_are_class_indices(tmp_path: Path) -> None:
    assert _labels(tmp_path, np.eye(4, dtype=np.int64)[[2, 0, 3]]).tolist() == [2, 0, 3]


def test_multi_hot_labels_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(QcheckError, match="multi-hot"):
        _labels(tmp_path, np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0]]))


def test_negative_whole_number_targets_are_regression(tmp_path: Path) -> None:
    labels = _labels(tmp_path, np.array([-1, 0, 1, -1], np.float32))
    assert labels.dtype == np.float32
    assert infer_task(np.zeros((4, 1)), labels, (4,))[0] == "regression"


# -- 12c: a suite that only sets task keeps the default max ---------------------------------------


def test_suite_setting_only_task_keeps_the_default_max(tmp_path: Path) -> None:
    path = write(tmp_path / "reg.toml", """
        [checks.accuracy_drop]
        task = "regression"
    """)
    spec = load_suite(str(path)).checks["accuracy_drop"]
    assert spec.max == load_suite("default").checks["accuracy_drop"].max == pytest.approx(0.03)
    assert spec.options == {"task": "regression"}


def test_an_autoencoder_with_normal_anomaly_labels_is_no_classifier_on_data_it_does_not_follow() -> None:
    # MLPerf Tiny's ad01 (640 in, 640 out) against a float twin, fed frames unlike its training
    # data: the output does not follow the input, and its 0/1 labels were taken for class indices
    # of 640 'classes': "top-1 float 0.0% -> quantized 0.0%", a pass whatever quantization did.
    rng = np.random.default_rng(8)
    x = rng.normal(size=(200, 16))
    f = np.tanh(rng.normal(size=(200, 16)))  # does not follow the input
    y = np.arange(200) % 2
    task, why = infer_task(f, y, (16,), x=x)
    assert task == "reconstruction" and "labels are normal/anomaly" in why and "preprocessed" in why
    q = f + rng.normal(scale=0.5, size=f.shape)  # a damaged int8 model
    result = judge_head("recon", f, q, y, x, None)
    assert result.task == "reconstruction" and result.metric == "AUC drop"
    # Labels that are not 0/1 stay class indices (a 16-class classifier without a softmax).
    assert infer_task(f, np.arange(200) % 16, (16,), x=x)[0] == "classification"
    # A two-class classifier of two features (logits, no softmax) has the input's shape too, and
    # its logits do not follow the input; its 0/1 labels are class indices it mostly gets right.
    points = rng.normal(size=(200, 2))
    classes = (points[:, 0] * points[:, 1] > 0).astype(np.int64)
    logits = np.stack([-points[:, 0] * points[:, 1], points[:, 0] * points[:, 1]], axis=1)
    assert not reconstructs(logits, points) and np.mean(logits.argmax(axis=1) == classes) > 0.9  # the premise
    assert infer_task(logits, classes, (2,), x=points)[0] == "classification"
