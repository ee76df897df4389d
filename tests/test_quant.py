"""qcheck.tflite.quant: the affine quantization arithmetic, checked against its definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcheck.tflite.quant import QuantParams, dequantize, quantize

DTYPES = ["int8", "uint8", "int16"]


@st.composite
def quant_params(draw: st.DrawFn, dtype: str | None = None, power_of_two: bool = False) -> QuantParams:
    dtype = dtype or draw(st.sampled_from(DTYPES))
    info = np.iinfo(dtype)
    if power_of_two:
        scale = 2.0 ** draw(st.integers(-12, 4))
    else:
        scale = draw(st.floats(min_value=1e-5, max_value=100.0))
    zero_point = draw(st.integers(int(info.min), int(info.max)))
    return QuantParams(scale, zero_point, dtype)


@st.composite
def params_and_values_inside(draw: st.DrawFn) -> tuple[QuantParams, np.ndarray]:
    params = draw(quant_params())
    lo, hi = params.float_range
    x = draw(hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(lo, hi)))
    return params, x


def test_dtype_limits_and_float_range() -> None:
    p = QuantParams(0.5, -128, "int8")
    assert (p.qmin, p.qmax) == (-128, 127)
    assert p.float_range == (0.0, 127.5)
    u = QuantParams(0.1, 128, "uint8")
    assert (u.qmin, u.qmax) == (0, 255)
    assert u.float_range == pytest.approx((-12.8, 12.7))
    s = QuantParams(1.0, 0, "int16")
    assert (s.qmin, s.qmax) == (-32768, 32767)


@given(params_and_values_inside())
def test_values_inside_the_range_round_trip_within_half_a_step(case: tuple[QuantParams, np.ndarray]) -> None:
    params, x = case
    q, clipped = quantize(x, params)
    assert clipped == 0
    assert q.dtype == np.dtype(params.dtype)
    assert q.shape == x.shape
    assert ((q >= params.qmin) & (q <= params.qmax)).all()
    back = dequantize(q, params)
    assert back.dtype == np.float32
    # half a step, plus float32 rounding of the dequantized value
    eps = float(np.max(np.abs(x))) * 2.0**-22 + 1e-12
    assert np.all(np.abs(back.astype(np.float64) - x) <= params.scale / 2 + eps)


@given(params=quant_params(), data=st.data())
def test_integers_survive_dequantize_then_quantize(params: QuantParams, data: st.DataObject) -> None:
    q = data.draw(hnp.arrays(params.dtype, st.integers(1, 40),
                             elements=st.integers(params.qmin, params.qmax)))
    again, clipped = quantize(dequantize(q, params), params)
    assert clipped == 0
    np.testing.assert_array_equal(again, q)


def test_dequantize_is_the_affine_formula() -> None:
    p = QuantParams(0.25, 3, "int8")
    q = np.array([-128, 3, 4, 127], dtype=np.int8)
    np.testing.assert_array_equal(dequantize(q, p), np.array([-131 * 0.25, 0, 0.25, 124 * 0.25], np.float32))


@given(params=quant_params(), data=st.data())
def test_values_outside_are_clipped_and_counted(params: QuantParams, data: st.DataObject) -> None:
    """Steps beyond the ends (by at least one) clip to qmin/qmax; the count is exact."""
    inside = data.draw(st.lists(st.integers(params.qmin, params.qmax), max_size=20))
    above = data.draw(st.lists(st.floats(1.0, 1e4), max_size=20))
    below = data.draw(st.lists(st.floats(1.0, 1e4), max_size=20))
    steps = ([q - params.zero_point for q in inside]
             + [params.qmax - params.zero_point + d for d in above]
             + [params.qmin - params.zero_point - d for d in below])
    order = data.draw(st.permutations(range(len(steps))))
    x = np.array([steps[i] for i in order], dtype=np.float64) * params.scale
    q, clipped = quantize(x, params)
    assert clipped == len(above) + len(below)
    kinds = (["in"] * len(inside) + ["above"] * len(above) + ["below"] * len(below))
    kinds = [kinds[i] for i in order]
    for kind, value in zip(kinds, q.tolist(), strict=True):
        if kind == "above":
            assert value == params.qmax
        elif kind == "below":
            assert value == params.qmin
        else:
            assert params.qmin <= value <= params.qmax


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_clipping_edge_is_half_a_step_beyond_the_range(dtype: str) -> None:
    info = np.iinfo(dtype)
    params = QuantParams(0.5, 0 if dtype != "uint8" else 10, dtype)
    top = (info.max - params.zero_point) * params.scale
    bottom = (info.min - params.zero_point) * params.scale
    step = params.scale
    x = np.array([top, top + 0.4 * step, top + 0.5 * step, bottom, bottom - 0.4 * step, bottom - 0.5 * step])
    q, clipped = quantize(x, params)
    # exactly half a step beyond the end rounds away from zero, i.e. out of the range
    assert q.tolist() == [info.max, info.max, info.max, info.min, info.min, info.min]
    assert clipped == 2


def test_halves_round_away_from_zero_like_tflite() -> None:
    p = QuantParams(1.0, 0, "int8")
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -2.4999, 0.0])
    q, clipped = quantize(x, p)
    assert q.tolist() == [1, 2, 3, -1, -2, -3, 2, -2, 0]
    assert clipped == 0
    # numpy's own rounding sends halves to even: 2.5 -> 2; TFLite's std::round does not
    assert np.round(2.5) == 2


def test_halves_are_rounded_before_the_zero_point_is_added() -> None:
    # x / scale = +-2.5 rounds to +-3, then the zero point is added: 13 and 7. Rounding after
    # adding it would give round(12.5) = 13 but round(7.5) = 8.
    p = QuantParams(0.5, 10, "int8")
    q, clipped = quantize(np.array([1.25, -1.25]), p)
    assert q.tolist() == [13, 7]
    assert clipped == 0


@given(params=quant_params(power_of_two=True), k=st.integers(-40000, 40000))
def test_every_half_rounds_away_from_zero(params: QuantParams, k: int) -> None:
    x = np.array([(k + 0.5) * params.scale])  # exact: the scale is a power of two
    q, clipped = quantize(x, params)
    away = k + 1 if k >= 0 else k  # k + 0.5 away from zero
    expected = away + params.zero_point
    assert clipped == int(not params.qmin <= expected <= params.qmax)
    assert int(q[0]) == min(max(expected, params.qmin), params.qmax)


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_multidimensional_input(dtype: str) -> None:
    params = QuantParams(1 / 64, 0 if dtype != "uint8" else 128, dtype)
    x = np.linspace(-1, 1, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1)
    q, clipped = quantize(x, params)
    assert q.shape == x.shape
    assert q.dtype == np.dtype(dtype)
    assert clipped == 0
    np.testing.assert_allclose(dequantize(q, params), x, atol=params.scale / 2 + 1e-7)
