"""Does it run on a microcontroller without an NPU? ``tflm_ops`` and ``arena``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement
from qcheck.units import format_quantity

_LISTED = 8
# TFLite Micro's own words when it meets a dynamic-range model (micro_allocator / kernel checks).
HYBRID_REFUSED = "Hybrid models are not supported on TFLite Micro"


@check("tflm_ops", unit="count", sections=("tflm",))
def tflm_ops(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Operators with no TensorFlow Lite Micro kernel, and custom operators."""
    from qcheck.tflm_kernels import BUILTIN_KERNELS, CUSTOM_KERNELS, SOURCE

    operators = evidence.info().operators
    counts: dict[str, int] = {}  # "CUMPROD", "custom op 'ethos-u'" -> operators of that kind
    reasons: dict[str, str] = {}
    hybrid = evidence.census().hybrid_ops
    if hybrid:
        # Every kernel exists, but TFLite Micro refuses float activations with int8 weights.
        key = "hybrid (dynamic-range) operators"
        counts[key] = len(hybrid)
        reasons[key] = (f"{HYBRID_REFUSED}: int8 weights with float activations, e.g. "
                        + ", ".join(op.describe() for op in hybrid[:3]))
    for op in operators:
        if not op.custom and op.op in BUILTIN_KERNELS:
            continue
        key = f"custom op '{op.op}'" if op.custom else op.op
        reasons[key] = _custom_reason(op.op, CUSTOM_KERNELS.get(op.op)) if op.custom else "no TFLite Micro kernel"
        counts[key] = counts.get(key, 0) + 1
    resolver = sorted({BUILTIN_KERNELS[op.op] for op in operators if not op.custom and op.op in BUILTIN_KERNELS})
    unsupported = [{"op": key, "count": n, "reason": reasons[key]} for key, n in counts.items()]
    section = {"tflm": {"kernels_source": SOURCE, "resolver": resolver, "unsupported": unsupported}}
    if not counts:
        needs = ", ".join(f"{method}()" for method in resolver) or "nothing"
        details = (f"all {len(operators)} operator(s) have a TFLite Micro kernel; "
                   f"MicroMutableOpResolver<{len(resolver)}> needs {needs}")
        return Measurement(0.0, details, sections=section)
    total = sum(counts.values())
    listed = "; ".join(f"{key} x{n}: {reasons[key]}" for key, n in list(counts.items())[:_LISTED])
    more = f"; and {len(counts) - _LISTED} more" if len(counts) > _LISTED else ""
    hint = ("replace the operators in the model with ones TFLite Micro has kernels for; check the model before "
            "Vela compiles it, not Vela's output")
    if hybrid:
        hint = ("convert to full integer (a representative dataset and TFLITE_BUILTINS_INT8): TFLite Micro runs "
                "int8 models, not dynamic-range ones; " + hint)
    return Measurement(
        float(total),
        f"{total} of {len(operators)} operator(s) cannot run on TFLite Micro as they are: {listed}{more} "
        f"(kernels: {SOURCE})",
        hint,
        sections=section,
    )


def _custom_reason(code: str, method: str | None) -> str:
    from qcheck.vela import NPU_CUSTOM_CODE

    if code == NPU_CUSTOM_CODE:
        return "needs the Ethos-U NPU (this model was compiled by Vela)"
    if method:
        return f"custom op: TFLite Micro has a kernel, registered by hand with {method}()"
    return "custom op with no TFLite Micro kernel"


@check("arena", unit="bytes", sections=("arena",))
def arena(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Activation memory: the largest set of tensors alive at once (lower bound of the TFLM arena)."""
    from qcheck.tflite.arena import estimate_arena

    if evidence.census().hybrid_ops:
        return Measurement(None, skip=f"{HYBRID_REFUSED} (a dynamic-range model: int8 weights, float "
                                      "activations), so no arena would run it; see tflm_ops")
    estimate = estimate_arena(evidence.info())
    live = ", ".join(f"'{t.name}' {format_quantity(t.bytes, 'bytes')}" for t in estimate.live[:_LISTED])
    more = f" and {len(estimate.live) - _LISTED} more" if len(estimate.live) > _LISTED else ""
    where = (f"at operator {estimate.peak_operator} ({estimate.peak_op})" if estimate.peak_operator >= 0
             else "(the graph has no operators)")
    others = (f"; subgraphs 1..{estimate.subgraphs - 1} (control flow) not counted"
              if estimate.subgraphs > 1 else "")
    details = (f"{format_quantity(estimate.peak_bytes, 'bytes')} of activations alive {where}: {live}{more}; "
               f"TFLite Micro's arena needs this plus kernel scratch and persistent data{others}")
    return Measurement(
        float(estimate.peak_bytes),
        details,
        "shrink the tensors alive at the peak (input resolution, channels of the layers around it)",
        sections={"arena": estimate.to_dict()},
    )
