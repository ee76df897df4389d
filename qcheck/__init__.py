"""qcheck: quantize Keras models to full-integer TFLite and gate CI on the result.

The pytest plugin lives in :mod:`qcheck.plugin`. The Python API (:func:`quantize`, one
``assert_<check>`` per check, :mod:`qcheck.strategies`) is loaded on first use, so that
``import qcheck`` stays light; everything heavy (TensorFlow, LiteRT, Vela, pandas) is imported
only where it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from qcheck import strategies
    from qcheck.api import (
        as_dataset,
        assert_accuracy_drop,
        assert_arena,
        assert_check,
        assert_consistency,
        assert_flash,
        assert_float32_tensors,
        assert_fully_quantized,
        assert_inference_time,
        assert_input_contract,
        assert_layer_error,
        assert_npu_weights,
        assert_robustness,
        assert_saturation,
        assert_size,
        assert_sram,
        assert_static_shapes,
        assert_tflm_ops,
        assert_vela,
        quantize,
        run_check,
    )

_SUBMODULES = {"strategies"}
_API = {"quantize", "run_check", "assert_check", "as_dataset"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"qcheck.{name}")
    if name in _API or name.startswith("assert_"):
        api = importlib.import_module("qcheck.api")
        return getattr(api, name)
    raise AttributeError(f"module 'qcheck' has no attribute {name!r}")


def __dir__() -> list[str]:
    from qcheck.checks import registry

    return sorted({*globals(), *_SUBMODULES, *_API, *(f"assert_{name}" for name in registry())})
