"""Per-tensor statistics of a quantized model, measured against its float twin.

For every activation tensor of the quantized model: how many of its integer levels the data
uses, how often values sit at the dtype limits, and, where the float model has a tensor of the
same name and shape (the converter names tensors after the Keras layers in both conversions),
the error of the dequantized values in quantization steps (``rmse / scale``: rounding alone gives
1/sqrt(12) = 0.29, above 0.7 is suspicious) and the SQNR in dB.

Per-layer error alone blames the wrong layer when one outlier channel stretches a per-tensor
range: the stretched layer looks healthy in its own (huge) steps and the next layer takes the
blame. So each tensor also gets its channels' float ranges, and a tensor whose channels mostly
span less than one quantization step is named as the cause.

Everything is accumulated sample by sample: memory does not grow with the data.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from qcheck.tflite.inspect import ModelInfo, TensorInfo
from qcheck.tflite.quant import QuantParams, dequantize

ROUNDING_ONLY = 1 / math.sqrt(12)  # rmse of uniform rounding, in steps
SUSPICIOUS = 0.7


@dataclass(frozen=True)
class ChannelSpread:
    """How a per-tensor scale is shared by the channels (last axis) of an activation."""

    channels: int
    widest: int  # index of the channel with the widest float range
    widest_range: float
    median_range: float
    under_one_step: int  # channels whose whole float range is less than one quantization step

    @property
    def crushed(self) -> bool:
        """Most channels get less than one step because one channel stretched the range."""
        return self.channels >= 2 and self.under_one_step * 2 >= self.channels and self.widest_range > 0


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
        if self.spread is not None:
            data["channels"] = {
                "count": self.spread.channels, "widest": self.spread.widest,
                "widest_range": self.spread.widest_range, "median_range": self.spread.median_range,
                "under_one_step": self.spread.under_one_step, "crushed": self.spread.crushed,
            }
        return data


@dataclass(frozen=True)
class Analysis:
    """Statistics of every activation tensor, in operator order, over ``samples`` samples."""

    samples: int
    calibration_samples: int
    matched: int  # tensors compared with the float model
    tensors: tuple[TensorReport, ...]


class _Tracked:
    """Running sums for one quantized tensor (and its float twin, if any)."""

    def __init__(self, tensor: TensorInfo, op: str, float_index: int | None) -> None:
        self.tensor = tensor
        self.op = op
        self.params = QuantParams(tensor.scale[0], tensor.zero_point[0], tensor.dtype)
        self.float_index = float_index
        self.qmin = self.params.qmin
        self.levels = self.params.qmax - self.qmin + 1
        # 8-bit tensors are counted by their raw byte (no conversion per sample: this runs for
        # every tensor of every analysed sample), and put in level order when reported.
        self.by_byte = self.levels == 256
        self.histogram = np.zeros(self.levels, dtype=np.int64)
        self.cal_histogram = np.zeros(self.levels, dtype=np.int64)
        self.cal_clipped = 0
        self.clipped = 0
        self.count = 0
        self.sq_err = 0.0
        self.sq_ref = 0.0
        self.ch_min: np.ndarray | None = None
        self.ch_max: np.ndarray | None = None

    def observe(self, q: np.ndarray, f: np.ndarray | None, calibration: bool = False) -> None:
        hist = self.cal_histogram if calibration else self.histogram
        if self.by_byte:
            hist += np.bincount(q.view(np.uint8).ravel(), minlength=256)
        else:
            hist += np.bincount((q.astype(np.int64) - self.qmin).ravel(), minlength=self.levels)
        if f is None or calibration:
            return
        p = self.params
        lo, hi = p.float_range
        self.clipped += int(np.count_nonzero((f < lo - p.scale / 2) | (f > hi + p.scale / 2)))
        err = dequantize(q, p).astype(np.float64) - f
        self.count += q.size
        self.sq_err += float(np.sum(err * err))
        self.sq_ref += float(np.sum(f.astype(np.float64) ** 2))
        if f.ndim >= 2:
            flat = f.reshape(-1, f.shape[-1])
            mins, maxs = flat.min(axis=0), flat.max(axis=0)
            self.ch_min = mins if self.ch_min is None else np.minimum(self.ch_min, mins)
            self.ch_max = maxs if self.ch_max is None else np.maximum(self.ch_max, maxs)

    def _in_level_order(self, hist: np.ndarray) -> np.ndarray:
        """Counts indexed by level - qmin (int8: bytes 128..255 hold the levels -128..-1)."""
        return np.roll(hist, 128) if self.by_byte and self.qmin < 0 else hist

    def _pinned_share(self, hist: np.ndarray) -> float:
        total = int(hist.sum())
        if not total:
            return 0.0
        p = self.params
        at = sum(int(hist[v - p.qmin]) for v in (p.qmin, p.qmax) if v != p.zero_point)
        return at / total

    def report(self) -> TensorReport:
        p = self.params
        histogram, cal_histogram = self._in_level_order(self.histogram), self._in_level_order(self.cal_histogram)
        matched = self.float_index is not None and self.count > 0
        saturation: float | None = self.clipped / self.count if matched else self._pinned_share(histogram)
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
                ranges = (self.ch_max - self.ch_min).astype(np.float64)
                spread = ChannelSpread(len(ranges), int(np.argmax(ranges)), float(ranges.max()),
                                       float(np.median(ranges)), int(np.count_nonzero(ranges < p.scale)))
        cal_total = int(cal_histogram.sum())
        return TensorReport(
            self.tensor.name, self.op, self.tensor.dtype, p.scale, p.zero_point, saturation,
            int(np.count_nonzero(histogram)), self.levels, rmse_steps, sqnr, spread,
            self._pinned_share(cal_histogram) if cal_total else None,
        )


Snapshot = list[tuple[np.ndarray, np.ndarray | None]]  # (quantized, float twin) per tracked tensor


class TensorTracker:
    """Collects :class:`TensorReport` data from interpreters built with all tensors preserved."""

    def __init__(self, info: ModelInfo, float_info: ModelInfo | None) -> None:
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
                f_index = float_by_name.get(t.name)
                if f_index is not None and float_shapes[f_index] != t.shape:
                    f_index = None
                self._tracked.append(_Tracked(t, op.op, f_index))
        self.samples = 0
        self.calibration_samples = 0

    def take(self, interpreter: Any, float_interpreter: Any | None = None) -> Snapshot:
        """Copies of the tracked tensors after an invoke (and of their float twins)."""
        return [
            (interpreter.get_tensor(t.tensor.index),
             float_interpreter.get_tensor(t.float_index)
             if float_interpreter is not None and t.float_index is not None else None)
            for t in self._tracked
        ]  # fmt: skip

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
        return Analysis(self.samples, self.calibration_samples, matched, reports)


class CountingBehind:
    """Feeds a tracker on a second thread, in order, while the interpreter runs the next sample.

    The LiteRT ``Invoke`` and numpy's counting both release the GIL, so on a machine with a
    core to spare the analysis costs the evaluation almost nothing; with none, it costs what it
    would in line. At most ``depth`` snapshots wait, so memory stays bounded.
    """

    def __init__(self, tracker: TensorTracker, depth: int = 4) -> None:
        self._tracker = tracker
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcheck-tensor-stats")
        self._pending: deque[Future[None]] = deque()

    def observe(self, interpreter: Any, float_interpreter: Any | None = None, *, calibration: bool = False) -> None:
        """Copy the tracked tensors after an invoke (here) and count them in (behind)."""
        self.add(self._tracker.take(interpreter, float_interpreter), calibration=calibration)

    def add(self, snapshot: Snapshot, *, calibration: bool = False) -> None:
        if len(self._pending) >= self._depth:
            self._pending.popleft().result()  # re-raises the counting thread's error here
        self._pending.append(self._pool.submit(self._tracker.add, snapshot, calibration=calibration))

    def __enter__(self) -> CountingBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(cancel_futures=True)


def likely_cause(analysis: Analysis) -> TensorReport | None:
    """The earliest tensor whose channels are crushed by one outlier channel, if any."""
    for report in analysis.tensors:
        if report.spread is not None and report.spread.crushed:
            return report
    return None


def worst_layers(analysis: Analysis, count: int = 3) -> list[TensorReport]:
    """Tensors with the largest error in quantization steps, worst first."""
    measured = [r for r in analysis.tensors if r.rmse_steps is not None]
    return sorted(measured, key=lambda r: -(r.rmse_steps or 0.0))[:count]
