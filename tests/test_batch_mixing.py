"""A model written for one sample per invoke that mixes the samples of a batch (a reduction over
every axis, the batch's too) must run one sample at a time, whatever the first batch shows.

Here the model subtracts its input's peak (``x - max(x)``, Keras' ``ops.max`` with no axis): one
sample per invoke, each sample's own peak; a batch of 8, the batch's. The first samples all peak
at 1.0, so the first batch (the one checked against one sample at a time) gives exactly what one
sample at a time gives; later samples are dimmer, and a batch holding them gave each the peak of
another: the outputs (and so the accuracy) of the dimmer samples changed silently (78 of 192
output values on this data). With the peak kept as a scalar, the analysed samples' batch
crashed (``IndexError`` on the scalar tensor).

Made as users make it (Keras 3, TensorFlow's converter) in a child process: TensorFlow is never
imported in the pytest process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qcheck.tflite.inspect import inspect_model
from qcheck.tflite.quant import quantize
from qcheck.tflite.run import ANALYSIS_SAMPLES, _io_indices, _make_interpreter, _params, run
from qcheck.tflite.tensor_stats import TensorTracker

BUILD = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import keras

out = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.random((64, 6, 6, 1), dtype=np.float32)
x[:, 0, 0, 0] = 1.0  # the first samples peak at 1.0
x[32:] *= rng.uniform(0.2, 0.8, (32, 1, 1, 1)).astype(np.float32)  # the later ones dimmer, each its own peak
np.save(os.path.join(out, "x.npy"), x)
for keepdims in (False, True):
    keras.utils.set_random_seed(1)
    i = keras.Input((6, 6, 1))
    h = keras.layers.Lambda(lambda t: t - keras.ops.max(t, keepdims=keepdims))(i)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(i, keras.layers.Dense(3)(h))
    for kind in ("int8", "float"):
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        if kind == "int8":
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.representative_dataset = lambda: ([x[k : k + 1]] for k in range(len(x)))
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = c.inference_output_type = tf.int8
        with open(os.path.join(out, f"peak{int(keepdims)}_{kind}.tflite"), "wb") as f:
            f.write(c.convert())
'''


@pytest.fixture(scope="module")
def peak(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batch_mixing")
    subprocess.run([sys.executable, "-c", BUILD, str(folder)], check=True, capture_output=True, timeout=600)
    return folder


def _per_sample(quantized: bytes, float_model: bytes | None, x: np.ndarray) -> tuple[np.ndarray, TensorTracker]:
    """One sample per invoke on plain interpreters, the tracker fed each analysed sample's tensors."""
    tracker = TensorTracker(inspect_model(quantized), inspect_model(float_model) if float_model else None)
    it = _make_interpreter(quantized, keep_tensors=True)
    ft = _make_interpreter(float_model, keep_tensors=True) if float_model else None
    (q_index,), (out_index,) = _io_indices(it)[0].values(), _io_indices(it)[1].values()
    params = _params(next(d for d in it.get_tensor_details() if d["index"] == q_index))
    assert params is not None
    raw = []
    for n, sample in enumerate(x):
        it.set_tensor(q_index, quantize(sample[None], params)[0])
        it.invoke()
        raw.append(it.get_tensor(out_index)[0])
        if ft is not None:
            (f_index,) = _io_indices(ft)[0].values()
            ft.set_tensor(f_index, sample[None])
            ft.invoke()
        if n < ANALYSIS_SAMPLES:
            tracker.add(tracker.take(it, ft))
    return np.stack(raw), tracker


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("analysed", [0, 16, ANALYSIS_SAMPLES])
def test_a_model_mixing_the_batch_runs_as_one_sample_at_a_time(peak: Path, keepdims: int, analysed: int) -> None:
    quantized = (peak / f"peak{keepdims}_int8.tflite").read_bytes()
    float_model = (peak / f"peak{keepdims}_float.tflite").read_bytes()
    assert "REDUCE_MAX" in {op.op for op in inspect_model(quantized).operators}
    x = np.load(peak / "x.npy")
    expected, tracker = _per_sample(quantized, float_model, x)

    result = run(quantized, x, float_tflite=float_model, analysis_samples=analysed)

    (head,) = result.outputs.values()
    np.testing.assert_array_equal(head.raw, expected)
    if analysed:
        assert result.analysis is not None
        if analysed == ANALYSIS_SAMPLES:  # every sample analysed: the same tensors, to the bit
            assert result.analysis == tracker.analysis()
        assert result.analysis.samples == min(analysed, len(x))


def test_a_tracked_tensor_computed_from_constants_alone_runs_the_analysed_samples_one_at_a_time(
        peak: Path, tmp_path: Path) -> None:
    """The peak taken of a constant instead of the input: the model keeps its samples apart (a batch
    gives what one sample at a time gives), but its int8 peak is a scalar whatever the batch, and
    is tracked: the analysed samples' batch sliced it per sample (IndexError)."""
    from tflite_edits import edit_model

    def peak_of_a_constant(model: Any, schema: Any) -> None:
        graph = model.subgraphs[0]
        (reduce_max,) = [op for op in graph.operators
                         if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.REDUCE_MAX]
        source = graph.tensors[int(reduce_max.inputs[0])]
        buffer = schema.BufferT()
        buffer.data = np.arange(36, dtype=np.int8).view(np.uint8)
        model.buffers.append(buffer)
        constant = schema.TensorT()
        constant.name, constant.type, constant.shape = b"constant_peak", source.type, np.array(source.shape, np.int32)
        constant.quantization, constant.buffer = source.quantization, len(model.buffers) - 1
        graph.tensors.append(constant)
        reduce_max.inputs = np.array([len(graph.tensors) - 1, *reduce_max.inputs[1:]], dtype=np.int32)

    edited = edit_model(peak / "peak0_int8.tflite", tmp_path / "constant_peak.tflite", peak_of_a_constant)
    quantized = edited.read_bytes()
    info = inspect_model(quantized)
    (scalar,) = [t for t in info.tensors if t.shape == () and not t.constant and t.dtype == "int8"]
    x = np.load(peak / "x.npy")
    expected, tracker = _per_sample(quantized, None, x)

    result = run(quantized, x, analysis_samples=ANALYSIS_SAMPLES)  # no float twin (whose peak mixes)

    (head,) = result.outputs.values()
    np.testing.assert_array_equal(head.raw, expected)
    assert result.analysis is not None and result.analysis == tracker.analysis()
    assert any(report.name == scalar.name for report in result.analysis.tensors)  # tracked
