"""The evaluation loop: batches where the model allows them, the same outputs as one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from helpers import REAL, QcheckRun

from qcheck.tflite.inspect import inspect_model
from qcheck.tflite.quant import QuantParams, quantize
from qcheck.tflite.run import BATCH, _Batched, run


def _one_at_a_time(tflite: bytes, x: np.ndarray) -> list[np.ndarray]:
    """What a user's own loop gets: one invoke per sample, outputs in the model's order."""
    it = Interpreter(model_content=tflite, num_threads=1)
    it.allocate_tensors()
    (inp,) = it.get_input_details()
    scale, zero_point = inp["quantization"]
    q, _ = quantize(x, QuantParams(scale, zero_point, np.dtype(inp["dtype"]).name))
    outputs: list[list[np.ndarray]] = [[] for _ in it.get_output_details()]
    for sample in q:
        it.set_tensor(inp["index"], sample[None])
        it.invoke()
        for out, detail in zip(outputs, it.get_output_details(), strict=True):
            out.append(it.get_tensor(detail["index"])[0])
    return [np.stack(out) for out in outputs]


def _inputs(tflite: bytes, samples: int) -> np.ndarray:
    it = Interpreter(model_content=tflite)
    (inp,) = it.get_input_details()
    scale, zero_point = inp["quantization"]
    info = np.iinfo(inp["dtype"])
    lo, hi = (info.min - zero_point) * scale, (info.max - zero_point) * scale
    return np.random.default_rng(0).uniform(lo, hi, (samples, *inp["shape"][1:])).astype(np.float32)


def _batch_size(tflite: bytes) -> int:
    it = Interpreter(model_content=tflite)
    (inp,) = it.get_input_details()
    outputs = {d["name"]: d["index"] for d in it.get_output_details()}
    return _Batched(tflite, {"x": inp["index"]}, outputs, {"x": tuple(inp["shape"][1:])}, inspect_model(tflite)).size


@pytest.mark.parametrize("model", ["mlperf_tiny/ad01_int8.tflite", "tflm/micro_speech_quantized.tflite",
                                   "mlperf_tiny/kws_ref_model.tflite"])
@pytest.mark.parametrize("analysed", [0, 5])
def test_batched_outputs_are_those_of_one_sample_at_a_time(model: str, analysed: int) -> None:
    tflite = (REAL / model).read_bytes()
    assert _batch_size(tflite) == BATCH  # these models take a batch (micro_speech's shape is static)
    x = _inputs(tflite, 4 * BATCH + 3)  # a short last batch
    result = run(tflite, x, analysis_samples=analysed)
    for got, expected in zip(result.outputs.values(), _one_at_a_time(tflite, x), strict=True):
        np.testing.assert_array_equal(got.raw, expected)


def test_a_model_that_cannot_take_a_batch_runs_one_sample_at_a_time(digits_run: QcheckRun) -> None:
    # The converted digits CNN reshapes to a fixed [1, ...]: resizing its input fails.
    tflite = Path(digits_run.out_dir / "digits_cnn_quant.tflite").read_bytes()
    assert _batch_size(tflite) == 1
    x = _inputs(tflite, 2 * BATCH + 1)
    (got,) = run(tflite, x).outputs.values()
    (expected,) = _one_at_a_time(tflite, x)
    np.testing.assert_array_equal(got.raw, expected)
