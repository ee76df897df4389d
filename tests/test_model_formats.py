"""Legacy .h5 and SavedModel inputs, a separate calibration set and int8 I/O, in one real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES

EXPORT = """
import sys, keras
keras.saving.load_model(sys.argv[1], compile=False).export(sys.argv[2], verbose=False)
"""


def test_h5_and_savedmodel_with_separate_calibration_and_int8_io(pytester: pytest.Pytester) -> None:
    saved = pytester.path / "digits_savedmodel"
    subprocess.run([sys.executable, "-c", EXPORT, str(FIXTURES / "digits_cnn.keras"), str(saved)],
                   check=True, capture_output=True)
    data = np.load(FIXTURES / "digits.npz")
    np.savez(pytester.path / "cal.npz", x=data["x"][:100])

    result = pytester.runpytest(
        f"--qcheck-model={FIXTURES / 'digits_cnn.h5'}", f"--qcheck-model={saved}",
        f"--qcheck-data={FIXTURES / 'digits.npz'}", "--qcheck-calibration=cal.npz", "--qcheck-io=int8",
        # Loading a SavedModel runs its functions: it takes the opt-in (tests/test_hostile_models.py).
        "--qcheck-unsafe-deserialization",
        "--qcheck-json=r.json", "-k", "fully_quantized or accuracy_drop",
    )
    result.assert_outcomes(passed=4)
    report = {Path(m["model"]).name: m for m in json.loads((pytester.path / "r.json").read_text())["models"]}
    for name in ("digits_cnn.h5", "digits_savedmodel"):
        model = report[name]
        info = model["quantization_info"]
        assert info["input"][0]["dtype"] == "int8" and info["output"][0]["dtype"] == "int8"
        assert info["uint8_tensors"] == 0
        assert info["input"][0]["shape"][0] == 1 and info["input"][0]["shape_signature"][0] == 1
        (head,) = model["accuracy"].values()
        # A separate calibration set: every data sample is evaluated.
        assert head["samples"] == len(data["x"])
        assert head["float"] > 0.9 and abs(head["drop"]) < 0.03
        assert any("100 samples from" in note and "cal.npz" in note for note in model["notes"])
