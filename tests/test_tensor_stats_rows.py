"""The evaluation's faster paths give exactly what one sample at a time gives: the analysed samples
run a batch per invoke where the model allows it, their tensors counted a batch of rows at a time
(the same levels, limits, float sums added in the same order, channel ranges), bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcheck.tflite.inspect import TensorInfo, inspect_model
from qcheck.tflite.quant import QuantParams, quantize
from qcheck.tflite.run import ANALYSIS_SAMPLES, _io_indices, _make_interpreter, _params, run
from qcheck.tflite.tensor_stats import FEW_UNSEEN, TensorTracker, _Tracked

REAL = Path(__file__).parent / "real" / "mlperf_tiny"


def _tensor(dtype: str, zero_point: int, shape: tuple[int, ...]) -> TensorInfo:
    return TensorInfo(subgraph=0, index=0, name="t", dtype=dtype, shape=shape, shape_signature=shape,
                      scale=(0.05,), zero_point=(zero_point,), quantized_dimension=0, constant=False, data_bytes=0)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(["int8", "uint8", "int16"]), seed=st.integers(0, 2**32 - 1),
       samples=st.integers(1, 40), split=st.lists(st.integers(1, 9), min_size=1, max_size=8),
       spread=st.sampled_from([2, 6, 40, 300]))
def test_rows_count_as_one_sample_at_a_time(dtype: str, seed: int, samples: int, split: list[int],
                                            spread: int) -> None:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    zero_point = int(rng.integers(info.min, info.max, endpoint=True))
    shape = (1, 7, 5, 6)
    # Float twins beyond the integer range now and then (clipped), integers near the zero point
    # with a few levels new in each sample (the batches that may skip counting every value).
    f = rng.normal(0, spread * 0.05, (samples, *shape)).astype(np.float32)
    f[rng.random(f.shape) < 0.01] *= 1e4
    q = quantize(f, QuantParams(0.05, zero_point, dtype))[0]
    one, rows = (_Tracked(_tensor(dtype, zero_point, shape), "CONV_2D", 0) for _ in range(2))
    for sample_q, sample_f in zip(q, f, strict=True):
        one.observe(sample_q, sample_f)
    one.observe(q[0], None, calibration=True)
    start, sizes = 0, iter(split * samples)
    while start < samples:
        stop = min(samples, start + next(sizes))
        rows.observe_rows(q[start:stop], f[start:stop])
        start = stop
    rows.observe_rows(q[:1], None, calibration=True)

    batched, single = rows.report(), one.report()
    assert batched == single
    assert (rows.sq_err, rows.sq_ref, rows.clipped) == (one.sq_err, one.sq_ref, one.clipped)
    assert batched.levels_used == len(np.unique(q))


def test_levels_found_whichever_way_a_batch_is_settled() -> None:
    """Batches with no new level, a few new levels (looked for one by one) and many (counted)."""
    params = QuantParams(0.1, -3, "int8")
    tracked = _Tracked(_tensor("int8", -3, (1, 64)), "FULLY_CONNECTED", None)
    batches = [np.arange(-20, 21, 2), np.arange(-20, 21, 2)[::-1], np.array([-20, -19, 20, 5, 5]),
               np.arange(-128, 128, 7), np.array([-128, 127, 127, 0]), np.arange(-128, 128)]
    seen: set[int] = set()
    for batch in batches:
        tracked.observe_rows(batch.astype(np.int8).reshape(-1, 1, 1), None)
        seen |= set(batch.tolist())
        assert tracked.report().levels_used == len(seen)
    assert FEW_UNSEEN < len(np.arange(-128, 128, 7))  # one batch above was counted, not searched
    everything = np.concatenate(batches)
    assert tracked.report().saturation == np.isin(everything, [params.qmin, params.qmax]).mean()


@pytest.mark.parametrize(("model", "twin", "shape", "samples"), [
    ("kws_ref_model.tflite", None, (49, 10, 1), 300),  # past the analysed samples too
    ("vww_96_int8.tflite", "vww_96_float.tflite", (96, 96, 3), 45),
])
def test_run_is_the_per_sample_run_on_real_models(model: str, twin: str | None, shape: tuple[int, ...],
                                                  samples: int) -> None:
    """run() (analysed samples in batches where the model gives the same tensors that way, rows
    counted behind, float twin compared row by row) against one sample per invoke on plain
    interpreters, the tracker fed each sample's tensors: the same outputs and Analysis, to the bit."""
    quantized = (REAL / model).read_bytes()
    float_model = (REAL / twin).read_bytes() if twin else None
    x = (np.random.default_rng(3).random((samples, *shape), dtype=np.float32) * 4 - 2) * (20 if twin is None else 1)

    result = run(quantized, x, float_tflite=float_model, analysis_samples=ANALYSIS_SAMPLES)

    tracker = TensorTracker(inspect_model(quantized), inspect_model(float_model) if float_model else None)
    it = _make_interpreter(quantized, keep_tensors=True)
    ft = _make_interpreter(float_model, keep_tensors=True) if float_model else None
    (q_index,), outputs = _io_indices(it)[0].values(), _io_indices(it)[1]
    params = _params(next(d for d in it.get_tensor_details() if d["index"] == q_index))
    assert params is not None
    raw: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    for n, sample in enumerate(x):
        it.set_tensor(q_index, quantize(sample[None], params)[0])
        it.invoke()
        for name, index in outputs.items():
            raw[name].append(it.get_tensor(index)[0])
        if ft is not None:
            (f_index,) = _io_indices(ft)[0].values()
            ft.set_tensor(f_index, sample[None])
            ft.invoke()
        if n < ANALYSIS_SAMPLES:
            tracker.add(tracker.take(it, ft))

    assert result.analysis is not None and result.analysis == tracker.analysis()
    assert result.analysis.samples == min(samples, ANALYSIS_SAMPLES)
    assert twin is None or result.analysis.matched > 20
    for name, head in result.outputs.items():
        assert np.array_equal(head.raw, np.stack(raw[name]))
