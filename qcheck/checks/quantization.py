"""Is the model really full integer? ``fully_quantized`` and ``float32_tensors``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.tflite.census import Census, quantization_info

_LISTED = 8  # names shown in a message; the JSON report has them all


def _listing(names: list[str], quote: bool = True) -> str:
    shown = ", ".join(f"'{n}'" if quote else n for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


@check("fully_quantized", unit="count")
def fully_quantized(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Every activation and weight is integer, with no float QUANTIZE/DEQUANTIZE."""
    census = evidence.census()
    info = quantization_info(evidence.info(), census)
    parts = []
    if not census.fully_quantized:
        parts.append(_what_it_is(census))
    if census.float_ops:
        verb = "read or write float tensors" if census.float_state and census.integer_body else "still compute in float"
        parts.append(f"{len(census.float_ops)} operator(s) {verb}: "
                     + _listing([op.describe() for op in census.float_ops], quote=False))
    if census.float_tensors:
        parts.append(f"{len(census.float_tensors)} float tensor(s): "
                     + _listing([t.label for t in census.float_tensors]))
    if census.int32_activations:
        parts.append(f"{len(census.int32_activations)} int32 activation(s): "
                     + _listing([t.label for t in census.int32_activations]))
    if not parts:
        dtypes = ", ".join(f"{n} {d}" for d, n in info["dtypes"].items())
        parts.append(f"all tensors integer ({dtypes})")
    if census.exempt_float_tensors:
        parts.append(f"{len(census.exempt_float_tensors)} zero-size float intermediate(s) not counted")
    hints = []
    if census.float_io and census.integer_body:
        # The body is integer already: only the converter's I/O types are left at float32.
        # An int16x8 conversion takes int16 I/O only (TensorFlow refuses int8 and uint8 there).
        io = "tf.int16" if census.kind == "int16x8" else "tf.int8 (or tf.uint8)"
        hints.append(f"convert with converter.inference_input_type = {io} and "
                     f"converter.inference_output_type = {io}, so that the model takes and "
                     "returns integers and the entry QUANTIZE and exit DEQUANTIZE go")
    if census.float_state and census.integer_body:
        hints.append(_STATE_HINT if evidence.kind == "tflite" else _STATE_HINT_OWN_CONVERSION)
    hint = "; ".join(hints)
    if not hint and evidence.kind == "tflite":
        hint = ("re-convert with optimizations=[Optimize.DEFAULT], a representative_dataset and "
                "supported_ops=[TFLITE_BUILTINS_INT8]; a float-only op needs replacing in the model")
    elif not hint and census.float_ops:
        hint = ("the listed ops have no int8 kernel in TFLite: replace them in the Keras model "
                "(e.g. a different activation) or move them out of the deployed graph")
    return Measurement(float(census.problems), "; ".join(parts), hint)


def _what_it_is(census: Census) -> str:
    """The model's kind in words, with what converts it to full integer."""
    text = census.description
    if census.kind == "dynamic-range":
        return text + "; convert with a representative dataset and TFLITE_BUILTINS_INT8"
    if census.kind == "float16":
        return text + "; convert with a representative dataset and TFLITE_BUILTINS_INT8 instead of float16"
    if census.float_io and census.integer_body:
        text += " (a QUANTIZE at the entry, a DEQUANTIZE at the exit)"
    if census.float_state and census.integer_body:
        text += ("; the layers compute in integer, but every invoke reads the variable's state in float "
                 "(READ_VARIABLE), QUANTIZEs it for them and DEQUANTIZEs the new state to write it back "
                 "(ASSIGN_VARIABLE): float operators that run on the CPU (Vela leaves them there), and float "
                 "kernels TFLite Micro must have")
    return text


# What keeps a resource variable's state float, and what makes it integer (TensorFlow 2.21's converter).
_STATE_OUTSIDE = ("keep the state outside the model (an input and an output that the application carries from "
                  "one invoke to the next)")
_STATE_HINT = ("the TFLite converter quantizes no resource variable unless asked: convert with "
               "converter._experimental_variable_quantization = True (an experimental option of TensorFlow's "
               "converter) for an int8 state without the QUANTIZE and DEQUANTIZE around it, or " + _STATE_OUTSIDE)
# qcheck's own conversion sets that option wherever the converter has it, so a float state left there is
# one the user cannot change by asking qcheck: a TensorFlow without the option (the notes say so).
_STATE_HINT_OWN_CONVERSION = (
    "qcheck's own conversion asks TensorFlow's converter for an int8 state "
    "(converter._experimental_variable_quantization = True, an experimental option) where the converter has "
    "that option, and the state stayed float all the same (the notes say so where this TensorFlow's converter "
    "lacks the option): " + _STATE_OUTSIDE + ", or convert with a "
    "TensorFlow whose converter quantizes it and give qcheck the .tflite, with --qcheck-reference=FLOAT_MODEL")


@check("float32_tensors", unit="count")
def float32_tensors(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Number of float32 tensors left in the model."""
    census = evidence.census()
    names = [t.label for t in census.float_tensors if t.dtype == "float32"]
    details = f"{len(names)} float32 tensor(s)" + (f": {_listing(names)}" if names else "")
    if census.exempt_float_tensors:
        details += f" (plus {len(census.exempt_float_tensors)} zero-size intermediate(s), which are exempt)"
    held = [name for state in census.float_state for name in state.tensors if name in names]
    if held:
        details += (f"; {len(held)} of them hold the state of resource variable(s) "
                    + ", ".join(f"'{state.variable}'" for state in census.float_state)
                    + " (the value read, the new value written, the initial value), which the model keeps in float")
    return Measurement(float(len(names)), details,
                       "see fully_quantized for the ops that keep them float")
