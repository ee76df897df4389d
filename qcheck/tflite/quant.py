"""The affine quantization arithmetic: ``q = round(x / scale) + zero_point``, clipped to the dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from qcheck.tflite.inspect import TensorInfo

INTEGER_DTYPES = ("int8", "uint8", "int16")


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor quantization parameters of an integer tensor."""

    scale: float
    zero_point: int
    dtype: str  # "int8", "uint8", "int16"

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    @property
    def float_range(self) -> tuple[float, float]:
        """The real values the integer range can represent."""
        return ((self.qmin - self.zero_point) * self.scale, (self.qmax - self.zero_point) * self.scale)


BLOCK = 1 << 16  # values quantized at a time: the float64 temporaries stay in the CPU's cache


def quantize(x: np.ndarray, params: QuantParams) -> tuple[np.ndarray, int]:
    """Quantize ``x``; return the integers and how many values were clipped to fit the dtype.

    Halves round away from zero, as TFLite's QUANTIZE kernel does (``std::round``); numpy's
    own ``round`` would round them to even.
    """
    values = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(values.shape, params.dtype)
    clipped = 0
    for start in range(0, len(values), BLOCK):
        clipped += _quantize_block(values[start : start + BLOCK], params, out[start : start + BLOCK])
    return out.reshape(np.shape(x)), clipped


def _quantize_block(x: np.ndarray, params: QuantParams, out: np.ndarray) -> int:
    """``out = clip(sign(v) * floor(|v| + 0.5) + zero_point)`` with ``v = x / scale`` in float64,
    in place; the count of values clipped. ``copysign`` stands for the product with ``sign(v)``:
    the two differ only in the sign of a zero or a NaN, which the integers do not keep."""
    v = x.astype(np.float64)
    np.divide(v, params.scale, out=v)
    q = np.abs(v)
    q += 0.5
    np.floor(q, out=q)
    np.copysign(q, v, out=q)
    q += params.zero_point
    clipped = int(np.count_nonzero(q < params.qmin)) + int(np.count_nonzero(q > params.qmax))
    out[...] = np.clip(q, params.qmin, params.qmax, out=q)
    return clipped


def dequantize(q: np.ndarray, params: QuantParams) -> np.ndarray:
    """Real values of quantized integers: ``(q - zero_point) * scale``."""
    return ((q.astype(np.int32) - params.zero_point) * params.scale).astype(np.float32)


def tensor_params(tensor: TensorInfo) -> QuantParams | None:
    """A tensor's (per-tensor, or first channel's) quantization parameters; None for a float
    or unquantized tensor."""
    if not tensor.scale or tensor.dtype not in INTEGER_DTYPES:
        return None
    return QuantParams(tensor.scale[0], tensor.zero_point[0], tensor.dtype)
