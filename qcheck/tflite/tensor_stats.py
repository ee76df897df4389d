"""Per-tensor statistics of a quantized model, measured against its float twin.

For every activation tensor of the quantized model: how many of its integer levels the data
uses, how often values sit at the dtype limits, and, where the float model has a tensor of the
same name and shape (the converter names tensors after the Keras layers in both conversions),
the error of the dequantized values in quantization steps (``rmse / scale``: rounding alone gives
1/sqrt(12) = 0.29, above 0.7 is suspicious) and the SQNR in dB.

Per-layer error alone blames the wrong layer when one outlier channel stretches a per-tensor
range: the stretched layer looks healthy in its own (huge) steps and the next layer takes the
blame. So each tensor also gets its channels' float ranges, and a tensor whose channels mostly
span less than one quantization step is named as the cause. A cause must be able to cause: an
operator whose int8 output must keep its input's scale (a RESHAPE after a Flatten) only passes
a range on, so the cause is traced back through such operators to the one that chose the range.

Everything is accumulated sample by sample: memory does not grow with the data.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from qcheck.tflite.inspect import ModelInfo, OperatorInfo, TensorInfo
from qcheck.tflite.quant import QuantParams, dequantize

ROUNDING_ONLY = 1 / math.sqrt(12)  # rmse of uniform rounding, in steps
SUSPICIOUS = 0.7

# Operators whose int8 output TFLite requires to have the scale and zero point of their input
# ("restrict_same_input_output_scale" in tensorflow/lite/tools/optimize/operator_property.cc;
# the int8 kernels check it): they move, select or take the max/mean of values and never choose
# a range. The range of their output was chosen by whatever wrote their input.
RANGE_PRESERVING = frozenset({
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "CONCATENATION", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE", "GATHER",
    "GATHER_ND", "PAD", "PADV2", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "REDUCE_MAX", "REDUCE_MIN",
    "MAXIMUM", "MINIMUM", "TILE", "BROADCAST_TO",
})  # fmt: skip


# A channel whose reach is this many times the median channel's is an outlier that stretches a
# per-tensor range. Channels all crushed alike (a range calibrated on inputs scaled otherwise than
# the evaluation's: the widest channel about 1x the median) have no outlier to blame or fold.
OUTLIER_RATIO = 4.0


@dataclass(frozen=True)
class ChannelSpread:
    """How a per-tensor scale is shared by the channels (last axis) of an activation."""

    channels: int
    # The channel that stretches the per-tensor range most: the widest span from zero that
    # covers its values (a per-tensor range always holds zero). A channel stuck at a large
    # constant has no spread of its own, yet stretches the range as much as a wide one.
    widest: int
    widest_range: float  # that channel's reach: max(high, 0) - min(low, 0)
    median_range: float  # the median channel's reach
    under_one_step: int  # channels whose float values vary, but by less than one quantization step
    # The widest channel's own lowest and highest float values (NaN in an analysis cached
    # before they were recorded).
    widest_low: float = math.nan
    widest_high: float = math.nan

    @property
    def crushed(self) -> bool:
        """Most channels get less than one step because one channel stretched the range."""
        return self.channels >= 2 and self.under_one_step * 2 >= self.channels and self.widest_range > 0

    @property
    def stretched(self) -> bool:
        """One channel reaches far past the median channel (:data:`OUTLIER_RATIO`)."""
        return self.widest_range > 0 and self.widest_range >= OUTLIER_RATIO * self.median_range


@dataclass(frozen=True)
class TensorReport:
    """One activation tensor: saturation, levels used and, when matched, error vs float."""

    name: str
    op: str
    dtype: str
    scale: float
    zero_point: int
    saturation: float | None  # share clipped (vs float) or pinned at a non-zero-point limit
    levels_used: int
    levels: int
    rmse_steps: float | None = None
    sqnr_db: float | None = None
    spread: ChannelSpread | None = None
    calibration_saturation: float | None = None
    # When a range-preserving operator wrote this tensor: the operator that chose its range
    # (``CONV_2D 'conv1'``), the operator types between, and where the widest channel is in
    # that operator's output (None when the reshaping between does not say).
    range_from: str | None = None
    range_through: tuple[str, ...] = ()
    range_channel: int | None = None

    @property
    def suspicious(self) -> bool:
        return self.rmse_steps is not None and self.rmse_steps > SUSPICIOUS

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name, "op": self.op, "dtype": self.dtype, "scale": self.scale,
            "zero_point": self.zero_point, "saturation": self.saturation,
            "levels_used": self.levels_used, "levels": self.levels, "rmse_steps": self.rmse_steps,
            "sqnr_db": self.sqnr_db, "suspicious": self.suspicious,
            "calibration_saturation": self.calibration_saturation,
        }
        if self.range_from is not None:
            data["range_from"] = {"operator": self.range_from, "through": list(self.range_through),
                                  "channel": self.range_channel}
        if self.spread is not None:
            data["channels"] = {
                "count": self.spread.channels, "widest": self.spread.widest,
                "widest_range": self.spread.widest_range, "median_range": self.spread.median_range,
                "under_one_step": self.spread.under_one_step, "crushed": self.spread.crushed,
            }
            if math.isfinite(self.spread.widest_low) and math.isfinite(self.spread.widest_high):
                data["channels"]["widest_values"] = [self.spread.widest_low, self.spread.widest_high]
        return data


@dataclass(frozen=True)
class WeightsComparison:
    """The model's dequantized weights against the float reference's, layer by layer.

    A quantized weight is never more than half a quantization step from the float weight it
    was made from, so a layer where many weights are more than a step away was not made from
    the reference's weights: the two are different models (e.g. trained separately).
    """

    layers: int  # weight tensors compared
    differing: int  # of them, those with over DIFFERING_SHARE of weights more than a step away
    median_difference: float  # median over the layers of rms(dequantized - float) / rms(float)

    @property
    def different_models(self) -> bool:
        """Most compared layers have weights the quantization cannot explain."""
        return self.layers > 0 and self.differing * 2 > self.layers

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "differing": self.differing,
                "median_difference": self.median_difference, "different_models": self.different_models}


DIFFERING_SHARE = 0.1
_WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"})


@dataclass(frozen=True)
class Analysis:
    """Statistics of every activation tensor, in operator order, over ``samples`` samples."""

    samples: int
    calibration_samples: int
    matched: int  # tensors compared with the float model
    tensors: tuple[TensorReport, ...]
    weights: WeightsComparison | None = None  # None without a float model to compare with


FEW_UNSEEN = 4  # levels looked for one by one (a pass each) before counting every value instead


class _Levels:
    """Which integer levels a tensor's values used, and how many sat at each limit of the dtype:
    all that the report takes from a histogram, counted exactly.

    Most batches of an activation only use levels already seen; their minimum and maximum say
    so in one cheap pass each, and only the levels not yet seen between them are looked for.
    Counting every value (``np.bincount``, several times the cost) is left for batches that
    may hold many new levels. ``q`` holds one sample per index of its first axis.
    """

    def __init__(self, params: QuantParams) -> None:
        self.qmin, self.qmax = params.qmin, params.qmax
        self.seen = np.zeros(self.qmax - self.qmin + 1, dtype=bool)
        self.values = 0
        self.at_min = 0
        self.at_max = 0

    def add(self, q: np.ndarray) -> None:
        if not q.size:
            return
        self.values += q.size
        low, high = int(q.min()), int(q.max())
        if low == self.qmin:
            self.at_min += int(np.count_nonzero(q == low))
        if high == self.qmax:
            self.at_max += int(np.count_nonzero(q == high))
        self.seen[low - self.qmin] = self.seen[high - self.qmin] = True
        unseen = np.flatnonzero(~self.seen[low - self.qmin : high - self.qmin + 1])
        if len(unseen) > FEW_UNSEEN and len(q) > 1:
            # The first sample of a batch often shows most of the levels the others use:
            # counted alone, it leaves fewer levels to look for in the rest.
            self.seen |= self._counts(q[:1]) > 0
            q = q[1:]
            unseen = np.flatnonzero(~self.seen[low - self.qmin : high - self.qmin + 1])
        if len(unseen) > FEW_UNSEEN:
            self.seen |= self._counts(q) > 0
            return
        for offset in unseen.tolist():
            if np.any(q == low + offset):
                self.seen[low + offset - self.qmin] = True

    def _counts(self, q: np.ndarray) -> np.ndarray:
        """Values per level (index: level - qmin)."""
        if len(self.seen) == 256:
            # 8-bit tensors are counted by their raw byte (no int64 copy first), and put in
            # level order after (int8: bytes 128..255 hold the levels -128..-1).
            counts = np.bincount(q.view(np.uint8).ravel(), minlength=256)
            return np.roll(counts, 128) if self.qmin < 0 else counts
        return np.bincount((q.astype(np.int64) - self.qmin).ravel(), minlength=len(self.seen))

    @property
    def used(self) -> int:
        return int(np.count_nonzero(self.seen))

    def pinned_share(self, zero_point: int) -> float:
        """The share of values at a limit of the dtype that is not the zero point."""
        if not self.values:
            return 0.0
        at = (self.at_min if self.qmin != zero_point else 0) + (self.at_max if self.qmax != zero_point else 0)
        return at / self.values


class _Tracked:
    """Running sums for one quantized tensor (and its float twin, if any)."""

    def __init__(self, tensor: TensorInfo, op: str, float_index: int | None, info: ModelInfo | None = None) -> None:
        self.tensor = tensor
        self.op = op
        self.info = info  # to trace where the tensor's range was chosen
        self.params = QuantParams(tensor.scale[0], tensor.zero_point[0], tensor.dtype)
        self.float_index = float_index
        self.levels = self.params.qmax - self.params.qmin + 1
        lo, hi = self.params.float_range
        # A float value beyond half a step past the range would have been clipped (compared as
        # the float32 values are: numpy takes a Python float as the array's type).
        self.clip_low, self.clip_high = lo - self.params.scale / 2, hi + self.params.scale / 2
        self.used = _Levels(self.params)
        self.cal_used = _Levels(self.params)
        self.clipped = 0
        self.count = 0
        self.sq_err = 0.0
        self.sq_ref = 0.0
        self.ch_min: np.ndarray | None = None
        self.ch_max: np.ndarray | None = None

    def observe(self, q: np.ndarray, f: np.ndarray | None, calibration: bool = False) -> None:
        """Count in one sample's tensor (``f``: its float twin's, or None)."""
        self.observe_rows(q[None], None if f is None else f[None], calibration)

    def observe_rows(self, q: np.ndarray, f: np.ndarray | None, calibration: bool = False) -> None:
        """Count in several samples' tensors, one per row (each row shaped as the interpreter gives it)."""
        (self.cal_used if calibration else self.used).add(q)
        if f is None or calibration:
            return
        # Element by element over the rows at once; the sums and channel ranges row by row, so
        # that the float sums add up in the same order as one sample at a time.
        self.clipped += int(np.count_nonzero(f < self.clip_low)) + int(np.count_nonzero(f > self.clip_high))
        self.count += q.size
        reference = f.astype(np.float64)
        err = dequantize(q, self.params).astype(np.float64)
        err -= reference
        err *= err
        reference **= 2
        for row in range(len(q)):
            self.sq_err += float(np.sum(err[row]))
            self.sq_ref += float(np.sum(reference[row]))
        if f.ndim >= 3:
            for sample in f:
                flat = sample.reshape(-1, sample.shape[-1])
                mins, maxs = flat.min(axis=0), flat.max(axis=0)
                self.ch_min = mins if self.ch_min is None else np.minimum(self.ch_min, mins)
                self.ch_max = maxs if self.ch_max is None else np.maximum(self.ch_max, maxs)

    def report(self) -> TensorReport:
        p = self.params
        matched = self.float_index is not None and self.count > 0
        saturation: float | None = self.clipped / self.count if matched else self.used.pinned_share(p.zero_point)
        if not matched and self.op == "QUANTIZE":
            # A requantize mirrors its input: at the model's input, values at the limit are the
            # data's own extremes (white pixels), and the input's clipping is measured exactly.
            saturation = None
        rmse_steps = sqnr = None
        spread = None
        if matched:
            rmse_steps = math.sqrt(self.sq_err / self.count) / p.scale
            sqnr = 10 * math.log10(self.sq_ref / self.sq_err) if self.sq_err > 0 and self.sq_ref > 0 else None
            if self.ch_min is not None and self.ch_max is not None and len(self.ch_min) >= 2:
                low, high = self.ch_min.astype(np.float64), self.ch_max.astype(np.float64)
                ranges = high - low
                reach = np.maximum(high, 0.0) - np.minimum(low, 0.0)
                widest = int(np.argmax(reach))
                spread = ChannelSpread(len(ranges), widest, float(reach[widest]), float(np.median(reach)),
                                       # a channel that does not vary (a dead ReLU) loses nothing to the scale
                                       int(np.count_nonzero((ranges > 0) & (ranges < p.scale))), float(low[widest]),
                                       float(high[widest]))
        origin = range_origin(self.info, self.tensor, spread.widest if spread else None) if self.info else None
        return TensorReport(
            self.tensor.label, self.op, self.tensor.dtype, p.scale, p.zero_point, saturation,
            self.used.used, self.levels, rmse_steps, sqnr, spread,
            self.cal_used.pinned_share(p.zero_point) if self.cal_used.values else None,
            origin.label if origin else None, origin.through if origin else (),
            origin.channel if origin else None,
        )


@dataclass(frozen=True)
class RangeOrigin:
    """The operator that chose a tensor's range, reached back through range-preserving ones."""

    label: str  # ``CONV_2D 'conv1'``, ``#3 CONV_2D``, or the model's input
    through: tuple[str, ...]  # the range-preserving operator types walked back through
    channel: int | None  # the traced channel in that operator's output, when known


def range_origin(info: ModelInfo, tensor: TensorInfo, channel: int | None = None) -> RangeOrigin | None:
    """Where ``tensor``'s range was chosen, when a range-preserving operator wrote it.

    Walks back while the writing operator is in :data:`RANGE_PRESERVING` and its output's
    quantization equals its data input's (the file says whether it does); the operator reached
    chose the range. ``channel`` (of ``tensor``'s last axis) is followed back where the
    operators say where it comes from: a concatenation along the channels leads to the input
    that holds it. None when ``tensor``'s own writer chose its range.
    """
    through: list[str] = []
    current = tensor
    while (op := info.producer(current)) is not None and _passes_range_on(info, op, current):
        found = _data_input(info, op, current, channel)
        if found is None:
            break
        current, channel = found
        through.append(op.op)
    if not through:
        return None
    op = info.producer(current)
    label = info.operator_label(op) if op is not None else f"the model's input '{current.label}'"
    return RangeOrigin(label, tuple(through), channel)


def _passes_range_on(info: ModelInfo, op: OperatorInfo, output: TensorInfo) -> bool:
    """Whether ``op`` keeps its input's range: a RANGE_PRESERVING operator, or a QUANTIZE from
    one integer type to another with the same scale (int8 to uint8 at a model's output shifts
    only the zero point): what wrote its input chose the range."""
    if op.op in RANGE_PRESERVING:
        return True
    if op.op != "QUANTIZE" or len(op.inputs) != 1 or op.inputs[0] < 0:
        return False
    source = info.tensor(op.subgraph, op.inputs[0])
    return source.dtype in ("int8", "uint8", "int16") and source.scale == output.scale


def _data_input(info: ModelInfo, op: OperatorInfo, output: TensorInfo,
                channel: int | None) -> tuple[TensorInfo, int | None] | None:
    """The input whose range ``op`` passes on to ``output``, and where ``channel`` is in it."""
    inputs = [info.tensor(op.subgraph, i) for i in op.inputs if i >= 0]
    data = [t for t in inputs if not t.constant and t.scale == output.scale
            and (t.zero_point == output.zero_point or op.op == "QUANTIZE")]  # a requantize shifts it
    if not data or not output.shape or any(not t.shape for t in data):
        return None
    last = output.shape[-1]
    if len(data) > 1:
        # A concatenation along the channels: each input holds its own slice of them. Along
        # any other axis every input holds every channel, and the one widest is not known.
        if op.op != "CONCATENATION" or channel is None or sum(t.shape[-1] for t in data) != last:
            return None
        for source in data:
            if channel < source.shape[-1]:
                return source, channel
            channel -= source.shape[-1]
        return None
    source = data[0]
    width = source.shape[-1]
    if channel is None or width == last:
        return source, channel
    if last % width == 0 and op.op in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        return source, channel % width  # a Flatten of [..., width] (NHWC order)
    return source, None


Snapshot = list[tuple[np.ndarray, np.ndarray | None]]  # (quantized, float twin) per tracked tensor

ROW_BYTES = 4 << 20  # the tensors of up to this many bytes of samples are counted together
MAX_ROWS = 32


class Rows:
    """The tracked tensors of several samples, copied in one row per sample, to be counted
    together (a few numpy calls per tensor and batch, not per sample). Reused once counted."""

    def __init__(self, q: list[np.ndarray], f: list[np.ndarray | None]) -> None:
        self.q, self.f = q, f
        self.count = 0
        self.calibration = False
        self.twin = False  # holds float twins

    @property
    def size(self) -> int:
        return len(self.q[0]) if self.q else 1


class TensorTracker:
    """Collects :class:`TensorReport` data from interpreters built with all tensors preserved."""

    def __init__(self, info: ModelInfo, float_info: ModelInfo | None) -> None:
        self._info, self._float_info = info, float_info
        self.weights: WeightsComparison | None = None
        self._weights_compared = False
        float_by_name: dict[str, int] = {}
        if float_info is not None:
            for t in float_info.tensors:
                if t.subgraph == 0 and not t.constant and float_info.producer(t) is not None:
                    float_by_name.setdefault(t.name, t.index)
            float_shapes = {t.index: t.shape for t in float_info.tensors if t.subgraph == 0}
        self._tracked: list[_Tracked] = []
        order = {op.index: op for op in info.operators if op.subgraph == 0}
        for op_index in sorted(order):
            op = order[op_index]
            for out in op.outputs:
                t = info.tensor(0, out)
                if t.constant or len(t.scale) != 1 or t.dtype not in ("int8", "uint8", "int16"):
                    continue
                f_index = float_by_name.get(t.name) if t.name else None
                if f_index is not None and float_shapes[f_index] != t.shape:
                    f_index = None
                self._tracked.append(_Tracked(t, op.op, f_index, info))
        self.samples = 0
        self.calibration_samples = 0

    def take(self, interpreter: Any, float_interpreter: Any | None = None) -> Snapshot:
        """Copies of the tracked tensors after an invoke (and of their float twins)."""
        self._compare_weights_once(interpreter, float_interpreter)
        return [
            (interpreter.get_tensor(t.tensor.index),
             float_interpreter.get_tensor(t.float_index)
             if float_interpreter is not None and t.float_index is not None else None)
            for t in self._tracked
        ]  # fmt: skip

    def views(self, interpreter: Any, float_interpreter: Any | None = None) -> Snapshot:
        """The tracked tensors after an invoke (and their float twins) as views of the
        interpreters' own buffers, for copying out at once: no copy of each is made first, and
        none may be kept past the interpreters' next invoke (LiteRT refuses to run then)."""
        self._compare_weights_once(interpreter, float_interpreter)
        return [
            (interpreter.tensor(t.tensor.index)(),
             float_interpreter.tensor(t.float_index)()
             if float_interpreter is not None and t.float_index is not None else None)
            for t in self._tracked
        ]  # fmt: skip

    def _compare_weights_once(self, interpreter: Any, float_interpreter: Any | None) -> None:
        if float_interpreter is not None and self._float_info is not None and not self._weights_compared:
            self._weights_compared = True
            try:
                self.weights = compare_weights(self._info, interpreter, self._float_info, float_interpreter)
            except (ValueError, IndexError):  # a weight the interpreter does not hand out: no comparison
                self.weights = None

    def rows(self, samples: Snapshot) -> Rows:
        """Empty rows for as many samples as fit :data:`ROW_BYTES`, each shaped as one sample of
        ``samples`` (tensors with the samples along a new first axis)."""
        size = sum(q[0].nbytes + (f[0].nbytes if f is not None else 0) for q, f in samples)
        count = max(1, min(MAX_ROWS, ROW_BYTES // max(size, 1)))
        return Rows([np.empty((count, *q.shape[1:]), q.dtype) for q, _ in samples],
                    [np.empty((count, *f.shape[1:]), f.dtype) if f is not None else None for _, f in samples])

    @staticmethod
    def copy_rows(rows: Rows, samples: Snapshot, start: int, count: int) -> None:
        """Copy samples ``start`` to ``start + count`` of ``samples`` (tensors with the samples
        along a new first axis) into the next rows of ``rows``."""
        at = slice(rows.count, rows.count + count)
        for q_rows, f_rows, (q, f) in zip(rows.q, rows.f, samples, strict=True):
            q_rows[at] = q[start : start + count]
            if f_rows is not None and f is not None:
                f_rows[at] = f[start : start + count]
        rows.count += count

    def add_rows(self, rows: Rows) -> None:
        """Count in the samples held in ``rows`` (in row order)."""
        if rows.calibration:
            self.calibration_samples += rows.count
        else:
            self.samples += rows.count
        for tracked, q, f in zip(self._tracked, rows.q, rows.f, strict=True):
            tracked.observe_rows(q[: rows.count], None if f is None else f[: rows.count], rows.calibration)

    def add(self, snapshot: Snapshot, *, calibration: bool = False) -> None:
        """Count one sample's tensors in (a calibration sample's only in the calibration counts)."""
        if calibration:
            self.calibration_samples += 1
        else:
            self.samples += 1
        for tracked, (q, f) in zip(self._tracked, snapshot, strict=True):
            tracked.observe(q, f, calibration=calibration)

    def analysis(self) -> Analysis:
        reports = tuple(t.report() for t in self._tracked)
        matched = sum(1 for r in reports if r.rmse_steps is not None)
        return Analysis(self.samples, self.calibration_samples, matched, reports, self.weights)


def _weight_tensors(info: ModelInfo, dtypes: frozenset[str]) -> list[tuple[str, TensorInfo]]:
    """(operator type, weights) of every operator that has weights, in operator order."""
    found = []
    for op in info.operators:
        if op.subgraph == 0 and op.op in _WEIGHT_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
            t = info.tensor(0, op.inputs[1])
            if t.constant and t.dtype in dtypes:
                found.append((op.op, t))
    return found


def compare_weights(info: ModelInfo, interpreter: Any, float_info: ModelInfo,
                    float_interpreter: Any) -> WeightsComparison:
    """Compare the quantized model's weights with the float reference's, layer by layer.

    Weights are matched by tensor name where the reference has a float tensor of that name
    and shape (a twin converted by qcheck), otherwise by order among the operators of the
    same type with weights of the same shape (a reference converted elsewhere).
    """
    quantized = [(op, t) for op, t in _weight_tensors(info, frozenset({"int8", "uint8", "int16", "int4"})) if t.scale]
    floats = _weight_tensors(float_info, frozenset({"float32"}))
    by_name = {t.name: t for _, t in floats if t.name}
    unused = list(floats)
    differences, differing = [], 0
    for op, q in quantized:
        f = by_name.get(q.name) if q.name else None
        if f is None or f.shape != q.shape:
            f = next((t for o, t in unused if o == op and t.shape == q.shape), None)
        if f is None:
            continue
        unused = [(o, t) for o, t in unused if t is not f]
        values, reference = interpreter.get_tensor(q.index), float_interpreter.get_tensor(f.index)
        difference, share = _weights_difference(q, values, reference)
        differences.append(difference)
        differing += share > DIFFERING_SHARE
    median = float(np.median(differences)) if differences else 0.0
    return WeightsComparison(len(differences), differing, median)


def _weights_difference(q: TensorInfo, values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """rms(dequantized - float) / rms(float), and the share of weights more than a step away."""
    scale = np.asarray(q.scale, dtype=np.float64)
    zero = np.asarray(q.zero_point, dtype=np.float64)
    if len(scale) > 1:  # per channel, along quantized_dimension
        shape = [1] * values.ndim
        shape[q.quantized_dimension] = len(scale)
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    dequantized = (values.astype(np.float64) - zero) * scale
    error = dequantized - reference.astype(np.float64)
    rms = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2)))
    relative = float(np.sqrt(np.mean(error**2))) / rms if rms > 0 else float(np.any(error != 0))
    steps = np.abs(error) / np.broadcast_to(scale, error.shape)
    return relative, float(np.mean(steps > 1.0))


class CountingBehind:
    """Feeds a tracker on a second thread, in order, while the interpreter runs the next samples.

    The LiteRT ``Invoke`` and numpy's counting both release the GIL, so on a machine with a
    core to spare the analysis costs the evaluation almost nothing; with none, it costs what it
    would in line. The tensors of the samples given to :meth:`observe` are copied into
    :class:`Rows` and counted a batch at a time; at most ``depth`` batches wait, so memory stays
    bounded (about ``depth`` x :data:`ROW_BYTES`).
    """

    def __init__(self, tracker: TensorTracker, depth: int = 4) -> None:
        self._tracker = tracker
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcheck-tensor-stats")
        self._pending: deque[tuple[Future[None], Rows | None]] = deque()
        self._filling: Rows | None = None
        self._free: dict[bool, list[Rows]] = {False: [], True: []}  # by whether they hold float twins

    def observe(self, interpreter: Any, float_interpreter: Any | None = None, *, calibration: bool = False) -> None:
        """Copy the tracked tensors after an invoke (here) and count them in (behind, a batch at a time)."""
        snapshot = self._tracker.take(interpreter, float_interpreter)
        self.observe_samples([(q[None], None if f is None else f[None]) for q, f in snapshot], 1,
                             calibration=calibration)

    def observe_samples(self, samples: Snapshot, count: int, *, calibration: bool = False) -> None:
        """Count in the first ``count`` samples of ``samples`` (the tracked tensors with the
        samples along a new first axis, each shaped as one sample's tensor), in order."""
        twin = any(f is not None for _, f in samples)
        start = 0
        while start < count:
            rows = self._filling
            if rows is not None and (rows.calibration != calibration or rows.twin != twin):
                self.flush()
                rows = None
            if rows is None:
                free = self._free[twin]
                rows = free.pop() if free else self._tracker.rows(samples)
                rows.count, rows.calibration, rows.twin = 0, calibration, twin
                self._filling = rows
            taken = min(count - start, rows.size - rows.count)
            self._tracker.copy_rows(rows, samples, start, taken)
            start += taken
            if rows.count == rows.size:
                self.flush()

    def add(self, snapshot: Snapshot, *, calibration: bool = False) -> None:
        """Count in one sample's tensors (behind, after those given before)."""
        self.flush()
        self._queue(lambda: self._tracker.add(snapshot, calibration=calibration), None)

    def flush(self) -> None:
        """Start counting the samples observed so far (a batch not yet full)."""
        rows, self._filling = self._filling, None
        if rows is not None and rows.count:
            self._queue(lambda: self._tracker.add_rows(rows), rows)

    def _queue(self, count: Any, rows: Rows | None) -> None:
        if len(self._pending) >= self._depth:
            self._wait_oldest()
        self._pending.append((self._pool.submit(count), rows))

    def _wait_oldest(self) -> None:
        future, rows = self._pending.popleft()
        future.result()  # re-raises the counting thread's error here
        if rows is not None:
            self._free[rows.twin].append(rows)

    def __enter__(self) -> CountingBehind:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                self.flush()
            while self._pending:
                self._wait_oldest()
        finally:
            self._pool.shutdown(cancel_futures=True)


def likely_cause(analysis: Analysis) -> TensorReport | None:
    """The earliest tensor whose channels are crushed by one outlier channel, if any (most
    channels under one step with no outlier among them is a range set by other data: no cause)."""
    for report in analysis.tensors:
        if report.spread is not None and report.spread.crushed and report.spread.stretched:
            return report
    return None


def worst_layers(analysis: Analysis, count: int = 3) -> list[TensorReport]:
    """Tensors with the largest error in quantization steps, worst first."""
    measured = [r for r in analysis.tensors if r.rmse_steps is not None]
    return sorted(measured, key=lambda r: -(r.rmse_steps or 0.0))[:count]
