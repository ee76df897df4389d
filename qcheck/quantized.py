"""The quantized model as users' own tests see it (the ``qcheck_quantized`` fixture)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.tflite.inspect import ModelInfo
from qcheck.tflite.quant import QuantParams, tensor_params

if TYPE_CHECKING:
    import pandas as pd

    from qcheck.checks.evidence import Evidence
    from qcheck.suites import Suite


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """A quantized ``.tflite``: its bytes and path, tensors, I/O parameters, and a way to run it."""

    path: Path
    tflite: bytes
    info: ModelInfo
    # What qcheck's assertion helpers measure from and judge with: the model's pipeline (shared
    # with the suite's items) and the thresholds of the test or of qcheck.quantize().
    _evidence: Evidence | None = field(default=None, repr=False)
    _suite: Suite | None = field(default=None, repr=False)

    @property
    def size_bytes(self) -> int:
        return len(self.tflite)

    @cached_property
    def tensors(self) -> pd.DataFrame:
        """One row per tensor (name, dtype, shape, scale, zero point, producing op)."""
        return self.info.tensor_table()

    @property
    def input_params(self) -> dict[str, QuantParams | None]:
        return {io.name: tensor_params(io.tensor) for io in self.info.inputs}

    @property
    def output_params(self) -> dict[str, QuantParams | None]:
        return {io.name: tensor_params(io.tensor) for io in self.info.outputs}

    @cached_property
    def quantization_info(self) -> dict[str, Any]:
        from qcheck.tflite.census import quantization_info

        return quantization_info(self.info)

    def __call__(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on float inputs (as the float model takes them; for a model with several inputs, a
        dict of arrays keyed by input name); dequantized outputs by name."""
        from qcheck.named_inputs import NamedInputs
        from qcheck.tflite.run import run

        samples = (NamedInputs({str(k): np.asarray(v, dtype=np.float32) for k, v in x.items()})
                   if isinstance(x, Mapping) else np.asarray(x, dtype=np.float32))
        return {name: head.values for name, head in run(self.tflite, samples).outputs.items()}

    def probabilities(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Softmax of the dequantized outputs, unless the graph already ends in a softmax."""
        outputs = self(x)
        ends_in_softmax = {io.name: self.info.source_op(io.tensor) == "SOFTMAX" for io in self.info.outputs}
        return {name: v if ends_in_softmax.get(name) else _softmax(v) for name, v in outputs.items()}


def _softmax(v: np.ndarray) -> np.ndarray:
    z = v - v.max(axis=-1, keepdims=True)
    e = np.exp(z)
    probabilities: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return probabilities
