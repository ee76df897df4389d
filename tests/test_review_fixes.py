"""Regression tests for the red-team review's findings 9-12 (review_findings.md), run as users do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES, REAL, run_qcheck, write

HELLO = REAL / "tflm" / "hello_world_int8.tflite"

slow = pytest.mark.slow


# --- 9: a Vela config_file is one small regular file, read once -------------------------------


def _vela_ini() -> Path:
    import ethosu.vela

    return Path(ethosu.vela.__file__).parents[1] / "config_files" / "Arm" / "vela.ini"


def _vela_check(tmp_path: Path, config_file: str) -> dict[str, object]:
    write(tmp_path / "board.toml", f"""
        [checks.vela]
        max = 0
        accelerator = "ethos-u55-128"
        system_config = "Ethos_U55_Deep_Embedded"
        memory_mode = "Shared_Sram"
        config_file = "{config_file}"
    """)
    run = run_qcheck(tmp_path, f"--qcheck-model={HELLO}", "--qcheck-suite=board.toml", "--qcheck-no-cache",
                     "--qcheck-timeout=60", "-k", "vela", timeout=300)
    assert run.report, run.stdout
    return run.check(HELLO.name, "vela")


@slow
def test_a_folder_holding_a_huge_file_as_vela_config_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "bigdir"
    big.mkdir()
    with open(big / "disk.img", "wb") as handle:  # sparse: 64 GiB that take no space
        handle.truncate(64 << 30)

    check = _vela_check(tmp_path, "bigdir")

    assert check["status"] == "error"
    assert "bigdir" in str(check["message"]) and "is a directory" in str(check["message"])


@slow
def test_a_huge_vela_config_file_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "huge.ini", "wb") as handle:
        handle.truncate(8 << 30)

    huge = _vela_check(tmp_path, "huge.ini")

    assert huge["status"] == "error" and "huge.ini" in str(huge["message"])
    assert "8589934592 bytes" in str(huge["message"])


@slow
def test_a_fifo_as_vela_config_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.ini")

    fifo = _vela_check(tmp_path, "pipe.ini")

    assert fifo["status"] == "error" and "pipe.ini" in str(fifo["message"])
    assert "FIFO" in str(fifo["message"])


@slow
def test_a_users_vela_config_file_is_compiled_from_a_private_copy(tmp_path: Path) -> None:
    # A config file that is a link to Vela's own: compiled from a copy named as the user's file.
    (tmp_path / "mine.ini").symlink_to(_vela_ini())

    check = _vela_check(tmp_path, "mine.ini")

    assert check["status"] == "passed", check["message"]
    assert "Ethos_U55_Deep_Embedded" in str(check["message"])


# --- 10: a model behind a link to a blob without a suffix (Hugging Face hub, DVC) -------------


def _blob_link(tmp_path: Path, source: Path | bytes, link: str, blob: str) -> Path:
    """``snap/<link> -> ../blobs/<blob>``, the blob a copy of ``source`` (or these bytes)."""
    (tmp_path / "blobs").mkdir(exist_ok=True)
    (tmp_path / "snap").mkdir(exist_ok=True)
    if isinstance(source, bytes):
        (tmp_path / "blobs" / blob).write_bytes(source)
    else:
        shutil.copyfile(source, tmp_path / "blobs" / blob)
    (tmp_path / "snap" / link).symlink_to(Path("..") / "blobs" / blob)
    return tmp_path / "snap" / link


@slow
def test_a_keras_model_behind_a_link_to_a_blob_is_checked_by_the_links_name(tmp_path: Path) -> None:
    _blob_link(tmp_path, FIXTURES / "fragile.keras", "model.keras", "3f2a9c")
    _blob_link(tmp_path, b"not a keras archive", "broken.keras", "dead0")

    run = run_qcheck(tmp_path, "--qcheck-model=snap/model.keras", "--qcheck-model=snap/broken.keras",
                     "-k", "fully_quantized")

    good = run.check("model.keras", "fully_quantized")
    assert good["status"] == "passed", good["message"]
    assert (run.out_dir / "model_quant.tflite").is_file()
    bad = run.check("broken.keras", "fully_quantized")
    assert bad["status"] == "error"
    assert "snap/broken.keras" in str(bad["message"]) and "dead0" not in str(bad["message"])
    assert "3f2a9c" not in run.stdout and "unsupported model type" not in run.stdout


@slow
def test_a_tflite_model_behind_a_link_to_a_blob_is_checked_by_the_links_name(tmp_path: Path) -> None:
    _blob_link(tmp_path, HELLO, "hw.tflite", "77aa")

    run = run_qcheck(tmp_path, "--qcheck-model=snap/hw.tflite", "-k", "fully_quantized or vela")

    assert run.check("hw.tflite", "fully_quantized")["status"] == "passed"
    vela = run.check("hw.tflite", "vela")
    assert vela["status"] == "passed", vela["message"]
    assert (run.out_dir / "hw_vela" / "ethos-u55-128" / "hw_vela.tflite").is_file()
    assert run.model("hw.tflite")["artifacts"]["quantized_model"].endswith("snap/hw.tflite")
    assert "77aa" not in run.stdout


# --- 12b: the static_shapes hint matches the dimension that is dynamic -------------------------


def test_a_dynamic_dimension_past_the_batch_is_told_to_fix_that_dimension(tmp_path: Path) -> None:
    import numpy as np
    from tflite_edits import edit_model

    def change(model: object, schema: object) -> None:  # ad01 taking its 640 features at any length
        graph = model.subgraphs[0]  # type: ignore[attr-defined]
        graph.tensors[int(graph.inputs[0])].shapeSignature = np.array([1, -1], dtype=np.int32)

    edited = edit_model(REAL / "mlperf_tiny" / "ad01_int8.tflite", tmp_path / "any_length.tflite", change)
    run = run_qcheck(tmp_path, f"--qcheck-model={edited}", "-k", "static_shapes")

    check = run.check("any_length.tflite", "static_shapes")
    assert check["status"] == "failed"
    assert "past the batch in input 'input_1' [1, -1]" in str(check["message"])
    hint = str(check["message"]).split("try:", 1)[1]
    assert "after the batch a fixed size" in hint and "keras.Input((None" in hint
    assert "fixed batch" not in hint and "batch_size=1" not in hint


# --- 11: a multi-output .tflite against a Keras reference whose output names differ -------------

MAKE_TFLITES = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, keras

def int8(model, x, path):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)  # signature outputs output_0, output_1
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    open(path, "wb").write(converter.convert())

fixtures, out = sys.argv[1], sys.argv[2]
x = np.load(f"{fixtures}/multihead.npz")["x"][:100]
int8(keras.saving.load_model(f"{fixtures}/multihead.keras"), x, f"{out}/multihead_int8.tflite")

keras.utils.set_random_seed(0)
i = keras.Input((8,))
twins = keras.Model(i, [keras.layers.Dense(4, name="a")(i), keras.layers.Dense(4, name="b")(i)])
twins.save(f"{out}/twins.keras")
other = keras.Model(i, [keras.layers.Dense(4, name="p")(i), keras.layers.Dense(4, name="q")(i)])
other.save(f"{out}/other.keras")  # names found nowhere in twins_int8.tflite, shapes all alike
x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
np.savez(f"{out}/twins.npz", x=x)
int8(twins, x, f"{out}/twins_int8.tflite")
"""


@pytest.fixture(scope="module")
def foreign_tflites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multi-output .tflite files converted outside qcheck (in a child: no TensorFlow here)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("foreign")
    subprocess.run([sys.executable, "-c", MAKE_TFLITES, str(FIXTURES), str(out)], check=True, timeout=600,
                   capture_output=True)
    return out


@slow
def test_outputs_of_one_shape_are_paired_by_the_layer_names_in_their_tensor_names(
    tmp_path: Path, foreign_tflites: Path
) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={foreign_tflites / 'twins_int8.tflite'}",
                     f"--qcheck-reference={foreign_tflites / 'twins.keras'}",
                     f"--qcheck-data={foreign_tflites / 'twins.npz'}", "-k", "accuracy")

    check = run.check("twins_int8.tflite", "accuracy_drop")
    assert check["status"] in ("passed", "failed"), check["message"]
    notes = run.model("twins_int8.tflite")["notes"]
    assert any("paired by the layer names" in n and "output_0 [4] -> a" in n and "output_1 [4] -> b" in n
               for n in notes), notes


@slow
def test_outputs_named_by_signature_are_paired_with_keras_names_by_distinct_shapes(
    tmp_path: Path, foreign_tflites: Path
) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={foreign_tflites / 'multihead_int8.tflite'}",
                     f"--qcheck-reference={FIXTURES / 'multihead.keras'}", f"--qcheck-data={FIXTURES / 'multihead.npz'}",
                     "-k", "accuracy")

    check = run.check("multihead_int8.tflite", "accuracy_drop")
    assert check["status"] in ("passed", "failed"), check["message"]
    assert check["value"] is not None
    notes = run.model("multihead_int8.tflite")["notes"]
    assert any("paired by" in n and "output_0 [10] -> zeta" in n and "-> alpha" in n for n in notes), notes


@slow
def test_outputs_that_neither_names_nor_shapes_pair_are_an_error_saying_how_to_fix_it(
    tmp_path: Path, foreign_tflites: Path
) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={foreign_tflites / 'twins_int8.tflite'}",
                     f"--qcheck-reference={foreign_tflites / 'other.keras'}",
                     f"--qcheck-data={foreign_tflites / 'twins.npz'}", "-k", "accuracy")

    check = run.check("twins_int8.tflite", "accuracy_drop")
    assert check["status"] == "error"
    message = str(check["message"])
    assert "output_0 [4], output_1 [4]" in message and "p [4], q [4]" in message
    assert "never by position" in message and "--qcheck-model" in message


# --- 12a: a channel stuck at a large constant is named, with the operator that set the range -----

MAKE_STUCK = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
keras.utils.set_random_seed(1)
x = np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32)
i = keras.Input((8,))
h = keras.layers.Dense(16, activation="relu")(i)
model = keras.Model(i, keras.layers.Dense(10, name="logits")(h))
weights, bias = model.layers[-1].get_weights()
weights[:, 9], bias[9] = 0, -3000  # score 9 is always -3000: no spread, but it sets the range
model.layers[-1].set_weights([weights, bias])
model.save(f"{sys.argv[1]}/stuck.keras")
np.savez(f"{sys.argv[1]}/stuck.npz", x=x, y=model.predict(x, verbose=0).argmax(1))
"""


@slow
def test_a_channel_stuck_at_a_large_constant_is_named_as_the_likely_cause(tmp_path: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", MAKE_STUCK, str(tmp_path)], check=True, timeout=600, capture_output=True)
    run = run_qcheck(tmp_path, "--qcheck-model=stuck.keras", "--qcheck-data=stuck.npz", "-k", "accuracy")

    message = str(run.check("stuck.keras", "accuracy_drop")["message"])
    cause = message.split("likely cause:", 1)[1]
    assert cause.startswith(" FULLY_CONNECTED"), cause  # the operator that set the range, not the QUANTIZE
    assert "channel 9" in cause and "stays near -3000" in cause
    assert "x the median channel's range" in cause and " 1x " not in cause
