"""Does the model take the integers the application feeds it? ``input_contract``.

An application that feeds raw pixels ("uint8 values 0-255, the model expects these directly")
computes the model's integer input with a fixed mapping, e.g. ``pixel / 255``: scale 1/255 and
zero point 0 for a uint8 input, -128 for an int8 one. The converter does not know that mapping:
it takes the input's scale and zero point from the range the calibration data reaches, so data
whose brightest pixel is 0.98 gives scale 0.98/255, and raw pixels are then read 2% too dark.

The contract is stated per model input. qcheck handles single-input models today, so ``scale``
and ``zero_point`` apply to that input; a per-input table (``[checks.input_contract.inputs.NAME]``)
can be added beside them without changing their meaning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.errors import QcheckError, StepFailed
from qcheck.lazy_arrays import LazyArray
from qcheck.results import Measurement
from qcheck.tflite.quant import QuantParams

if TYPE_CHECKING:
    from qcheck.tflite.run import RunResult

# Relative difference of the scales below which the model reads raw values as the application
# means them: 0.1% of 255 steps is a quarter of a step at the far end of the range, so no raw
# value is read more than a rounding away from its intended value.
SCALE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Contract:
    """The application's mapping from float input to integer: ``q = round(x / scale) + zero_point``."""

    scale: float
    zero_point: int
    source: str  # where it came from, for the message

    def describe(self, dtype: str) -> str:
        return f"scale {_scale_text(self.scale)}, zero point {self.zero_point} ({_range_text(self.scale, self.zero_point, dtype)})"


def _scale_text(scale: float) -> str:
    inverse = 1 / scale
    if scale < 1 and abs(inverse - round(inverse)) < 1e-6 * inverse:
        return f"1/{round(inverse)} ({scale:.6g})"
    return f"{scale:.6g}"


def _range_text(scale: float, zero_point: int, dtype: str) -> str:
    low, high = QuantParams(scale, zero_point, dtype).float_range
    info = np.iinfo(dtype)
    return f"raw {info.min}..{info.max} means {low:.6g}..{high:.6g}"


def parse_scale(value: Any) -> float:
    """A positive scale from ``"1/255"``, ``"0.0039"``, ``0.0039`` or ``1``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"scale must be a number or a fraction like \"1/255\", not {value!r}")
    from fractions import Fraction  # only when a suite sets a scale: not on every run's path

    try:
        scale = float(Fraction(value.strip()) if isinstance(value, str) else value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"scale {value!r} is not a number or a fraction like \"1/255\"") from None
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale {value!r} must be a positive number")
    return scale


def stated_contract(evidence: Evidence, options: Mapping[str, Any], dtype: str) -> Contract | None:
    """The contract from the suite's options, else from the image-folder options, else None."""
    data = evidence.evaluation_data() if "scale" not in options else None
    images = data.x.images if data is not None and isinstance(data.x, LazyArray) and data.x.kind == "images" else None
    if "scale" not in options and images is None:
        if "zero_point" in options:
            raise QcheckError(None, "[checks.input_contract] sets zero_point without scale",
                              "state both, e.g. scale = \"1/255\" and zero_point = 0")
        return None
    info = np.iinfo(dtype)
    if images is not None:
        # pixel * scale + offset = x, and the application feeds the pixel (shifted by 128 into
        # an int8 input): q = x / scale - offset / scale + qmin.
        scale, source = images.scale, "the image-folder options (pixel * scale + offset)"
        default_zero_point = round(-images.offset / images.scale) + int(info.min)
    else:
        try:
            scale = parse_scale(options["scale"])
        except ValueError as exc:
            raise QcheckError(None, f"[checks.input_contract] {exc}") from None
        source, default_zero_point = "the suite", int(info.min)
    zero_point = options.get("zero_point", default_zero_point)
    if isinstance(zero_point, bool) or not isinstance(zero_point, int) or not info.min <= zero_point <= info.max:
        raise QcheckError(None, f"[checks.input_contract] zero_point {zero_point!r} is not a {dtype} value "
                          f"({info.min}..{info.max}) for the model's {dtype} input")
    return Contract(scale, int(zero_point), source)


def _cost(evidence: Evidence, own: RunResult, fed: RunResult) -> tuple[str, dict[str, Any]]:
    """What feeding the application's integers changes, per output head."""
    try:
        reference = evidence.reference()
    except (QcheckError, StepFailed):
        reference = None  # agreement with the float model is not measured; the change is
    parts, section = [], {}
    for head, out in own.outputs.items():
        q_own = out.raw.reshape(len(out.raw), -1).astype(np.int64)
        q_fed = fed.outputs[head].raw.reshape(len(q_own), -1).astype(np.int64)
        steps = np.abs(q_fed - q_own)
        entry: dict[str, Any] = {"mean_steps": float(steps.mean()) if steps.size else 0.0,
                                 "max_steps": int(steps.max()) if steps.size else 0}
        if q_own.shape[1] >= 2:
            changed = float(np.mean(q_fed.argmax(axis=1) != q_own.argmax(axis=1)))
            entry["top1_changed"] = changed
            text = f"'{head}': top-1 changes on {changed:.1%} of {len(q_own)} samples"
            if reference is not None and head in reference.outputs:
                f_top = reference.outputs[head].reshape(len(q_own), -1).argmax(axis=1)
                agree_own = float(np.mean(q_own.argmax(axis=1) == f_top))
                agree_fed = float(np.mean(q_fed.argmax(axis=1) == f_top))
                entry.update(agreement_own=agree_own, agreement_application=agree_fed)
                text += (f", top-1 agreement with the float model {agree_own:.1%} (model's own input "
                         f"quantization) -> {agree_fed:.1%} (application's)")
        else:
            text = f"'{head}': output off by {entry['mean_steps']:.3g} quantization steps on average"
        parts.append(text + f" (mean {entry['mean_steps']:.3g}, max {entry['max_steps']} output steps)")
        section[head] = entry
    return "; ".join(parts), section


@check("input_contract", unit="count", options={"scale": object, "zero_point": int}, sections=("input_contract",))
def input_contract(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """The model's input scale and zero point are the mapping the application feeds it with.

    Counts the parameters that differ (scale beyond 0.1% relative, zero point at all); with
    data, measures what feeding integers the application's way costs against the model's own.
    """
    info = evidence.info()
    if len(info.inputs) != 1:
        return Measurement(None, skip=f"the model has {len(info.inputs)} inputs; qcheck handles one input for now")
    tensor = info.inputs[0].tensor
    if np.dtype(tensor.dtype).kind not in "iu" or not tensor.scale:
        return Measurement(None, skip=f"the model's input is {tensor.dtype}, not quantized: there is no integer "
                                      "mapping to agree on")
    model = QuantParams(float(tensor.scale[0]), int(tensor.zero_point[0]), tensor.dtype)
    mapping = f"scale {_scale_text(model.scale)}, zero point {model.zero_point} ({_range_text(model.scale, model.zero_point, model.dtype)})"
    contract = stated_contract(evidence, options, model.dtype)
    if contract is None:
        return Measurement(0.0, f"the model's {model.dtype} input has {mapping}; no contract stated "
                                "(set [checks.input_contract] scale and zero_point to check it)",
                           sections={"input_contract": {"model": {"scale": model.scale, "zero_point": model.zero_point}}})
    differ = []
    relative = abs(model.scale / contract.scale - 1)
    if relative > SCALE_TOLERANCE:
        differ.append(f"scale off by {relative:.2%}")
    if model.zero_point != contract.zero_point:
        differ.append(f"zero point off by {model.zero_point - contract.zero_point}")
    section: dict[str, Any] = {
        "model": {"scale": model.scale, "zero_point": model.zero_point},
        "contract": {"scale": contract.scale, "zero_point": contract.zero_point, "source": contract.source},
    }
    both = f"model: {mapping}; contract from {contract.source}: {contract.describe(model.dtype)}"
    if not differ:
        return Measurement(0.0, f"the model's input takes the application's integers as they are ({both})",
                           sections={"input_contract": section})
    details = f"{', '.join(differ)}: {both}"
    own = evidence.evaluation()
    fed = evidence.application_evaluation(contract.scale, contract.zero_point) if own is not None else None
    if own is not None and fed is not None:
        cost, section["cost"] = _cost(evidence, own, fed)
        details += f". Fed the application's integers: {cost}"
    else:
        details += ". The cost was not measured: it needs evaluation data (--qcheck-data)"
    low, high = QuantParams(contract.scale, contract.zero_point, model.dtype).float_range
    hint = (f"convert with calibration data that reaches both ends of the contract's range, {low:.6g} and "
            f"{high:.6g} (e.g. add one sample holding both values): the converter takes the input's scale and "
            "zero point from the range the representative dataset reaches, and TF 2.21's tf.lite.TFLiteConverter "
            "has no option to set it (quantized_input_stats exists only on the tf.compat.v1 converters, for "
            "quantization-aware graphs); or have the application quantize with the model's own input parameters")
    return Measurement(float(len(differ)), details, hint, sections={"input_contract": section})
