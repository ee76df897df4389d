"""Published models from MLPerf Tiny and TFLite Micro give the verdicts their README implies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REAL


def _report(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, dict[str, dict[str, Any]]]]:
    result = pytester.runpytest("-p", "no:cacheprovider", "--qcheck-json=r.json", *args)
    report = json.loads((pytester.path / "r.json").read_text())
    checks = {Path(m["model"]).name: {c["name"]: c for c in m["checks"]} | {"_model": m} for m in report["models"]}
    return result, checks


def test_int8_models_pass_and_float_or_hybrid_models_fail(pytester: pytest.Pytester) -> None:
    names = ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/vww_96_float.tflite",
             "mlperf_tiny/model_ToyCar_quant.tflite", "mlperf_tiny/kws_ref_model.tflite",
             "mlperf_tiny/ad01_int8.tflite", "tflm/micro_speech_quantized.tflite"]
    result, checks = _report(pytester, *(f"--qcheck-model={REAL / n}" for n in names))
    assert result.ret == 1

    vww = checks["vww_96_int8.tflite"]
    assert vww["fully_quantized"]["passed"] is True
    assert vww["float32_tensors"]["value"] == 0
    assert vww["vela"]["passed"] is True
    vela = vww["_model"]["vela"]["ethos-u55-128"]
    assert vela["cpu_ops"] == 0
    assert abs(vela["sram_bytes"] - 72.73 * 1024) < 300  # the README's numbers for ethos-u55-128
    assert abs(vela["flash_bytes"] - 74.22 * 1024) < 300
    info = vww["_model"]["quantization_info"]
    assert (info["int8_tensors"], info["int32_tensors"], info["float32_tensors"]) == (60, 29, 0)
    assert info["input"][0]["shape_signature"][0] == -1  # reported as it is, not rewritten

    # Without the float model, the checks that need it say so instead of guessing.
    assert vww["accuracy_drop"]["passed"] is None
    assert "--qcheck-data" in vww["accuracy_drop"]["message"]

    float_model = checks["vww_96_float.tflite"]
    assert float_model["fully_quantized"]["passed"] is False
    assert float_model["float32_tensors"]["value"] == 88
    assert float_model["vela"]["value"] == 31  # every operator on the CPU, although Vela exits 0

    toycar = checks["model_ToyCar_quant.tflite"]  # dynamic-range: int8 weights, float activations
    assert toycar["fully_quantized"]["passed"] is False
    assert toycar["float32_tensors"]["value"] == 21
    assert toycar["vela"]["value"] == 10

    for name in ("kws_ref_model.tflite", "ad01_int8.tflite", "micro_speech_quantized.tflite"):
        assert checks[name]["fully_quantized"]["passed"] is True, name
        assert checks[name]["vela"]["passed"] is True, name


def test_quantized_tflite_with_a_float_reference(pytester: pytest.Pytester) -> None:
    """hello_world (a sine regression) against its float .tflite.

    Its int8 input represents 0..6.2424 (scale 0.02448, zero point -128), just short of 2*pi:
    inputs at 2*pi are clipped when quantized, which the saturation check must see.
    """
    inside = np.linspace(0, 6.0, 392, dtype=np.float32)
    beyond = np.full(8, 2 * np.pi, dtype=np.float32)
    np.savez(pytester.path / "sine.npz", x=np.concatenate([inside, beyond]).reshape(-1, 1))
    result, checks = _report(
        pytester,
        f"--qcheck-model={REAL / 'tflm/hello_world_int8.tflite'}",
        f"--qcheck-reference={REAL / 'tflm/hello_world_float.tflite'}",
        "--qcheck-data=sine.npz",
    )
    model = checks["hello_world_int8.tflite"]
    # One value per sample, no labels: a regression, judged by the error added against the
    # float model (a separately trained one here) as a share of the output's range.
    assert model["accuracy_drop"]["passed"] is True
    assert "(regression; inferred: one value per sample)" in model["accuracy_drop"]["message"]
    assert model["_model"]["saturation"]["input"] == 8 / 400
    assert model["saturation"]["passed"] is False
    assert "input" in model["saturation"]["message"] and "6.242" in model["saturation"]["message"]
    assert result.ret == 1


def test_keras_source_of_a_real_model_converts_to_full_int8_on_the_npu(pytester: pytest.Pytester) -> None:
    """MLPerf Tiny's ResNet-8 (.h5): converts to full int8 with every operator on the Ethos-U55."""
    result, checks = _report(pytester, f"--qcheck-model={REAL / 'mlperf_tiny/pretrainedResnet.h5'}",
                             "-k", "fully_quantized or vela or size")
    model = checks["pretrainedResnet.h5"]
    assert model["fully_quantized"]["passed"] is True, model["fully_quantized"]["message"]
    assert model["vela"]["passed"] is True, model["vela"]["message"]
    notes = " ".join(model["_model"]["notes"])
    assert "synthetic" in notes  # no data given: the report says how it was calibrated
    assert result.ret == 0
