"""Per-tensor statistics counted sample by sample, checked against numpy on the whole data."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcheck.tflite.inspect import TensorInfo
from qcheck.tflite.tensor_stats import CountingBehind, TensorTracker, _Tracked


def _tensor(dtype: str, zero_point: int) -> TensorInfo:
    return TensorInfo(subgraph=0, index=0, name="t", dtype=dtype, shape=(1, 4, 3), shape_signature=(1, 4, 3),
                      scale=(0.5,), zero_point=(zero_point,), quantized_dimension=0, constant=False, data_bytes=0)


@given(dtype=st.sampled_from(["int8", "uint8", "int16"]), data=st.data())
def test_levels_used_and_values_pinned_at_the_limits(dtype: str, data: st.DataObject) -> None:
    info = np.iinfo(dtype)
    zero_point = data.draw(st.integers(int(info.min), int(info.max)))
    # Values crowd the limits, where the level order of int8's raw bytes matters.
    values = st.one_of(st.sampled_from([int(info.min), int(info.max), zero_point]),
                       st.integers(int(info.min), int(info.max)))
    samples = data.draw(hnp.arrays(np.dtype(dtype), (data.draw(st.integers(1, 5)), 1, 4, 3), elements=values))
    tracked = _Tracked(_tensor(dtype, zero_point), "CONV_2D", None)
    for sample in samples:
        tracked.observe(sample, None)
    tracked.observe(samples[0], None, calibration=True)
    report = tracked.report()

    assert report.levels_used == len(np.unique(samples))
    pinned = [v for v in (int(info.min), int(info.max)) if v != zero_point]
    assert report.saturation == np.isin(samples, pinned).mean()
    assert report.calibration_saturation == np.isin(samples[0], pinned).mean()


class _Recorder:
    """Stands in for the tracker's counting only: records the order samples arrive in."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.seen: list[tuple[int, bool]] = []
        self.fail_at = fail_at

    def add(self, snapshot: list[tuple[np.ndarray, None]], *, calibration: bool = False) -> None:
        value = int(snapshot[0][0][0])
        if value == self.fail_at:
            raise ValueError(f"cannot count sample {value}")
        self.seen.append((value, calibration))


def test_counting_behind_keeps_the_order_and_reports_errors() -> None:
    recorder = _Recorder()
    with CountingBehind(cast(TensorTracker, recorder), depth=2) as behind:
        for i in range(50):
            behind.add([(np.array([i]), None)], calibration=i < 5)
    assert recorder.seen == [(i, i < 5) for i in range(50)]

    with pytest.raises(ValueError, match="cannot count sample 7"):
        with CountingBehind(cast(TensorTracker, _Recorder(fail_at=7)), depth=2) as behind:
            for i in range(50):
                behind.add([(np.array([i]), None)])


def _spread(channel_values: list[np.ndarray]) -> tuple[int, bool]:
    """(under_one_step, crushed) of a 3-channel int8 tensor (scale 0.5) whose float twin takes
    ``channel_values[c]`` in channel c over 8 samples."""
    tracked = _Tracked(_tensor("int8", -128), "CONV_2D", 0)
    for i in range(8):
        f = np.stack([np.full((1, 4), values[i], np.float32) for values in channel_values], axis=-1)
        q = np.clip(np.round(f / 0.5) - 128, -128, 127).astype(np.int8)
        tracked.observe(q, f)
    spread = tracked.report().spread
    assert spread is not None
    return spread.under_one_step, spread.crushed


def test_a_constant_channel_is_not_crushed_by_an_outlier_channel() -> None:
    # vww_96_int8 (synthetic frames): "channel 35 spans 57x the median channel's range, so its
    # per-tensor scale (0.02388) leaves 71 of 128 channels less than one quantization step" - the
    # 71 did not vary at all (51 dead ReLUs at 0, 20 constant), so no scale could give them a step.
    wide = np.linspace(0, 60, 8)
    assert _spread([wide, np.zeros(8), np.full(8, 3.0)]) == (0, False)
    # Channels that vary by less than one step are crushed.
    assert _spread([wide, np.linspace(0, 0.2, 8), np.linspace(1, 1.3, 8)]) == (2, True)
