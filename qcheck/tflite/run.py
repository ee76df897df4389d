"""Run a TFLite model with the LiteRT interpreter on float inputs.

Inputs are given as the float model takes them and quantized here with the model's own input
parameters, ``q = round(x / scale) + zero_point``, so the share of clipped input values is
measured exactly where it happens. Outputs come back raw (integers) and dequantized,
keyed by the model's signature output names.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.lazy_arrays import LazyArray
from qcheck.named_inputs import NamedInputs, by_input, chunked
from qcheck.tflite.quant import QuantParams, dequantize, quantize
from qcheck.tflite.tensor_stats import Analysis, CountingBehind, TensorTracker

if TYPE_CHECKING:
    from qcheck.tflite.inspect import ModelInfo

ANALYSIS_SAMPLES = 256  # samples over which intermediate tensors are gathered
# How a model with variable tensors (state) is run over the samples: "reset" before each
# (independent samples, the default) or "keep" (the samples are one long sequence).
STATEFUL_MODES = ("reset", "keep")


@dataclass(frozen=True, eq=False)
class HeadOutput:
    """One output of the model over all samples."""

    raw: np.ndarray  # as the model wrote it (int8/uint8/float32)
    values: np.ndarray  # dequantized with the output's own scale and zero point
    params: QuantParams | None


@dataclass(frozen=True, eq=False)
class InputClipping:
    """How many values of one input had to be clipped to fit its dtype (see :class:`RunResult`)."""

    clipped: int
    values: int
    params: QuantParams | None
    entry: str | None = None

    @property
    def share(self) -> float:
        return self.clipped / self.values if self.values else 0.0


@dataclass(frozen=True, eq=False)
class RunResult:
    """Outputs keyed by name, and how many input values had to be clipped to fit the dtype."""

    outputs: dict[str, HeadOutput]
    input_clipped: int
    input_values: int
    input_params: QuantParams | None
    analysis: Analysis | None = None
    # Where input clipping was measured when the model's input is float32: the integer output
    # of the QUANTIZE at its entry (a model "int8 inside, float32 at the input"), by name.
    input_entry: str | None = None
    # A multi-input model's clipping per input, by name (the fields above then hold the totals
    # and no parameters); empty for a single-input model.
    inputs: dict[str, InputClipping] = field(default_factory=dict)

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
    x: np.ndarray | LazyArray | NamedInputs,
    *,
    float_tflite: bytes | None = None,
    calibration: np.ndarray | NamedInputs | None = None,
    analysis_samples: int = 0,
    stateful: str = "reset",
) -> RunResult:
    """Run the model on every sample of ``x`` (float inputs as the float model takes them; for a
    model with several inputs, :class:`NamedInputs` matched to the inputs by name).

    With ``analysis_samples``, the intermediate tensors of the first samples are gathered in the
    same pass (and compared with ``float_tflite``, the same model unquantized), and those of up
    to as many ``calibration`` samples, for :mod:`qcheck.tflite.tensor_stats`.

    A model with variable tensors (an LSTM's state) keeps them from one ``invoke()`` to the
    next: with ``stateful="reset"`` they are reset before every sample, which makes the samples
    independent; with ``"keep"`` the samples of ``x`` are one sequence, run in order on one
    interpreter with the state carried from each to the next.
    """
    from qcheck.tflite.inspect import inspect_model

    if stateful not in STATEFUL_MODES:
        raise ValueError(f"stateful must be one of {STATEFUL_MODES}, not {stateful!r}")
    info = inspect_model(tflite)
    float_info = inspect_model(float_tflite) if float_tflite else None
    reset = stateful == "reset"
    tracker = TensorTracker(info, float_info) if analysis_samples > 0 else None
    # Reads the model's input and outputs; with analysis, runs the analysed samples too.
    interpreter = _make_interpreter(tflite, keep_tensors=tracker is not None)
    inputs, outputs = _io_indices(interpreter)
    xs = by_input(x, inputs)  # matched by name: the converter orders inputs its own way
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    in_params = {name: _params(details[i]) for name, i in inputs.items()}
    shapes = {name: tuple(int(d) for d in details[i]["shape"])[1:] for name, i in inputs.items()}
    for name, array in xs.items():
        if tuple(array.shape[1:]) != shapes[name]:
            what = "data samples" if len(xs) == 1 else f"data samples of input '{name}'"
            raise ValueError(f"{what} have shape {tuple(array.shape[1:])}, the model takes {shapes[name]}")
    single = len(xs) == 1
    entries = {name: _entry_params(info, name) if params is None else (None, None)
               for name, params in in_params.items()}

    float_interpreter = None
    float_inputs: dict[str, int] = {}
    if tracker is not None and float_tflite:
        float_interpreter = _make_interpreter(float_tflite, keep_tensors=True)
        float_inputs = _io_indices(float_interpreter)[0]
        if single:  # one input: whatever the twin calls it
            float_inputs = dict(zip(inputs, float_inputs.values(), strict=True))
    stateful_model = info.stateful or (float_info is not None and float_info.stateful)

    def invoke(it: Any) -> None:
        if reset and stateful_model:
            it.reset_all_variables()  # each sample starts from the initial state, as alone
        it.invoke()

    def set_inputs(it: Any, indices: dict[str, int], feed: dict[str, np.ndarray], at: slice) -> None:
        for name, index in indices.items():
            it.set_tensor(index, feed[name][at])

    raw = {name: np.empty((len(x), *details[i]["shape"][1:]), dtype=details[i]["dtype"]) for name, i in outputs.items()}
    n = 0
    clipped = dict.fromkeys(inputs, 0)
    counted = dict.fromkeys(inputs, 0)
    rest: _Batched | None = None  # the samples past the analysed ones
    with CountingBehind(tracker) if tracker is not None else contextlib.nullcontext() as behind:
        if behind is not None and calibration is not None:
            cal = by_input(calibration[:analysis_samples], inputs)
            cal_feed = {name: _feed(np.asarray(a, np.float32), in_params[name], details[inputs[name]])[0]
                        for name, a in cal.items()}
            for k in range(len(calibration[:analysis_samples])):
                set_inputs(interpreter, inputs, cal_feed, slice(k, k + 1))
                invoke(interpreter)
                behind.observe(interpreter, calibration=True)
            if stateful_model:
                interpreter.reset_all_variables()  # the evaluation starts from the initial state

        for chunk_samples in chunked(x):  # memory stays bounded whatever the data set's size
            chunk = {name: np.asarray(a, dtype=np.float32) for name, a in by_input(chunk_samples, inputs).items()}
            feed = {}
            for name, values_in in chunk.items():
                feed[name], chunk_clipped = _feed(values_in, in_params[name], details[inputs[name]])
                entry_params = entries[name][0]
                if entry_params is not None:  # float input: clipped where the model quantizes it
                    chunk_clipped = quantize(values_in, entry_params)[1]
                clipped[name] += chunk_clipped
                counted[name] += feed[name].size
            size = len(chunk_samples)
            i = 0
            while i < size:
                if behind is not None and n < analysis_samples:
                    # One sample at a time, every tensor kept, beside the float twin.
                    set_inputs(interpreter, inputs, feed, slice(i, i + 1))
                    invoke(interpreter)
                    for name, index in outputs.items():
                        raw[name][n] = interpreter.get_tensor(index)[0]
                    if float_interpreter is not None:
                        set_inputs(float_interpreter, float_inputs, chunk, slice(i, i + 1))
                        invoke(float_interpreter)
                    behind.observe(interpreter, float_interpreter)
                    i, n = i + 1, n + 1
                    if n == analysis_samples:
                        behind.flush()  # the last analysed samples are counted while the rest run
                    continue
                if info.stateful:
                    # One interpreter, one sample per invoke and in order: a batch would run
                    # from one state, and a second interpreter would lose the kept state.
                    set_inputs(interpreter, inputs, feed, slice(i, i + 1))
                    invoke(interpreter)
                    for name, index in outputs.items():
                        raw[name][n] = interpreter.get_tensor(index)[0]
                    i, n = i + 1, n + 1
                    continue
                if rest is None:
                    rest = _Batched(tflite, inputs, outputs, shapes)
                k = min(rest.size, size - i)
                for name, out in rest.run({name: f[i : i + k] for name, f in feed.items()}).items():
                    raw[name][n : n + k] = out
                i, n = i + k, n + k

    heads = {}
    for name, i in outputs.items():
        params = _params(details[i])
        values = dequantize(raw[name], params) if params else raw[name].astype(np.float32)
        heads[name] = HeadOutput(raw[name], values, params)
    analysis = tracker.analysis() if tracker is not None else None
    per_input = {name: InputClipping(int(clipped[name]), int(counted[name]), in_params[name] or entries[name][0],
                                     entries[name][1]) for name in inputs}
    if single:
        (only,) = per_input.values()
        return RunResult(heads, only.clipped, only.values, only.params, analysis, only.entry)
    return RunResult(heads, sum(c.clipped for c in per_input.values()), sum(c.values for c in per_input.values()),
                     None, analysis, None, per_input)


def _entry_params(info: ModelInfo, name: str) -> tuple[QuantParams | None, str | None]:
    """The parameters and name of the integer tensor the float input ``name`` is quantized into, if any."""
    from qcheck.tflite.census import entry_quantize

    tensor = next((io.tensor for io in info.inputs if io.name == name), None)
    entry = entry_quantize(info, tensor) if tensor is not None else None
    if entry is None:
        return None, None
    return QuantParams(entry.scale[0], entry.zero_point[0], entry.dtype), entry.name


BATCH = 8  # samples per invoke past the analysed ones, where the model allows it


class _Batched:
    """Runs samples a batch per invoke on a plain interpreter (keeping every tensor costs on each
    invoke), when the model allows it: the input resizes, every output follows the batch, and
    the first batch gives exactly the outputs it gives one sample at a time. Otherwise, and
    from then on, one sample per invoke. Batches cost less per sample where the invoke's own
    overhead is a good part of the work (small models)."""

    def __init__(self, tflite: bytes, inputs: dict[str, int], outputs: dict[str, int],
                 shapes: dict[str, tuple[int, ...]]) -> None:
        self._tflite = tflite
        self._inputs = inputs
        self._outputs = outputs
        self._single: Any = None
        self._batched: Any = None
        self._verified = False
        try:
            batched = _make_interpreter(tflite)
            for name, index in inputs.items():
                batched.resize_tensor_input(index, [BATCH, *shapes[name]], strict=False)
            batched.allocate_tensors()
            if all(batched.get_tensor(index).shape[:1] == (BATCH,) for index in outputs.values()):
                self._batched = batched
        except (ValueError, RuntimeError):  # LiteRT's words for "this model cannot resize"
            pass

    @property
    def size(self) -> int:
        return BATCH if self._batched is not None else 1

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for up to :attr:`size` samples (each input already in the model's input dtype)."""
        if self._batched is None:
            return self._one_by_one(feed)
        k = len(next(iter(feed.values())))
        for name, index in self._inputs.items():
            values = feed[name]
            if k < BATCH:  # the last batch: padded, the padding's outputs dropped
                values = np.concatenate([values, np.zeros((BATCH - k, *values.shape[1:]), values.dtype)])
            self._batched.set_tensor(index, values)
        self._batched.invoke()
        out = {name: self._batched.get_tensor(index)[:k] for name, index in self._outputs.items()}
        if not self._verified:
            self._verified = True
            single = self._one_by_one(feed)
            if not all(np.array_equal(single[name], out[name]) for name in out):
                self._batched = None
                return single
        return out

    def _one_by_one(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._single is None:
            self._single = _make_interpreter(self._tflite)
        out: dict[str, list[np.ndarray]] = {name: [] for name in self._outputs}
        for i in range(len(next(iter(feed.values())))):
            for name, index in self._inputs.items():
                self._single.set_tensor(index, feed[name][i : i + 1])
            self._single.invoke()
            for name, index in self._outputs.items():
                out[name].append(self._single.get_tensor(index)[0])
        return {name: np.stack(values) for name, values in out.items()}


def _feed(x: np.ndarray, params: QuantParams | None, detail: dict[str, Any]) -> tuple[np.ndarray, int]:
    """The input as the model's dtype: quantized (with the clipped count) or cast."""
    if params is not None:
        return quantize(x, params)
    return x.astype(detail["dtype"], copy=False), 0
