"""Right verdicts on real kinds of models: dynamic batches, hybrid and float-I/O models, stateful
models, too little data (issue 14 items 2, 3, 5, 8; issue 21 items 2 and 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REAL
from tflite_edits import edit_model

INT8_MODELS = ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model.tflite", "mlperf_tiny/ad01_int8.tflite",
               "mlperf_tiny/pretrainedResnet_quant.tflite", "tflm/hello_world_int8.tflite"]


def _checks(pytester: pytest.Pytester, *args: str) -> dict[str, dict[str, Any]]:
    """Run qcheck in the pytester folder; checks keyed by model file name, then check name."""
    pytester.runpytest("-p", "no:cacheprovider", "--qcheck-json=r.json", *args)
    report = json.loads((pytester.path / "r.json").read_text())
    return {Path(m["model"]).name: {c["name"]: c for c in m["checks"]} | {"_model": m} for m in report["models"]}


# -- static_shapes: judged by what breaks -----------------------------------------------------------


def test_a_dynamic_batch_alone_passes_with_a_note_on_older_runtimes(pytester: pytest.Pytester) -> None:
    checks = _checks(pytester, "-k", "static_shapes", *(f"--qcheck-model={REAL / n}" for n in INT8_MODELS))
    for name in INT8_MODELS:
        check = checks[Path(name).name]["static_shapes"]
        assert check["passed"] is True, check["message"]
        assert check["value"] == 0
        assert "dynamic batch only" in check["message"] and "[-1, " in check["message"]
        assert "tensorflow#54261" in check["message"] and "tflite-micro#197" in check["message"]


def test_strict_static_shapes_fails_a_dynamic_batch(pytester: pytest.Pytester) -> None:
    checks = _checks(pytester, "-k", "static_shapes", "--qcheck-set", "static_shapes.strict=true",
                     *(f"--qcheck-model={REAL / n}" for n in INT8_MODELS))
    for name in INT8_MODELS:
        check = checks[Path(name).name]["static_shapes"]
        assert check["passed"] is False and check["value"] == 2, check["message"]  # input and output
        assert "strict" in check["message"]


def test_a_dynamic_dimension_past_the_batch_fails(pytester: pytest.Pytester) -> None:
    # ad01 with its 640 input features made dynamic, as a model taking sequences of any length has it.
    def change(model: Any, schema: Any) -> None:
        graph = model.subgraphs[0]
        graph.tensors[int(graph.inputs[0])].shapeSignature = np.array([-1, -1], dtype=np.int32)

    edited = edit_model(REAL / "mlperf_tiny/ad01_int8.tflite", pytester.path / "ad01_any_length.tflite", change)
    checks = _checks(pytester, "-k", "static_shapes", f"--qcheck-model={edited}")
    check = checks["ad01_any_length.tflite"]["static_shapes"]
    assert check["passed"] is False and check["value"] == 1
    assert "past the batch in input 'input_1' [-1, -1]" in check["message"]
    assert "dynamic batch only in output" in check["message"]
