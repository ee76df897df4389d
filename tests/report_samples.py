"""Results of three made-up models, for report tests that need every section without converting.

One passes; one fails on accuracy, with a layer whose error is far above rounding; one fails on
Vela placement and its SRAM budget, and is named like an attack (``<script>...``), as are its
layers and tensors: everything a report prints must come out escaped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qcheck.facts import ReportFacts
from qcheck.results import CheckResult
from qcheck.suites import Suite

GOOD = "models/good_cnn.keras"
LOSSY = "models/lossy_net.keras"
EVIL = "models/<script>alert('model').keras"
EVIL_LAYER = "conv<img src=x onerror=alert(1)>"
EVIL_REASON = "Op has <b>unsupported</b> \"float\" tensors & <script>alert('reason')</script>"
SUITE = Suite("ethos-u55", "built-in", "test suite", {})

U55 = "ethos-u55-128"
U85 = "ethos-u85-256"
_SYSTEMS = {U55: ("Ethos_U55_High_End_Embedded", "Shared_Sram"), U85: ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram")}


def _layer(name: str, op: str, steps: float, saturation: float = 0.0, levels_used: int = 200,
           crushed: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name, "op": op, "dtype": "int8", "scale": 0.05, "zero_point": -128,
        "saturation": saturation, "levels_used": levels_used, "levels": 256, "rmse_steps": steps,
        "sqnr_db": 40.0 - 20 * math.log10(max(steps, 0.01) / 0.29), "suspicious": steps > 0.7,
        "calibration_saturation": saturation / 2,
    }
    if crushed:
        row["channels"] = {"count": 16, "widest": 3, "widest_range": 900.0, "median_range": 0.9,
                           "under_one_step": 15, "crushed": True}
    return row


def _model_sections(model: str, out: Path, layers: list[dict[str, Any]], drop: float, ci: tuple[float, float],
                    float_ops: int = 0) -> dict[str, Any]:
    stem = Path(model).stem
    sections: dict[str, Any] = {
        "quantization_info": {
            "fully_quantized": float_ops == 0, "dtypes": {"uint8": 2, "int8": 24, "int32": 6, "float32": float_ops},
            "uint8_tensors": 2, "int8_tensors": 24, "int16_tensors": 0, "int32_tensors": 6,
            "float32_tensors": float_ops, "total_tensors": 32 + float_ops,
            "operators": {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 1, "SOFTMAX": 1, "QUANTIZE": 2,
                          **({"ELU": 1, "DEQUANTIZE": 1} if float_ops else {})},
            "float_operators": [f"ELU -> '{EVIL_LAYER}'"] if float_ops else [],
            "size_bytes": 91234,
            "input": [{"name": "image", "tensor": "serving_default_image:0", "dtype": "uint8", "shape": [1, 32, 32, 3],
                       "shape_signature": [1, 32, 32, 3], "scale": 0.00392, "zero_point": 0}],
            "output": [{"name": "digit", "tensor": "Identity", "dtype": "uint8", "shape": [1, 10],
                        "shape_signature": [1, 10], "scale": 0.00390625, "zero_point": 0}],
        },
        "accuracy": {"digit": {"float": 0.91, "quantized": 0.91 - drop, "drop": drop, "agreement": 0.95,
                               "samples": 500, "labelled": True, "ci_low": ci[0], "ci_high": ci[1]},
                     "zz_aux": {"float": None, "quantized": None, "drop": drop / 2, "agreement": 1 - drop / 2,
                                "samples": 500, "labelled": False, "ci_low": 0.0, "ci_high": drop}},
        "saturation": {"input": 0.0, "output 'digit'": 0.002},
        "layers": layers,
        "tensors": [*layers, {"name": "Identity", "op": "SOFTMAX", "dtype": "int8", "scale": 1 / 256,
                              "zero_point": -128, "saturation": 0.4, "levels_used": 90, "levels": 256,
                              "rmse_steps": None, "sqnr_db": None, "suspicious": False}],
        "size_breakdown": [
            {"name": f"{stem}/conv{i}", "op": "CONV_2D", "weights_bytes": 9000 * i, "bias_bytes": 64 * i,
             "other_bytes": 0, "total_bytes": 9064 * i} for i in range(1, 20)
        ],
        "notes": ["calibration: 200 samples split from data.npz (seed 0); 500 kept apart for evaluation"],
        "artifacts": {"stem": stem, "quantized_model": str(out / f"{stem}_quant.tflite"),
                      "quantization_info": str(out / f"{stem}_quantization_info.json"),
                      "vela": str(out / f"{stem}_vela")},
    }
    return sections


def _vela(cpu: list[tuple[str, str, str]], npu: int, sram: int) -> dict[str, Any]:
    return {
        acc: {"accelerator": acc, "system_config": _SYSTEMS[acc][0], "memory_mode": _SYSTEMS[acc][1],
              "vela_version": "5.2.0", "cpu_ops": len(cpu), "npu_ops": npu,
              "cpu_operators": [{"op": op, "name": name, "reason": reason} for op, name, reason in cpu],
              "sram_bytes": sram, "flash_bytes": 60000, "flash_kind": "off-chip flash",
              "npu_weights_bytes": 52000, "inference_time_s": 0.0021}
        for acc in (U55, U85)
    }


def _result(model: str, check: str, passed: bool | None, value: float | None, threshold: float | None,
            unit: str, sections: dict[str, Any], variant: str = "", message: str = "") -> CheckResult:
    verdict = {True: "passed", False: "failed", None: "not run"}[passed]
    text = message or f"{check} {verdict}: measured {value}"
    return CheckResult(model, check, passed, value, threshold, unit, text, variant, sections)


def _sample_sections(model: str, out: Path) -> tuple[dict[str, Any], float, bool, bool]:
    """All sections of one of the three sample models, the value of its vela check, and whether
    its sram and accuracy_drop checks pass."""
    if model == GOOD:
        layers = [_layer(f"good/conv{i}", "CONV_2D", 0.2 + 0.03 * i) for i in range(6)]
        sections = _model_sections(model, out, layers, 0.004, (-0.006, 0.014))
        sections["vela"] = _vela([], 12, 120_000)
        sram_passed, vela_value, drop_passed = True, 0.0, True
    elif model == LOSSY:
        layers = [_layer("lossy/conv0", "CONV_2D", 0.16, crushed=True),
                  _layer("lossy/conv1", "CONV_2D", 2.7, saturation=0.12, levels_used=9),
                  *(_layer(f"lossy/block{i}/depthwise", "DEPTHWISE_CONV_2D", 0.9 + 0.1 * i, saturation=0.01)
                    for i in range(3)),
                  _layer("lossy/logits", "FULLY_CONNECTED", 41.0, saturation=0.3)]
        sections = _model_sections(model, out, layers, 0.076, (0.05, 0.102))
        sections["vela"] = _vela([], 12, 120_000)
        sram_passed, vela_value, drop_passed = True, 0.0, False
    else:
        layers = [_layer(f"{EVIL_LAYER}/{i}", "CONV_2D", 0.3) for i in range(3)]
        sections = _model_sections(model, out, layers, 0.01, (0.0, 0.03), float_ops=2)
        sections["vela"] = _vela([("Elu", EVIL_LAYER, EVIL_REASON), ("Dequantize", "tfl.dequantize", "Unsupported opType")],
                                 10, 700_000)
        sram_passed, vela_value, drop_passed = False, 2.0, True
    return sections, vela_value, sram_passed, drop_passed


# The sections the sample models' checks make themselves; the others are their models' facts.
_OWN = {"accuracy_drop": "accuracy", "saturation": "saturation"}


def model_results(model: str, out: Path) -> list[CheckResult]:
    """Every check of one of the three sample models, with the sections it makes itself."""
    sections, vela_value, sram_passed, drop_passed = _sample_sections(model, out)
    drop = sections["accuracy"]["digit"]["drop"]

    def own(check: str) -> dict[str, Any]:
        return {_OWN[check]: sections[_OWN[check]]} if check in _OWN else {}

    results = [
        _result(model, "accuracy_drop", drop_passed, drop, 0.03, "fraction", own("accuracy_drop"),
                message=f"accuracy_drop {'passed' if drop_passed else 'failed'}: {drop:.2%}\n  try: look at <layers>"),
        _result(model, "fully_quantized", vela_value == 0, vela_value, 0.0, "count", {}),
        _result(model, "saturation", True, 0.002, 0.01, "fraction", own("saturation")),
        _result(model, "size", True, 91234.0, None, "bytes", {}),
    ]
    for acc in (U55, U85):
        results += [
            _result(model, "vela", vela_value == 0, vela_value, 0.0, "count", {}, acc),
            _result(model, "sram", sram_passed, sections["vela"][acc]["sram_bytes"], 512 * 1024, "bytes", {}, acc),
            _result(model, "flash", True, 60000.0, 2 * 1024**2, "bytes", {}, acc),
            _result(model, "npu_weights", True, 52000.0, None, "bytes", {}, acc),
            _result(model, "inference_time", None, None, None, "seconds", {}, acc,
                    message="inference_time not run: <no estimate>"),
        ]
    return results


def model_facts(model: str, out: Path) -> ReportFacts:
    """The facts of one of the three sample models, as the process that ran its checks sends them."""
    sections, *_ = _sample_sections(model, out)
    return ReportFacts(model, "", {key: value for key, value in sections.items() if key not in _OWN.values()})


def sample_results(out: Path) -> list[CheckResult]:
    """All results of the three models, in the order a run could deliver them."""
    return [r for model in (GOOD, LOSSY, EVIL) for r in model_results(model, out)]


def sample_facts(out: Path) -> list[ReportFacts]:
    """The facts of the three models, one each."""
    return [model_facts(model, out) for model in (GOOD, LOSSY, EVIL)]


def sample_report(out: Path) -> dict[str, Any]:
    """The report of the three models."""
    from qcheck.report.json_report import build_report

    return build_report(sample_results(out), SUITE, facts=sample_facts(out))
