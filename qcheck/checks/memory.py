"""Does it fit the Ethos-U system? ``sram``, ``flash``, ``npu_weights``, ``inference_time``.

Each is read from Vela's summary for one accelerator (the same compilation as the ``vela``
check when the target options match) and has no budget unless the suite or the command line
sets one: without a budget the value is reported and the check passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.checks.vela import TARGET_OPTIONS, already_compiled, compile_ahead, describe_config, vela_config
from qcheck.results import Measurement
from qcheck.units import format_quantity

if TYPE_CHECKING:
    from qcheck.vela import VelaResult

_SHRINK = "see the size check's breakdown for the layers with the most weights"


def _measure(
    evidence: Evidence,
    options: Mapping[str, Any],
    quantity: str,
    read: Callable[[VelaResult], float | None],
    describe: Callable[[VelaResult, float], str],
    hint: str,
) -> Measurement:
    """Compile with Vela (once per configuration and model) and read one number from it."""
    if already_compiled(evidence):
        return Measurement(None, skip="the model is already compiled for Ethos-U; Vela's memory and time "
                                      "estimates need the model before compilation")
    result = evidence.vela(vela_config(options))  # the report has it among the model's facts
    if result.npu_ops == 0:
        return Measurement(None, skip=f"nothing runs on the NPU: all {result.cpu_ops} operator(s) fall back "
                                      f"to the CPU (see the vela check)")
    value = read(result)
    if value is None:
        return Measurement(None, skip=f"Vela reported no {quantity} ({describe_config(result)})")
    return Measurement(float(value), f"{describe(result, value)} ({describe_config(result)})", hint)


@check("sram", unit="bytes", options=TARGET_OPTIONS, per_accelerator=True, prepare=compile_ahead)
def sram(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """SRAM that Vela allocates for the NPU (feature maps, and weights it buffers)."""
    return _measure(
        evidence, options, "SRAM use", lambda r: r.sram_bytes,
        lambda r, v: f"{format_quantity(v, 'bytes')} of SRAM used by the NPU",
        "smaller feature maps (input resolution, channels of the widest layers); or a memory mode where "
        "DRAM holds the feature maps (memory_mode option)",
    )  # fmt: skip


@check("flash", unit="bytes", options=TARGET_OPTIONS, per_accelerator=True, prepare=compile_ahead)
def flash(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Memory holding the compiled network: off-chip flash or DRAM, as the memory mode has it."""

    def describe(result: VelaResult, value: float) -> str:
        holds = "weights and feature maps" if result.flash_kind == "DRAM" else "weights and the command stream"
        return (f"{format_quantity(value, 'bytes')} of {result.flash_kind} ({holds}; memory mode "
                f"{result.config.memory_mode})")

    return _measure(evidence, options, "flash or DRAM use", lambda r: r.flash_bytes, describe,
                    f"fewer or smaller weights: {_SHRINK}")


@check("npu_weights", unit="bytes", options=TARGET_OPTIONS, per_accelerator=True, prepare=compile_ahead)
def npu_weights(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Weights as Vela encodes them for the NPU, in bytes."""
    return _measure(
        evidence, options, "encoded weights", lambda r: r.npu_weights_bytes,
        lambda r, v: f"{format_quantity(v, 'bytes')} of NPU-encoded weights, stored in {r.flash_kind}",
        f"fewer or smaller weights: {_SHRINK}",
    )  # fmt: skip


@check("inference_time", unit="seconds", options=TARGET_OPTIONS, per_accelerator=True, prepare=compile_ahead)
def inference_time(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Time per inference on the NPU, as Vela estimates it."""

    def describe(result: VelaResult, value: float) -> str:
        cpu = f", not counting {result.cpu_ops} operator(s) on the CPU" if result.cpu_ops else ""
        return f"Vela estimates {format_quantity(value, 'seconds')} per inference on the NPU{cpu}"

    return _measure(evidence, options, "inference time", lambda r: r.inference_time_s, describe,
                    "a larger Ethos-U configuration (more MACs per cycle), a faster system configuration, "
                    "or fewer MACs in the model")
