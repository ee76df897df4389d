"""Fourth review round: the CPU part of an Ethos-U system (``tflm_cpu_ops``, ``tflm_cpu_parity``).

Each test reproduces a bug found in review with real parts (real Vela, real TFLite Micro, real
LiteRT, the fixtures' models) and fails on the code before its fix.
"""

from __future__ import annotations

from pathlib import Path

from helpers import FIXTURES, run_qcheck

U55 = "ethos-u55-128"


def test_cpu_parity_of_an_operator_litert_has_no_reference_kernel_for(tmp_path: Path) -> None:
    """float_op's ELU stays on the CPU (float, beside the NPU) and TFLite Micro runs it; LiteRT's
    reference kernels have no ELU, and the check failed to measure ("Didn't find op for builtin
    opcode 'ELU'"), an error for a model the device runs. LiteRT's built-in kernels stand in, said."""
    model = FIXTURES / "float_op.keras"
    run = run_qcheck(tmp_path, "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_parity", f"--qcheck-model={model}",
                     f"--qcheck-data={FIXTURES / 'digits.npz'}")
    check = run.check(model.name, "tflm_cpu_parity")
    assert (check["passed"], check["variant"]) == (True, U55), check["message"]
    assert "ELU 'functional_1/float_op_1/conv1_elu_1/Elu'" in check["message"]
    assert "LiteRT's reference kernels have no ELU" in check["message"]
    section = run.model(model.name)["tflm_cpu_parity"][U55]
    assert section["samples"] == 100 and section["outputs"] and "no ELU" in section["note"]
