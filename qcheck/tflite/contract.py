"""Run a model on inputs quantized the application's way, for the ``input_contract`` check.

An application that promises "feed raw uint8 values" computes the integer input with its own
mapping, ``q = round(x / contract_scale) + contract_zero_point``, not with the model's input
scale and zero point. Here each sample is quantized that way, then handed to
:func:`qcheck.tflite.run.run` as the float value the model's own quantization turns back into
exactly that integer, so the evaluation machinery (batching, clipping count) is reused as is.
"""

from __future__ import annotations

import numpy as np

from qcheck.lazy_arrays import LazyArray, as_chunks
from qcheck.tflite.quant import QuantParams, dequantize, quantize
from qcheck.tflite.run import RunResult, run


def run_as_application(tflite: bytes, x: np.ndarray | LazyArray, *, model_scale: float, model_zero_point: int,
                       dtype: str, contract_scale: float, contract_zero_point: int) -> RunResult:
    """Outputs of the model when its integer input is ``round(x / contract_scale) + contract_zero_point``."""
    application = QuantParams(contract_scale, contract_zero_point, dtype)
    model = QuantParams(model_scale, model_zero_point, dtype)
    chunks = []
    for chunk in as_chunks(x):
        q, _ = quantize(chunk, application)
        # (q - zp) * scale is within float rounding of an integer number of model steps, so the
        # model's own round() in run() gives back exactly q, and nothing is clipped again.
        chunks.append(dequantize(q, model))
    fed = np.concatenate(chunks) if chunks else np.zeros((0, *x.shape[1:]), np.float32)
    return run(tflite, fed)
