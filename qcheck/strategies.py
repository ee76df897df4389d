"""Hypothesis strategies for quantized models: valid inputs, perturbed samples, quantization parameters.

    from hypothesis import given
    from qcheck import strategies as qst

    def test_any_valid_input_gives_probabilities(qcheck_quantized):
        @given(qst.inputs(qcheck_quantized))
        def check(x):
            (probs,) = qcheck_quantized.probabilities(x).values()
            assert abs(probs.sum() - 1) < 0.05
        check()

A model is a :class:`~qcheck.quantized.QuantizedModel` (the ``qcheck_quantized`` fixture, or
``qcheck.quantize(...)``) or the :class:`~qcheck.tflite.inspect.ModelInfo` of a ``.tflite``.
Inputs are float arrays as the float model takes them, with a batch dimension, and every value
on the input's quantization grid inside the range it represents: quantizing them clips nothing.
The built-in ``robustness`` and ``consistency`` checks draw from these same strategies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcheck.tflite.quant import INTEGER_DTYPES, QuantParams, dequantize, tensor_params

if TYPE_CHECKING:
    from qcheck.quantized import QuantizedModel
    from qcheck.tflite.inspect import ModelInfo

DTYPES = INTEGER_DTYPES
_SEEDS = 2**32 - 1


def _info(model: QuantizedModel | ModelInfo) -> ModelInfo:
    from qcheck.tflite.inspect import ModelInfo

    return model if isinstance(model, ModelInfo) else model.info


def _one_input(info: ModelInfo) -> None:
    if len(info.inputs) != 1:
        names = ", ".join(f"'{io.name}'" for io in sorted(info.inputs, key=lambda io: io.name))
        raise ValueError(f"the model has {len(info.inputs)} inputs ({names}): multi-input models are not "
                         "supported by qcheck's strategies yet; draw each input with hypothesis.extra.numpy.arrays")


def input_params(model: QuantizedModel | ModelInfo) -> QuantParams | None:
    """The quantization parameters of the model's (single) input; None for a float input."""
    info = _info(model)
    _one_input(info)
    return tensor_params(info.inputs[0].tensor)


def sample_shape(model: QuantizedModel | ModelInfo) -> tuple[int, ...]:
    """The shape of one input sample (the input's shape without its batch dimension)."""
    info = _info(model)
    _one_input(info)
    return tuple(max(int(d), 1) for d in info.inputs[0].tensor.shape[1:])


def _quantized_input(model: QuantizedModel | ModelInfo) -> QuantParams:
    params = input_params(model)
    if params is None:
        raise ValueError("the model's input is float, not quantized: there is no integer range to draw from; "
                         "draw floats with hypothesis.extra.numpy.arrays and a value range you choose")
    return params


def quant_params(dtype: str | None = None, *, symmetric: bool = False, min_scale: float = 2.0**-20,
                 max_scale: float = 2.0**10) -> st.SearchStrategy[QuantParams]:
    """Per-tensor quantization parameters: ``scale > 0``, ``zero_point`` inside the dtype's range.

    ``symmetric`` puts the zero point at the middle of the range (0 for int8 and int16, 128 for
    uint8), as TFLite does for weights and int16 activations.
    """
    if min_scale <= 0 or max_scale < min_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
    dtypes = st.just(dtype) if dtype is not None else st.sampled_from(DTYPES)

    def params(name: str) -> st.SearchStrategy[QuantParams]:
        limits = np.iinfo(name)
        middle = st.just(128 if name == "uint8" else 0)
        zero_point = middle if symmetric else st.integers(int(limits.min), int(limits.max))
        scale = st.floats(min_scale, max_scale, allow_nan=False, allow_infinity=False)
        return st.builds(QuantParams, scale, zero_point, st.just(name))

    return dtypes.flatmap(params)


def raw_inputs(model: QuantizedModel | ModelInfo, *, batch: int = 1) -> st.SearchStrategy[np.ndarray]:
    """Integer inputs of the input's dtype and shape: every value the model can be fed.

    Values shrink toward the zero point, so a shrunk example reads as "all real 0 except ...".
    """
    params = _quantized_input(model)
    shape = (batch, *sample_shape(model))
    offsets = st.integers(params.qmin - params.zero_point, params.qmax - params.zero_point)
    return hnp.arrays(np.int32, shape, elements=offsets).map(
        lambda d: (d + params.zero_point).astype(params.dtype))


def inputs(model: QuantizedModel | ModelInfo, *, batch: int = 1) -> st.SearchStrategy[np.ndarray]:
    """Float inputs (float32, with a batch dimension) that quantize exactly to :func:`raw_inputs`.

    Every value is on the input's quantization grid inside its representable range
    (:attr:`QuantParams.float_range`): nothing is clipped or rounded when the model reads it.
    """
    params = _quantized_input(model)
    return raw_inputs(model, batch=batch).map(lambda q: dequantize(q, params))


@dataclass(frozen=True)
class Perturbation:
    """Uniform noise of at most ``magnitude`` quantization steps per value, from ``seed``."""

    magnitude: float
    seed: int

    def apply(self, sample: np.ndarray, params: QuantParams) -> np.ndarray:
        """``sample`` moved by the noise, kept inside the range the input represents (float32)."""
        noise = np.random.default_rng(self.seed).uniform(-1.0, 1.0, sample.shape)
        lo, hi = params.float_range
        moved = sample.astype(np.float64) + self.magnitude * params.scale * noise
        return np.clip(moved, lo, hi).astype(np.float32)

    def describe(self) -> str:
        return f"up to {self.magnitude:.3g} quantization step(s) per value (noise seed {self.seed})"


def perturbation_noise(steps: float) -> st.SearchStrategy[Perturbation]:
    """Perturbations of at most ``steps`` input quantization steps; they shrink toward no noise."""
    if not steps > 0:
        raise ValueError(f"steps must be more than 0, got {steps}")
    return st.builds(Perturbation, st.floats(0.0, float(steps), allow_nan=False), st.integers(0, _SEEDS))


def perturbations(model: QuantizedModel | ModelInfo, sample: np.ndarray, *,
                  steps: float = 1.0) -> st.SearchStrategy[np.ndarray]:
    """``sample`` (float, as the float model takes it) moved by at most ``steps`` quantization
    steps of the model's input per value, staying inside the range the input represents."""
    params = _quantized_input(model)
    base = np.asarray(sample, dtype=np.float32)
    return perturbation_noise(steps).map(lambda p: p.apply(base, params))
