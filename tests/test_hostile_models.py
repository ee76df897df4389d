"""Hostile model and data files: qcheck runs none of their code, never blocks on them, and says
what is wrong with each, while the other models of the session run and the report is written.

The hostile models are made as their authors make them, with TensorFlow, tf_keras and Keras 3,
in a child process: TensorFlow is never imported in the pytest process that runs the plugin.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL, QcheckRun, run_qcheck

from qcheck.data import load_data
from qcheck.errors import QcheckError

HELLO_WORLD = REAL / "tflm" / "hello_world_int8.tflite"  # input (1, 1), output (1, 1)
NOT_MEASURED = "fully_quantized could not be measured: "
NOT_REGULAR_HINT = "give the {what} as a regular file: qcheck does not read pipes, devices or sockets"

# A SavedModel whose resource initializer writes a file (WriteFile runs wherever TensorFlow
# restores the model: tf.saved_model.load, Keras's TFSMLayer, TFLiteConverter.from_saved_model),
# and whose serving function writes another each time it runs; plus Keras files that Keras 3
# cannot load: a tf_keras DepthwiseConv2D (its config carries 'groups'), and custom layers
# whose Python class only their author has.
BUILD = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
import keras
import tf_keras

out = sys.argv[1]


class Planted(tf.saved_model.experimental.TrackableResource):
    def __init__(self, marker):
        super().__init__()
        self._marker = marker

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name=f"planted_{id(self)}")

    def _initialize(self):
        tf.io.write_file(self._marker, "written by the model's initializer")
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.constant(1.0))


class Hostile(tf.Module):
    def __init__(self, folder):
        super().__init__()
        self.planted = Planted(os.path.join(folder, "initializer_ran"))
        self.signature_marker = os.path.join(folder, "signature_ran")
        self.w = tf.Variable([[2.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(self, x):
        tf.io.write_file(self.signature_marker, "written by the model's serving function")
        return {"y": tf.matmul(x, self.w)}


for name in ("refused", "opted_in", "converter"):
    folder = os.path.join(out, name)
    os.makedirs(folder)
    module = Hostile(folder)
    saved = os.path.join(folder, "hostile_savedmodel")
    tf.saved_model.save(module, saved, signatures={"serving_default": module.serve})

inp = tf_keras.Input((8, 8, 3))
x = tf_keras.layers.DepthwiseConv2D(3)(inp)
x = tf_keras.layers.Dense(2, activation="softmax")(tf_keras.layers.Flatten()(x))
tf_keras.Model(inp, x).save(os.path.join(out, "keras2_depthwise.h5"))


class Scale(tf_keras.layers.Layer):
    def call(self, x):
        return x * 2.0


inp = tf_keras.Input((4,))
tf_keras.Model(inp, tf_keras.layers.Dense(2)(Scale()(inp))).save(os.path.join(out, "keras2_custom.h5"))


class Twice(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


inp = keras.Input((4,))
keras.Model(inp, keras.layers.Dense(2)(Twice()(inp))).save(os.path.join(out, "keras3_custom.keras"))
'''


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile_models")
    subprocess.run([sys.executable, "-c", BUILD, str(folder)], check=True, capture_output=True, timeout=600)
    np.savez(folder / "data.npz", x=np.linspace(-1, 1, 64, dtype=np.float32).reshape(64, 1))
    return folder


# -- a SavedModel runs its own functions when loaded: only with the opt-in ----------------------------


@pytest.fixture(scope="module")
def refused_run(made: Path) -> QcheckRun:
    """The hostile SavedModel as a model and as the reference of a quantized model, no opt-in."""
    return run_qcheck(made / "refused", "--qcheck-model=hostile_savedmodel", f"--qcheck-model={HELLO_WORLD}",
                      "--qcheck-reference=hostile_savedmodel", f"--qcheck-data={made / 'data.npz'}",
                      "-k", "fully_quantized or accuracy_drop", timeout=300)


def test_the_savedmodel_fixture_does_write_when_loaded(made: Path) -> None:
    """With the opt-in the hostile SavedModel's initializer runs: what the next test shows never
    happening without it is real."""
    folder = made / "opted_in"
    run = run_qcheck(folder, "--qcheck-model=hostile_savedmodel", f"--qcheck-model={HELLO_WORLD}",
                     "--qcheck-reference=hostile_savedmodel", f"--qcheck-data={made / 'data.npz'}",
                     "--qcheck-unsafe-deserialization", "-k", "fully_quantized or accuracy_drop", timeout=300)
    assert (folder / "initializer_ran").read_text() == "written by the model's initializer"
    assert "is a SavedModel: loading it runs" not in run.stdout


CONVERTER_ONLY = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])
'''


def test_the_converter_alone_runs_the_savedmodels_initializer(made: Path) -> None:
    """Why a SavedModel needs the opt-in rather than a safer loader: the TFLite converter's own
    SavedModel route, before any conversion, restores the model and runs its initializer."""
    folder = made / "converter"
    subprocess.run([sys.executable, "-c", CONVERTER_ONLY, str(folder / "hostile_savedmodel")],
                   check=True, capture_output=True, timeout=300)
    assert (folder / "initializer_ran").read_text() == "written by the model's initializer"
    assert not (folder / "signature_ran").exists()


def test_a_savedmodel_is_loaded_only_with_the_opt_in_and_runs_nothing_without_it(
        made: Path, refused_run: QcheckRun) -> None:
    folder = made / "refused"
    assert not (folder / "initializer_ran").exists()
    assert not (folder / "signature_ran").exists()
    why = (": is a SavedModel: loading it runs TensorFlow functions stored in it (its initializers and restore "
           "functions, before any conversion), which can read and write files\n"
           "  hint: pass --qcheck-unsafe-deserialization if you trust the file (as for a Lambda layer), or give "
           "qcheck the Keras model as a .keras file (as a reference, a float .tflite also does)")
    saved = folder / "hostile_savedmodel"
    # As the model: converted in a child process, which is given the full path.
    assert refused_run.messages("fully_quantized")["hostile_savedmodel"] == NOT_MEASURED + str(saved) + why
    # As the reference of an already quantized model: that model's accuracy check says why.
    accuracy = refused_run.messages("accuracy_drop")[str(HELLO_WORLD)]
    assert str(saved) + why in accuracy
    # The quantized model itself is still checked.
    assert refused_run.check(HELLO_WORLD.name, "fully_quantized")["passed"] is True


# -- pipes, devices and sockets are not model or data files ------------------------------------------


@pytest.fixture(scope="module")
def special_files_run(made: Path) -> Iterator[QcheckRun]:
    """Models that are a FIFO, a socket, a device and a SavedModel holding a FIFO, next to a good model."""
    cwd = made / "special"
    cwd.mkdir()
    os.mkfifo(cwd / "fifo.tflite")
    os.mkfifo(cwd / "fifo.keras")
    (cwd / "zero.tflite").symlink_to("/dev/zero")
    (cwd / "savedmodel_with_fifo" / "variables").mkdir(parents=True)
    (cwd / "savedmodel_with_fifo" / "saved_model.pb").write_bytes(b"\x08\x01")
    os.mkfifo(cwd / "savedmodel_with_fifo" / "variables" / "variables.index")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(cwd / "socket.h5"))
        yield run_qcheck(cwd, "-k", "fully_quantized", "--qcheck-timeout=120",
                         *(f"--qcheck-model={m}" for m in ("fifo.tflite", "fifo.keras", "socket.h5",
                                                            "savedmodel_with_fifo", HELLO_WORLD, "zero.tflite")),
                         timeout=300)


def test_models_that_are_not_regular_files_are_refused_by_name_and_the_others_run(
        special_files_run: QcheckRun) -> None:
    hint = NOT_REGULAR_HINT.format(what="model file")
    found = special_files_run.messages("fully_quantized")
    for model, what in (("fifo.tflite", "a FIFO (named pipe)"), ("fifo.keras", "a FIFO (named pipe)"),
                        ("socket.h5", "a socket"), ("zero.tflite", "a character device")):
        assert found[model] == NOT_MEASURED + f"{model}: is {what}, not a regular file\n  hint: {hint}"
    inside = os.path.join("savedmodel_with_fifo", "variables", "variables.index")
    assert found["savedmodel_with_fifo"] == NOT_MEASURED + (
        f"{inside}: is a FIFO (named pipe), not a regular file\n  hint: every file of a SavedModel must be a "
        "regular file: qcheck does not read pipes, devices or sockets")
    assert special_files_run.check(HELLO_WORLD.name, "fully_quantized")["passed"] is True
    assert "INTERNALERROR" not in special_files_run.stdout and "Traceback" not in special_files_run.stdout
    assert special_files_run.returncode == 1


def test_a_reference_that_is_a_fifo_is_refused_by_name(made: Path) -> None:
    cwd = made / "fifo_reference"
    cwd.mkdir()
    os.mkfifo(cwd / "reference.keras")
    run = run_qcheck(cwd, f"--qcheck-model={HELLO_WORLD}", "--qcheck-reference=reference.keras",
                     f"--qcheck-data={made / 'data.npz'}", "--qcheck-timeout=120", "-k", "accuracy_drop", timeout=300)
    assert (f"{cwd / 'reference.keras'}: is a FIFO (named pipe), not a regular file\n  hint: "
            f"{NOT_REGULAR_HINT.format(what='model file')}") in run.check(HELLO_WORLD.name, "accuracy_drop")["message"]


def _without_blocking(fifo: Path, load: Callable[[], object]) -> QcheckError:
    """The QcheckError ``load`` raises. If ``load`` blocks on ``fifo`` (as a reader of a FIFO
    does until a writer comes), a writer is opened after 20 s to release it and the test fails."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            load()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(20)
        pytest.fail(f"reading the data blocked on the FIFO {fifo}")
    assert raised and isinstance(raised[0], QcheckError), raised
    return raised[0]


def test_data_files_that_are_fifos_are_refused_without_blocking(tmp_path: Path) -> None:
    npz = tmp_path / "data.npz"
    os.mkfifo(npz)
    error = _without_blocking(npz, lambda: load_data(npz))
    hint = NOT_REGULAR_HINT.format(what="data file")
    assert str(error) == f"{npz}: is a FIFO (named pipe), not a regular file\n  hint: {hint}"

    x_fifo = tmp_path / "x_fifo"
    x_fifo.mkdir()
    os.mkfifo(x_fifo / "x.npy")
    error = _without_blocking(x_fifo / "x.npy", lambda: load_data(x_fifo))
    assert error.path == str(x_fifo / "x.npy") and error.problem == "is a FIFO (named pipe), not a regular file"

    y_fifo = tmp_path / "y_fifo"
    y_fifo.mkdir()
    np.save(y_fifo / "x.npy", np.zeros((4, 2), np.float32))
    os.mkfifo(y_fifo / "y.npy")
    error = _without_blocking(y_fifo / "y.npy", lambda: load_data(y_fifo))
    assert error.path == str(y_fifo / "y.npy") and error.problem == "is a FIFO (named pipe), not a regular file"

    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    os.mkfifo(images / "cat" / "a.png")
    error = _without_blocking(images / "cat" / "a.png", lambda: load_data(images))
    assert error.path == str(images / "cat" / "a.png") and error.problem == "is a FIFO (named pipe), not a regular file"


def test_a_data_file_that_is_a_device_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero.npz").symlink_to("/dev/zero")  # read to its end, it would never end
    with pytest.raises(QcheckError) as error:
        load_data(tmp_path / "zero.npz")
    assert error.value.problem == "is a character device, not a regular file"


# -- what Keras says is wrong, not its configuration dump ----------------------------------------------


@pytest.fixture(scope="module")
def keras_errors_run(made: Path) -> QcheckRun:
    return run_qcheck(made, "-k", "fully_quantized", "--qcheck-model=keras2_depthwise.h5",
                      "--qcheck-model=keras2_custom.h5", "--qcheck-model=keras3_custom.keras", timeout=300)


def test_a_keras2_file_keras3_cannot_load_is_loaded_by_tf_keras(keras_errors_run: QcheckRun) -> None:
    # Keras 3's sentence (and how to get tf_keras) when tf_keras is missing: tests/test_keras2_and_tf1.py.
    assert keras_errors_run.check("keras2_depthwise.h5", "fully_quantized")["passed"] is True
    (note,) = [n for n in keras_errors_run.model("keras2_depthwise.h5")["notes"] if "tf_keras" in n]
    assert note.endswith("could not load it (Unrecognized keyword arguments passed to DepthwiseConv2D: {'groups': 1})")
    assert "config=" not in note and "depthwise_initializer" not in note


@pytest.mark.parametrize(("model", "layer"), [("keras2_custom.h5", "Scale"), ("keras3_custom.keras", "Twice")])
def test_a_custom_layer_says_the_model_needs_its_python_class(made: Path, keras_errors_run: QcheckRun,
                                                              model: str, layer: str) -> None:
    message = keras_errors_run.messages("fully_quantized")[model]
    first_line = message.splitlines()[0]
    assert first_line.startswith(NOT_MEASURED + f"{made / model}: needs the Python class of its custom layer or "
                                 f"object '{layer}', which Keras 3.")
    assert "qcheck does not import your code" in message
    assert "Full object config" not in message
