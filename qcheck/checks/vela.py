"""Does it run on the Ethos-U NPU? ``vela``: operators that Vela leaves on the CPU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement

_LISTED = 8


@check("vela", unit="count", options={"accelerator": str}, per_accelerator=True)
def vela(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Operators that Vela places on the CPU instead of the Ethos-U NPU."""
    result = evidence.vela(options["accelerator"])
    cpu = result.cpu_operators
    config = f"{result.config.accelerator}, {result.config.system_config}, {result.config.memory_mode}"
    if not cpu:
        details = f"all {result.npu_ops} operator(s) on the NPU ({config}; vela {result.vela_version})"
    else:
        listed = "; ".join(f"{op.op} '{op.name}': {op.reason}" for op in cpu[:_LISTED])
        more = f"; and {len(cpu) - _LISTED} more" if len(cpu) > _LISTED else ""
        details = (f"{len(cpu)} of {len(cpu) + result.npu_ops} operator(s) on the CPU ({config}; "
                   f"vela {result.vela_version}): {listed}{more}")
    return Measurement(
        float(len(cpu)),
        details,
        "make the model fully int8 (see fully_quantized) and use operators Vela supports "
        "(vela --supported-ops-report lists them with their constraints)",
        sections={"vela": {result.config.accelerator: result.to_dict()}},
    )
