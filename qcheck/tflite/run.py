"""Run a TFLite model with the LiteRT interpreter on float inputs.

Inputs are given as the float model takes them and quantized here with the model's own input
parameters, ``q = round(x / scale) + zero_point``, so the share of clipped input values is
measured exactly where it happens. Outputs come back raw (integers) and dequantized,
keyed by the model's signature output names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.lazy_arrays import LazyArray
from qcheck.named_inputs import NamedInputs, by_input, chunked
from qcheck.tflite.quant import QuantParams, dequantize, quantize
from qcheck.tflite.tensor_stats import Analysis, CountingBehind, Snapshot, TensorTracker

if TYPE_CHECKING:
    from qcheck.tflite.inspect import ModelInfo

ANALYSIS_SAMPLES = 256  # samples over which intermediate tensors are gathered
# How a model with state (variable tensors, resource variables) is run over the samples: "reset" before each
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
    # What computed the outputs when it is not what was asked for ("" when it is): LiteRT's
    # built-in kernels standing in for its reference kernels, which lack one of the operators.
    note: str = ""

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


def _interpreter_with_state(tflite: bytes, info: ModelInfo | None, *, keep_tensors: bool) -> Any:
    """:func:`_make_interpreter`; for a model with resource variables, one whose
    ``reset_all_variables()`` restarts it (:class:`~qcheck.tflite.restarting.Restarting`: LiteRT's
    own leaves them as the last sample left them)."""
    if info is None or not info.resource_state:
        return _make_interpreter(tflite, keep_tensors=keep_tensors)
    from qcheck.tflite.restarting import Restarting

    return Restarting(lambda: _make_interpreter(tflite, keep_tensors=keep_tensors))


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

    A model with variable tensors (an LSTM's state) or resource variables keeps them from one
    ``invoke()`` to the next: with ``stateful="reset"`` they are reset before every sample (resource
    variables by a new interpreter), which makes the samples independent; with ``"keep"`` the
    samples of ``x`` are one sequence, run in order on one interpreter with the state carried from
    each to the next.
    """
    from qcheck.tflite.inspect import inspect_model

    if stateful not in STATEFUL_MODES:
        raise ValueError(f"stateful must be one of {STATEFUL_MODES}, not {stateful!r}")
    info = inspect_model(tflite)
    float_info = inspect_model(float_tflite) if float_tflite else None
    reset = stateful == "reset"
    tracker = TensorTracker(info, float_info) if analysis_samples > 0 else None
    # Reads the model's input and outputs; with analysis, runs the analysed samples too.
    interpreter = _interpreter_with_state(tflite, info, keep_tensors=tracker is not None)
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
        float_interpreter = _interpreter_with_state(float_tflite, float_info, keep_tensors=True)
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
        kept = None
        if behind is not None:
            assert tracker is not None
            twin = (_Twin(float_tflite, float_interpreter, float_inputs, float_info)
                    if float_interpreter and float_tflite and float_info else None)
            kept = _Kept(tflite, info, interpreter, inputs, outputs, shapes, tracker, behind, twin, invoke,
                         batches=not stateful_model)
        if kept is not None and calibration is not None:
            cal = by_input(calibration[:analysis_samples], inputs)
            cal_feed = {name: _feed(np.asarray(a, np.float32), in_params[name], details[inputs[name]])[0]
                        for name, a in cal.items()}
            for k in range(0, len(calibration[:analysis_samples]), BATCH):
                kept.run({name: f[k : k + BATCH] for name, f in cal_feed.items()}, None, calibration=True)
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
                if kept is not None and n < analysis_samples:
                    # Every tensor kept, beside the float twin.
                    k = min(BATCH, size - i, analysis_samples - n)
                    at = slice(i, i + k)
                    outs = kept.run({name: f[at] for name, f in feed.items()},
                                    {name: c[at] for name, c in chunk.items()}, calibration=False)
                    for name, values in outs.items():
                        raw[name][n : n + k] = values
                    i, n = i + k, n + k
                    if n == analysis_samples:
                        kept.behind.flush()  # the last analysed samples are counted while the rest run
                        kept = None  # and the memory of the interpreters keeping every tensor goes
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
                    rest = _Batched(tflite, inputs, outputs, shapes, info)
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


BATCH = 8  # samples per invoke, where the model allows it


@dataclass(frozen=True)
class _Twin:
    """The float twin the analysed samples' tensors are compared with."""

    tflite: bytes
    interpreter: Any
    inputs: dict[str, int]
    info: ModelInfo


class _Kept:
    """Runs the analysed samples with every tensor kept, and hands their tensors to ``behind``.

    A batch per invoke, on copies of the interpreters resized for it, where the model allows
    it (not a stateful one: a batch would run from one state), every tensor computed from the
    samples holds one sample per index of its first axis (:func:`_per_sample`), and each phase's
    first batch gives exactly what one sample at a time gives: every output, every tracked tensor
    and its float twin. Otherwise, and from then on, one sample per invoke. Keeping every tensor costs
    on each invoke, and copying them out costs per call: a batch shares both.
    """

    def __init__(self, tflite: bytes, info: ModelInfo, interpreter: Any, inputs: dict[str, int],
                 outputs: dict[str, int], shapes: dict[str, tuple[int, ...]], tracker: TensorTracker,
                 behind: CountingBehind, twin: _Twin | None, invoke: Any, *, batches: bool) -> None:
        self._tflite, self._info, self._interpreter = tflite, info, interpreter
        self._inputs, self._outputs, self._shapes = inputs, outputs, shapes
        self._tracker, self.behind, self._twin, self._invoke = tracker, behind, twin, invoke
        self._batched: dict[bool, tuple[Any, Any] | None] = {}  # by phase (calibration or not)
        self._verified: dict[bool, bool] = {}
        self._batches = batches

    def run(self, feed: dict[str, np.ndarray], float_feed: dict[str, np.ndarray] | None, *,
            calibration: bool) -> dict[str, np.ndarray]:
        """The outputs of up to :data:`BATCH` samples (``feed``: in the model's input dtype;
        ``float_feed``: as the float twin takes them), their tensors counted in."""
        twin = self._twin if not calibration else None
        k = len(next(iter(feed.values())))
        batched = self._batched_pair(calibration) if k > 1 else None
        if batched is None:
            return self._one_by_one(feed, float_feed, twin, calibration)[0]
        if not self._verified.get(calibration):
            self._verified[calibration] = True
            single, single_samples = self._one_by_one(feed, float_feed, twin, calibration, count=False)
            self._invoke_batch(batched, feed, float_feed)
            model, float_model = batched
            # Every tensor computed from the samples holds one sample per index of its first axis
            # (checked before any is taken: a reduction over every axis leaves a scalar), and the
            # batch gives exactly what one sample at a time gives.
            local = _per_sample(self._info, self._interpreter, model) and (
                float_model is None or twin is None or _per_sample(twin.info, twin.interpreter, float_model))
            taken = self._take_batch(batched, k) if local else None
            if taken is None or not _same(taken[0], single, taken[1], single_samples):
                self._batched[calibration] = None
                self.behind.observe_samples(single_samples, k, calibration=calibration)
                return single
        else:
            self._invoke_batch(batched, feed, float_feed)
            taken = self._take_batch(batched, k)
            assert taken is not None  # the shapes the first batch had
        out, samples = taken
        self.behind.observe_samples(samples, k, calibration=calibration)
        return out

    def _batched_pair(self, calibration: bool) -> tuple[Any, Any] | None:
        if calibration not in self._batched:
            self._batched[calibration] = None
            if self._batches:
                twin = self._twin if not calibration else None
                model = _resized(self._tflite, self._inputs, self._shapes)
                float_model = _resized(twin.tflite, twin.inputs, self._shapes) if twin is not None else None
                follows = model is not None and _follows_batch(model, self._outputs.values())
                if follows and (twin is None or float_model is not None):
                    self._batched[calibration] = (model, float_model)
        return self._batched[calibration]

    def _invoke_batch(self, batched: tuple[Any, Any], feed: dict[str, np.ndarray],
                      float_feed: dict[str, np.ndarray] | None) -> None:
        model, float_model = batched
        _set_padded(model, self._inputs, feed)
        model.invoke()
        if float_model is not None and float_feed is not None and self._twin is not None:
            _set_padded(float_model, self._twin.inputs, float_feed)
            float_model.invoke()

    def _take_batch(self, batched: tuple[Any, Any], k: int) -> tuple[dict[str, np.ndarray], Snapshot] | None:
        """The outputs and tracked tensors of the first ``k`` samples of the batch; None when a
        tracked tensor does not hold :data:`BATCH` samples (one computed from constants alone)."""
        model, float_model = batched
        out = {name: model.get_tensor(index)[:k] for name, index in self._outputs.items()}
        views = self._tracker.views(model, float_model)
        if any(t is not None and (t.ndim == 0 or len(t) != BATCH) for pair in views for t in pair):
            return None
        # Each sample's tensors shaped as one sample's are (a batch of one); views, copied into
        # the counting rows before the next invoke.
        return out, [(q[:, None], None if f is None else f[:, None]) for q, f in views]

    def _one_by_one(self, feed: dict[str, np.ndarray], float_feed: dict[str, np.ndarray] | None,
                    twin: _Twin | None, calibration: bool, *,
                    count: bool = True) -> tuple[dict[str, np.ndarray], Snapshot]:
        """One sample per invoke; their tensors counted in, or returned (``count=False``)."""
        it, float_it = self._interpreter, twin.interpreter if twin is not None else None
        k = len(next(iter(feed.values())))
        out: dict[str, list[np.ndarray]] = {name: [] for name in self._outputs}
        taken: list[Snapshot] = []
        for i in range(k):
            for name, index in self._inputs.items():
                it.set_tensor(index, feed[name][i : i + 1])
            self._invoke(it)
            for name, index in self._outputs.items():
                out[name].append(it.get_tensor(index)[0])
            if float_it is not None and float_feed is not None and twin is not None:
                for name, index in twin.inputs.items():
                    float_it.set_tensor(index, float_feed[name][i : i + 1])
                self._invoke(float_it)
            if count:
                self.behind.observe(it, float_it, calibration=calibration)
            else:
                taken.append(self._tracker.take(it, float_it))
        samples: Snapshot = [(np.stack([t[at][0] for t in taken]), _stacked([t[at][1] for t in taken]))
                             for at in range(len(taken[0]))] if taken else []
        return {name: np.stack(values) for name, values in out.items()}, samples


def _stacked(arrays: list[np.ndarray | None]) -> np.ndarray | None:
    return None if any(a is None for a in arrays) else np.stack([a for a in arrays if a is not None])


def _resized(tflite: bytes, inputs: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> Any:
    """An interpreter keeping every tensor, its inputs resized to :data:`BATCH` samples; None
    when the model cannot be resized."""
    try:
        resized = _make_interpreter(tflite, keep_tensors=True)
        for name, index in inputs.items():
            resized.resize_tensor_input(index, [BATCH, *shapes[name]], strict=False)
        resized.allocate_tensors()
    except (ValueError, RuntimeError):  # LiteRT's words for "this model cannot resize"
        return None
    return resized


def _set_padded(interpreter: Any, indices: dict[str, int], feed: dict[str, np.ndarray]) -> None:
    for name, index in indices.items():
        values = feed[name]
        if len(values) < BATCH:  # the last batch: padded, the padding's outputs dropped
            values = np.concatenate([values, np.zeros((BATCH - len(values), *values.shape[1:]), values.dtype)])
        interpreter.set_tensor(index, values)


def _same(out: dict[str, np.ndarray], single: dict[str, np.ndarray], samples: Snapshot, single_samples: Snapshot) -> bool:
    """Whether a batch gave what one sample at a time gave: the outputs, and every tracked
    tensor (``samples`` and ``single_samples``: the tensors with the samples along a new axis)."""
    if not all(np.array_equal(out[name], single[name]) for name in single):
        return False
    for (q, f), (sq, sf) in zip(samples, single_samples, strict=True):
        k = len(sq)
        if len(q) != BATCH or q[:k].shape != sq.shape or not np.array_equal(q[:k], sq) or (f is None) != (sf is None):
            return False
        if f is not None and sf is not None and (len(f) != BATCH or f[:k].shape != sf.shape
                                                 or not np.array_equal(f[:k], sf)):
            return False
    return True


class _Batched:
    """Runs samples a batch per invoke on a plain interpreter (keeping every tensor costs on each
    invoke), when the model allows it: the input resizes, every tensor computed from the samples
    follows the batch (:func:`_keeps_apart`), and the first batch gives exactly the outputs it
    gives one sample at a time. Otherwise, and from then on, one sample per invoke. Batches cost
    less per sample where the invoke's own overhead is a good part of the work (small models)."""

    def __init__(self, tflite: bytes, inputs: dict[str, int], outputs: dict[str, int],
                 shapes: dict[str, tuple[int, ...]], info: ModelInfo) -> None:
        self._tflite = tflite
        self._info = info
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
            if all(batched.get_tensor(index).shape[:1] == (BATCH,) for index in outputs.values()) and \
                    _keeps_apart(tflite, info, inputs, shapes):
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
        _set_padded(self._batched, self._inputs, feed)
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


def _follows_batch(model: Any, outputs: Iterable[int]) -> bool:
    """Every output of the resized ``model`` holds :data:`BATCH` samples. An output whose shape is
    computed at invoke (a dynamic tensor: a RESHAPE fed by SHAPE) has no data before it, and
    LiteRT refuses to show it ("Tensor data is null"): such a model runs one sample at a time."""
    try:
        return all(model.get_tensor(index).shape[:1] == (BATCH,) for index in outputs)
    except ValueError:
        return False


def _sample_tensors(info: ModelInfo) -> set[int]:
    """The main subgraph's tensors computed from the samples' values: its inputs and, in operator
    order, the outputs of every operator reading one (not through SHAPE, which reads only how
    many samples there are). Those computed from constants alone follow no batch."""
    computed = {io.tensor.index for io in info.inputs if io.tensor.subgraph == 0}
    for op in sorted((op for op in info.operators if op.subgraph == 0), key=lambda op: op.index):
        if op.op != "SHAPE" and any(i in computed for i in op.inputs if i >= 0):
            computed.update(o for o in op.outputs if o >= 0)
    return computed


def _per_sample(info: ModelInfo, single: Any, batched: Any) -> bool:
    """Whether ``batched`` (resized to :data:`BATCH` samples and invoked) keeps the samples apart
    as far as shapes tell: every tensor computed from the samples is shaped ``(BATCH, *rest)``
    where one sample's (``single``, invoked on one) is ``(1, *rest)``. A model written for one
    sample per invoke may take the max over every axis (a scalar), reshape to a batch of 1 or
    move the samples off the first axis: a batch mixes its samples there, and the first batch
    may not show it (samples alike in what is mixed: the same peak, say), later ones do."""
    one = {d["index"]: tuple(int(n) for n in d["shape"]) for d in single.get_tensor_details()}
    many = {d["index"]: tuple(int(n) for n in d["shape"]) for d in batched.get_tensor_details()}
    for index in _sample_tensors(info):
        shape = one.get(index)
        if shape is None or shape[:1] != (1,) or many.get(index) != (BATCH, *shape[1:]):
            return False
    return True


def _keeps_apart(tflite: bytes, info: ModelInfo, inputs: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> bool:
    """:func:`_per_sample` on interpreters of its own, one resized to :data:`BATCH` samples,
    both invoked on zeros (shapes computed at invoke are known then). Interpreters keeping every
    tensor: a plain one's delegate (XNNPACK) keeps the tensors it computes to itself, their
    shapes as they were before the resize."""
    batched = _resized(tflite, inputs, shapes)
    if batched is None:
        return False
    try:
        single = _make_interpreter(tflite, keep_tensors=True)
        for it in (single, batched):
            for detail in it.get_input_details():
                it.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
            it.invoke()
    except (ValueError, RuntimeError):
        return False
    return _per_sample(info, single, batched)
