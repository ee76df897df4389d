"""Does it run on the Ethos-U NPU? ``vela``: operators that Vela leaves on the CPU.

Every Ethos-U check (this one and the budgets in :mod:`qcheck.checks.memory`) takes the same
target options: ``accelerator``, and optionally ``system_config``, ``memory_mode`` and
``config_file`` to replace the defaults from Vela's own ``Arm/vela.ini``
(see :meth:`qcheck.vela.VelaConfig.default_for`). A user's ``config_file`` path is relative to
the directory pytest runs in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from qcheck.checks import OptionKind, check
from qcheck.checks.evidence import Evidence
from qcheck.config import DEFAULT_ACCELERATOR
from qcheck.errors import QcheckError, StepFailed
from qcheck.results import Measurement
from qcheck.units import one_of
from qcheck.vela import ACCELERATORS

if TYPE_CHECKING:
    from qcheck.vela import VelaConfig, VelaOperator, VelaResult

TARGET_OPTIONS: Final[dict[str, OptionKind]] = {
    "accelerator": one_of(*ACCELERATORS),
    "system_config": str,
    "memory_mode": str,
    "config_file": str,
}
_LISTED = 5  # operators named in a message; the JSON report has every one with its full reason
_REASON_CHARS = 160


def _clip(reason: str) -> str:
    return reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 3] + "..."


def _removed(removed: tuple[VelaOperator, ...]) -> str:
    """", 1 removed by Vela (RESHAPE 'flatten')": operators folded away run nowhere."""
    if not removed:
        return ""
    listed = ", ".join(op.label for op in removed[:_LISTED])
    more = f" and {len(removed) - _LISTED} more" if len(removed) > _LISTED else ""
    return f", {len(removed)} removed by Vela ({listed}{more})"


def vela_config(options: Mapping[str, Any]) -> VelaConfig:
    """The Vela configuration a target check's options ask for."""
    from qcheck.vela import BUILTIN_CONFIG_FILE, VelaConfig

    try:
        return VelaConfig.default_for(
            str(options.get("accelerator", DEFAULT_ACCELERATOR)),
            system_config=options.get("system_config"),
            memory_mode=options.get("memory_mode"),
            config_file=options.get("config_file") or BUILTIN_CONFIG_FILE,
        )
    except ValueError as exc:
        raise QcheckError(None, str(exc)) from None


def already_compiled(evidence: Evidence) -> bool:
    """True when the model under test is Vela's output (it holds "ethos-u" operators)."""
    from qcheck.vela import NPU_CUSTOM_CODE, is_vela_compiled

    try:
        operators = evidence.info().operators  # read once per model, shared with the other checks
    except (QcheckError, StepFailed, OSError):
        # Whatever stops the model's info is reported by the check that needs it; here, as before,
        # a model that cannot be read is not Vela's output.
        return is_vela_compiled(evidence.tflite())
    return any(op.custom and op.op == NPU_CUSTOM_CODE for op in operators)


def describe_config(result: VelaResult) -> str:
    return f"{result.config.described}; vela {result.vela_version}"


def compile_ahead(evidence: Evidence, options: Mapping[str, Any]) -> None:
    """The compilation a target check will read, made ahead (it is shared and remembered)."""
    if not already_compiled(evidence):
        evidence.vela(vela_config(options))


# Vela's compilations are the model's facts (qcheck.facts.ModelFacts.vela); the check adds the
# placement it reads from a model Vela compiled already, which nothing compiles.
@check("vela", unit="count", options=TARGET_OPTIONS, per_accelerator=True, prepare=compile_ahead, sections=("vela",))
def vela(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Operators that Vela places on the CPU instead of the Ethos-U NPU."""
    if already_compiled(evidence):
        return _compiled_placement(evidence, options)
    result = evidence.vela(vela_config(options))
    cpu, removed = result.cpu_operators, result.removed_operators
    folded = _removed(removed)
    if not cpu:
        details = f"all {result.npu_ops} running operator(s) on the NPU{folded} ({describe_config(result)})"
    else:
        listed = "; ".join(f"{op.label}: {_clip(op.reason)}" for op in cpu[:_LISTED])
        more = f"; and {len(cpu) - _LISTED} more" if len(cpu) > _LISTED else ""
        details = (f"{len(cpu)} of {len(result.operators)} operator(s) on the CPU, {result.npu_ops} on the NPU"
                   f"{folded} ({describe_config(result)}): {listed}{more}")
    hint = ("make the model fully int8 (see fully_quantized) and use operators Vela supports "
            "(vela --supported-ops-report lists them with their constraints)")
    state = sorted({op.op for op in cpu if op.op in _STATE_OPS})
    if state:
        hint = (f"{', '.join(state)} hold the model's resource variables, which no Ethos-U runs (Vela has no NPU "
                "version of them): they stay on the CPU, on TFLite Micro's kernels (see tflm_cpu_ops), even with "
                "an int8 state; only a model that takes its state as an input and returns it as an output keeps "
                f"them off the CPU; otherwise, {hint}")
    return Measurement(float(len(cpu)), details, hint)


# The operators of resource variables (a model's state between invokes): Vela 5.2 supports none.
_STATE_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"})


def _compiled_placement(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Placement read from a model Vela already compiled: compiling it again would put its
    NPU operators on the CPU."""
    from qcheck.vela import NPU_CUSTOM_CODE

    operators = evidence.info().operators
    npu = [op for op in operators if op.custom and op.op == NPU_CUSTOM_CODE]
    cpu = [op for op in operators if not (op.custom and op.op == NPU_CUSTOM_CODE)]
    details = (f"already compiled for Ethos-U: {len(npu)} NPU custom op(s), {len(cpu)} CPU op(s)"
               + (": " + ", ".join(sorted({op.op for op in cpu})) if cpu else "")
               + "; not compiled again, and the accelerator it was compiled for is not checked")
    accelerator = str(options.get("accelerator", DEFAULT_ACCELERATOR))
    return Measurement(
        float(len(cpu)),
        details,
        "compile the model before Vela (the .tflite you gave Vela) to see why operators stay on the CPU",
        sections={"vela": {accelerator: {"accelerator": accelerator, "already_compiled": True,
                                         "npu_ops": len(npu), "cpu_ops": len(cpu)}}},
    )
