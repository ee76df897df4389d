"""int16 activations for named layers only (``[quantization] int16_layers``), through Google's
ai-edge-quantizer.

TensorFlow's converter quantizes a whole model to int8 or to int16x8; ai-edge-quantizer
quantizes a float ``.tflite`` with a recipe per operator. qcheck gives it the float twin of the
conversion (the same tensor names as the int8 model), int8 activations and weights everywhere
(its ``default_a8w8_recipe``) and 16-bit activations with 8-bit weights on the operators of the
named Keras layers; it inserts the QUANTIZE operators between the two. Checked with
ai-edge-quantizer 0.10 (which pins ai-edge-litert 2.3): LiteRT runs the result and Vela 5.2 maps
it to the NPU. Its input and output are int8 (ai-edge-quantizer's choice), whatever ``io`` says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from qcheck.errors import QcheckError
from qcheck.tflite.recipe import layer_operators


def quantize_int16_layers(float_tflite: bytes, samples: dict[str, np.ndarray], layers: tuple[str, ...], path: Path,
                          *, per_channel_dense: bool = True) -> tuple[bytes, str]:
    """The float model quantized to int8 with ``layers`` in int16x8, and a note saying what was done."""
    try:
        from ai_edge_quantizer import quantizer, qtyping
        from ai_edge_quantizer.calibrator import Calibrator
        from ai_edge_quantizer.utils import qsv_utils
    except ImportError:
        raise QcheckError(path, "int16_layers needs Google's ai-edge-quantizer, which is not installed",
                          'pip install "ai-edge-quantizer>=0.10" (or pytest-qcheck[int16-layers])') from None
    found = layer_operators(float_tflite, layers, path, "int16_layers")
    qt = quantizer.Quantizer(bytearray(float_tflite))
    qt.load_quantization_recipe(str(Path(quantizer.__file__).parent / "recipes" / "default_a8w8_recipe.json"))
    if not per_channel_dense:
        qt.add_static_config(".*", "FULLY_CONNECTED", 8, 8, qtyping.QuantGranularity.TENSORWISE)
    for layer in layers:
        # Its scopes are the operators' output tensor names: <model>/<layer>[_N]/<op>.
        qt.add_static_config(rf"(^|/){re.escape(layer)}(_\d+)?/", "*", 16, 8)
    signature = _signature(float_tflite)
    inputs = _signature_inputs(float_tflite, signature)
    count = len(next(iter(samples.values())))
    by_input = samples if len(samples) > 1 else {inputs[0]: next(iter(samples.values()))}
    data = [{name: np.asarray(by_input[name][i][None], dtype=np.float32) for name in inputs} for i in range(count)]
    try:
        # Ranges are the calibration data's minimum and maximum, as TensorFlow's converter takes them
        # (and the int8 model this one is compared with). ai-edge-quantizer's own default is a moving
        # average of each sample's extremes, which narrows them: hello_world_float's input calibrated
        # to 0..4.06 on samples spanning 0..6.27, clipping a third of its inputs. Its Quantizer.calibrate
        # takes no update function, so its Calibrator is called as Quantizer.calibrate calls it.
        calibrator = Calibrator(bytearray(float_tflite), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        calibrator.calibrate({signature: data}, qt._recipe_manager)
        calibration = calibrator.get_model_qsvs()
        result: Any = qt.quantize(calibration, enable_progress_report=False)
    except Exception as exc:  # its own errors: the user needs the text, named by model
        raise QcheckError(path, f"ai-edge-quantizer failed on int16_layers: {str(exc).strip()[:500]}") from None
    note = ("int16 activations (int8 weights) for " + ", ".join(found)
            + " by ai-edge-quantizer, int8 elsewhere; its input and output are int8")
    return bytes(result.quantized_model), note


def _signature(tflite: bytes) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return str(next(iter(Interpreter(model_content=tflite).get_signature_list())))


def _signature_inputs(tflite: bytes, signature: str) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [str(name) for name in Interpreter(model_content=tflite).get_signature_list()[signature]["inputs"]]
