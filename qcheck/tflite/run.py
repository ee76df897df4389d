"""Run a TFLite model with the LiteRT interpreter on float inputs.

Inputs are given as the float model takes them and quantized here with the model's own input
parameters, ``q = round(x / scale) + zero_point``, so the share of clipped input values is
measured exactly where it happens. Outputs come back raw (integers) and dequantized,
keyed by the model's signature output names.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from qcheck.lazy_arrays import LazyArray, as_chunks
from qcheck.tflite.quant import QuantParams, dequantize, quantize
from qcheck.tflite.tensor_stats import Analysis, CountingBehind, TensorTracker

ANALYSIS_SAMPLES = 256  # samples over which intermediate tensors are gathered


@dataclass(frozen=True, eq=False)
class HeadOutput:
    """One output of the model over all samples."""

    raw: np.ndarray  # as the model wrote it (int8/uint8/float32)
    values: np.ndarray  # dequantized with the output's own scale and zero point
    params: QuantParams | None


@dataclass(frozen=True, eq=False)
class RunResult:
    """Outputs keyed by name, and how many input values had to be clipped to fit the dtype."""

    outputs: dict[str, HeadOutput]
    input_clipped: int
    input_values: int
    input_params: QuantParams | None
    analysis: Analysis | None = None

    @property
    def input_clipped_share(self) -> float:
        return self.input_clipped / self.input_values if self.input_values else 0.0


def _make_interpreter(tflite: bytes, *, keep_tensors: bool = False) -> Any:
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        # LiteRT warns that keeping all tensors is for debugging: here it is the point.
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=tflite, num_threads=1,
                                  experimental_preserve_all_tensors=keep_tensors)
    interpreter.allocate_tensors()
    return interpreter


def _io_indices(interpreter: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Input and output tensor indices keyed by signature name (tensor name without one)."""
    signatures = interpreter.get_signature_list()
    if signatures:
        key = next(iter(signatures))
        runner = interpreter.get_signature_runner(key)
        ins = {name: d["index"] for name, d in runner.get_input_details().items()}
        outs = {name: d["index"] for name, d in runner.get_output_details().items()}
        return ins, outs
    ins = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    outs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    return ins, outs


def _params(detail: dict[str, Any]) -> QuantParams | None:
    scale, zero_point = detail["quantization"]
    if scale == 0.0 or np.dtype(detail["dtype"]).kind == "f":
        return None
    return QuantParams(float(scale), int(zero_point), np.dtype(detail["dtype"]).name)


def run(
    tflite: bytes,
    x: np.ndarray | LazyArray,
    *,
    float_tflite: bytes | None = None,
    calibration: np.ndarray | None = None,
    analysis_samples: int = 0,
) -> RunResult:
    """Invoke the model once per sample of ``x`` (float inputs as the float model takes them).

    With ``analysis_samples``, the intermediate tensors of the first samples are gathered in the
    same pass (and compared with ``float_tflite``, the same model unquantized), and those of up
    to as many ``calibration`` samples, for :mod:`qcheck.tflite.tensor_stats`.
    """
    tracker = None
    if analysis_samples > 0:
        from qcheck.tflite.inspect import inspect_model

        float_info = inspect_model(float_tflite) if float_tflite else None
        tracker = TensorTracker(inspect_model(tflite), float_info)
    interpreter = _make_interpreter(tflite, keep_tensors=tracker is not None)
    inputs, outputs = _io_indices(interpreter)
    if len(inputs) != 1:
        raise ValueError(f"the model has {len(inputs)} inputs; qcheck handles one input for now")
    in_index = next(iter(inputs.values()))
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    in_detail = details[in_index]
    in_params = _params(in_detail)
    sample_shape = tuple(int(d) for d in in_detail["shape"])[1:]
    if tuple(x.shape[1:]) != sample_shape:
        raise ValueError(f"data samples have shape {tuple(x.shape[1:])}, the model takes {sample_shape}")

    float_interpreter = float_index = None
    if tracker is not None and float_tflite:
        float_interpreter = _make_interpreter(float_tflite, keep_tensors=True)
        float_index = next(iter(_io_indices(float_interpreter)[0].values()))

    set_tensor, invoke, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor
    raw = {name: np.empty((len(x), *details[i]["shape"][1:]), dtype=details[i]["dtype"]) for name, i in outputs.items()}
    n = clipped = fed = 0
    with CountingBehind(tracker) if tracker is not None else contextlib.nullcontext() as behind:
        if tracker is not None and behind is not None and calibration is not None:
            cal_feed, _ = _feed(calibration[:analysis_samples], in_params, in_detail)
            for sample in cal_feed:
                set_tensor(in_index, sample[None])
                invoke()
                behind.add(tracker.take(interpreter), calibration=True)

        for chunk in as_chunks(x):  # memory stays bounded whatever the data set's size
            feed, chunk_clipped = _feed(chunk, in_params, in_detail)
            clipped, fed = clipped + chunk_clipped, fed + feed.size
            for i in range(len(chunk)):
                if tracker is not None and n == analysis_samples:
                    # Keeping every tensor costs on each invoke: past the analysed samples, the
                    # rest runs on a plain interpreter (same model, same tensor indices).
                    plain = _make_interpreter(tflite)
                    set_tensor, invoke, get_tensor = plain.set_tensor, plain.invoke, plain.get_tensor
                set_tensor(in_index, feed[i : i + 1])
                invoke()
                for name, index in outputs.items():
                    raw[name][n] = get_tensor(index)[0]
                if tracker is not None and behind is not None and n < analysis_samples:
                    if float_interpreter is not None:
                        float_interpreter.set_tensor(float_index, chunk[i : i + 1])
                        float_interpreter.invoke()
                    behind.add(tracker.take(interpreter, float_interpreter))
                n += 1

    heads = {}
    for name, i in outputs.items():
        params = _params(details[i])
        values = dequantize(raw[name], params) if params else raw[name].astype(np.float32)
        heads[name] = HeadOutput(raw[name], values, params)
    analysis = tracker.analysis() if tracker is not None else None
    return RunResult(heads, int(clipped), int(fed), in_params, analysis)


def _feed(x: np.ndarray, params: QuantParams | None, detail: dict[str, Any]) -> tuple[np.ndarray, int]:
    """The input as the model's dtype: quantized (with the clipped count) or cast."""
    if params is not None:
        return quantize(x, params)
    return x.astype(detail["dtype"], copy=False), 0
