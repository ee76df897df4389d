"""qcheck.strategies and the property-based checks built on them (robustness, consistency)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES, REAL, QcheckRun, run_qcheck
from hypothesis import given, settings
from hypothesis import strategies as st

from qcheck import strategies as qst
from qcheck.property_search import describe_input, search_robustness
from qcheck.tflite.inspect import ModelInfo, inspect_model
from qcheck.tflite.quant import QuantParams, quantize

MODELS = {name: inspect_model((REAL / path).read_bytes()) for name, path in {
    "hello": "tflm/hello_world_int8.tflite",  # int8 input (1, 1)
    "kws": "mlperf_tiny/kws_ref_model.tflite",  # int8 input (1, 49, 10, 1)
    "vww": "mlperf_tiny/vww_96_int8.tflite",  # int8 input (1, 96, 96, 3): large, drawn sparsely
}.items()}
models = st.sampled_from(sorted(MODELS)).map(MODELS.__getitem__)


# --- the strategies ---------------------------------------------------------------------------------

@given(st.data())
def test_quant_params_are_valid(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from([None, *qst.DTYPES]))
    params = data.draw(qst.quant_params(dtype))
    assert params.scale > 0 and np.isfinite(params.scale)
    assert params.dtype in qst.DTYPES and (dtype is None or params.dtype == dtype)
    assert params.qmin <= params.zero_point <= params.qmax
    symmetric = data.draw(qst.quant_params(dtype, symmetric=True))
    assert symmetric.zero_point == (128 if symmetric.dtype == "uint8" else 0)


def test_quant_params_refuse_a_scale_range_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="0 < min_scale <= max_scale"):
        qst.quant_params(min_scale=0)


@settings(max_examples=30, deadline=None)
@given(st.data(), models, st.integers(1, 3))
def test_inputs_fit_the_model_and_quantize_without_clipping(data: st.DataObject, info: ModelInfo, batch: int) -> None:
    params = qst.input_params(info)
    assert params is not None
    x = data.draw(qst.inputs(info, batch=batch))
    assert x.dtype == np.float32 and x.shape == (batch, *qst.sample_shape(info))
    lo, hi = params.float_range
    assert ((x >= lo) & (x <= hi)).all()
    q, clipped = quantize(x, params)
    assert clipped == 0
    np.testing.assert_allclose((q.astype(np.float64) - params.zero_point) * params.scale, x, rtol=1e-6, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.data(), models)
def test_raw_inputs_cover_the_dtype(data: st.DataObject, info: ModelInfo) -> None:
    params = qst.input_params(info)
    assert params is not None
    q = data.draw(qst.raw_inputs(info))
    assert q.dtype == np.dtype(params.dtype) and q.shape == (1, *qst.sample_shape(info))
    assert ((q >= params.qmin) & (q <= params.qmax)).all()


@settings(max_examples=40, deadline=None)
@given(st.data(), models, st.floats(0.01, 8))
def test_perturbations_stay_within_the_step_budget_and_the_range(data: st.DataObject, info: ModelInfo,
                                                                 steps: float) -> None:
    params = qst.input_params(info)
    assert params is not None
    sample = data.draw(qst.inputs(info))
    moved = data.draw(qst.perturbations(info, sample, steps=steps))
    assert moved.shape == sample.shape and moved.dtype == np.float32
    lo, hi = params.float_range
    assert ((moved >= np.float32(lo)) & (moved <= np.float32(hi))).all()
    # float32 rounding of the result aside, no value moved more than `steps` steps
    assert np.max(np.abs(moved.astype(np.float64) - sample)) <= steps * params.scale + 1e-6 * max(abs(lo), abs(hi), 1)


@given(qst.perturbation_noise(2.0), st.integers(0, 5))
def test_a_perturbation_is_reproducible_from_its_magnitude_and_seed(noise: qst.Perturbation, n: int) -> None:
    params = QuantParams(0.05, 3, "int8")
    sample = np.linspace(-2, 2, 24, dtype=np.float32).reshape(1, 4, 6)[:, : n + 1]
    np.testing.assert_array_equal(noise.apply(sample, params), qst.Perturbation(noise.magnitude, noise.seed)
                                  .apply(sample, params))
    assert "quantization step(s)" in noise.describe()


def test_no_noise_leaves_the_sample_as_it_is() -> None:
    params = QuantParams(0.1, 0, "int8")
    sample = np.array([[0.5, -1.2, 3.0]], np.float32)
    np.testing.assert_array_equal(qst.Perturbation(0.0, 7).apply(sample, params), sample)
    with pytest.raises(ValueError, match="steps must be more than 0"):
        qst.perturbation_noise(0)


def test_a_float_input_has_no_range_to_draw_from() -> None:
    info = inspect_model((REAL / "mlperf_tiny" / "vww_96_float.tflite").read_bytes())
    assert qst.input_params(info) is None
    with pytest.raises(ValueError, match="the model's input is float"):
        qst.inputs(info)


def test_strategies_take_a_quantized_model() -> None:
    import qcheck

    q = qcheck.quantize(REAL / "tflm" / "hello_world_int8.tflite")
    assert qst.input_params(q) == qst.input_params(q.info)

    @settings(max_examples=5, deadline=None)
    @given(qst.inputs(q, batch=2))
    def runs(x: np.ndarray) -> None:
        (out,) = q(x).values()
        assert out.shape == (2, 1)

    runs()


def test_describe_input_names_what_differs() -> None:
    params = QuantParams(1 / 255, 0, "uint8")
    x = np.zeros((1, 2, 2, 1), np.float32)
    x[0, 1, 0, 0] = 1.0
    assert describe_input(x, params) == "input (1, 2, 2, 1) uint8 all 0 (real 0) except [0, 1, 0, 0]=255 (real 1)"
    assert describe_input(np.zeros((1, 3), np.float32), params) == "input (1, 3) uint8 all 0 (real 0)"


# --- the property checks ------------------------------------------------------------------------------

def test_robustness_passes_a_sound_model_deterministically() -> None:
    vww = (REAL / "mlperf_tiny" / "vww_96_int8.tflite").read_bytes()
    first = search_robustness(vww, 15)
    assert first.violations == () and first.examples == 15  # softmax output, no state


@pytest.fixture(scope="session")
def properties_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """The property checks, switched on from the command line, on the fragile and the sound model."""
    return run_qcheck(
        tmp_path_factory.mktemp("properties"),
        f"--qcheck-model={FIXTURES / 'fragile.keras'}",
        f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
        f"--qcheck-data={FIXTURES / 'digits.npz'}",
        "--qcheck-set", "robustness.enabled=true",
        "--qcheck-set", "consistency.enabled=true",
        "-k", "robustness or consistency",
    )


def test_robustness_finds_the_input_that_clips_the_fragile_model(properties_run: QcheckRun) -> None:
    check = properties_run.check("fragile.keras", "robustness")
    assert check["passed"] is False and check["value"] >= 1 and check["threshold"] == 0
    message = check["message"]
    assert "shrunk counter-example" in message and "outputs in range: input (1, 8, 8, 1) uint8" in message
    assert "output 'logits' is clipped at 255" in message and "try:" in message
    assert properties_run.model("fragile.keras")["robustness"]["violations"][0]["property"] == "outputs in range"


def test_consistency_finds_a_perturbation_that_splits_the_fragile_model(properties_run: QcheckRun) -> None:
    check = properties_run.check("fragile.keras", "consistency")
    assert check["passed"] is False and check["value"] < 0.95 and check["threshold"] == pytest.approx(0.95)
    section = properties_run.model("fragile.keras")["consistency"]
    assert section["samples"] == 200 and section["agree_perturbed"] < 190
    counter = section["counter_example"]
    assert counter.startswith("evaluation sample ") and "both models agree on it as it is" in counter
    assert "quantization step(s) per value (noise seed" in counter and "float top-1" in counter
    assert counter in check["message"]


def test_the_sound_model_passes_both_properties(properties_run: QcheckRun) -> None:
    assert properties_run.check("digits_cnn.keras", "robustness")["passed"] is True
    consistency = properties_run.check("digits_cnn.keras", "consistency")
    assert consistency["passed"] is True and consistency["value"] >= 0.95


def test_the_search_is_deterministic(properties_run: QcheckRun) -> None:
    fragile = (properties_run.out_dir / "fragile_quant.tflite").read_bytes()
    first, second = search_robustness(fragile, 40), search_robustness(fragile, 40)
    assert first == second and first.violations
    found = properties_run.model("fragile.keras")["robustness"]["violations"][0]["counter_example"]
    assert search_robustness(fragile, 100).violations[0].counter_example == found  # same as the run's
