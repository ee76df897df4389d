"""``input_contract``: the model's input scale and zero point against the application's mapping
(issue 14 item 10), on real conversions and a published MLPerf Tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, REAL, QcheckRun, run_qcheck, write

RESNET = REAL / "mlperf_tiny" / "pretrainedResnet_quant.tflite"


def _suite(folder: Path, contract: str) -> Path:
    return write(folder / "suite.toml", f"""\
        extends = "default"
        [checks.vela]
        enabled = false
        [checks.input_contract]
        enabled = true
        {contract}
        """)


def _digits(folder: Path, brightest: float) -> Path:
    """The bundled digits scaled so that the brightest pixel is ``brightest``."""
    data = dict(np.load(FIXTURES / "digits.npz"))
    data["x"] = (data["x"] * np.float32(brightest)).astype(np.float32)
    assert data["x"].min() == 0.0 and np.isclose(data["x"].max(), brightest)
    path = folder / f"digits_{brightest}.npz"
    np.savez(path, **data)
    return path


def _run_digits(tmp_path: Path, brightest: float) -> QcheckRun:
    data = _digits(tmp_path, brightest)
    suite = _suite(tmp_path, 'scale = "1/255"\nzero_point = 0')
    return run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={data}",
                      f"--qcheck-suite={suite}")


def test_calibration_short_of_the_range_fails_the_contract_with_its_measured_cost(tmp_path: Path) -> None:
    run = _run_digits(tmp_path, 0.98)
    assert run.returncode == 1, run.stdout
    result = run.check("digits_cnn.keras", "input_contract")
    assert result["passed"] is False and result["value"] == 1  # the scale differs; the zero point is 0
    section = run.model("digits_cnn.keras")["input_contract"]
    model, contract = section["model"], section["contract"]
    assert contract == {"scale": 1 / 255, "zero_point": 0, "source": "the suite"}
    # The converter took the range from the data: 0.98/255, not the application's 1/255.
    assert model["scale"] == pytest.approx(0.98 / 255, rel=1e-3) and model["zero_point"] == 0
    message = result["message"]
    assert "scale off by 2.00%" in message
    assert "model: scale 0.00384314" in message and "raw 0..255 means 0..0.98" in message
    assert "contract from the suite: scale 1/255" in message and "raw 0..255 means 0..1" in message
    # The cost was measured: the application's integers were run through the int8 model.
    cost = section["cost"]["output_0"] if "output_0" in section["cost"] else next(iter(section["cost"].values()))
    assert cost["mean_steps"] > 0  # feeding 2%-brighter integers moves the outputs
    assert 0 <= cost["agreement_application"] <= 1 and 0 <= cost["agreement_own"] <= 1
    assert f"{cost['agreement_own']:.1%} (model's own input quantization) -> " \
           f"{cost['agreement_application']:.1%} (application's)" in message
    assert "reaches both ends of the contract's range, 0 and 1" in message
    assert "quantized_input_stats exists only on the tf.compat.v1 converters" in message


def test_calibration_spanning_the_range_meets_the_contract(tmp_path: Path) -> None:
    run = _run_digits(tmp_path, 1.0)
    result = run.check("digits_cnn.keras", "input_contract")
    assert result["passed"] is True and result["value"] == 0, result["message"]
    section = run.model("digits_cnn.keras")["input_contract"]
    assert section["model"] == {"scale": pytest.approx(1 / 255, rel=1e-6), "zero_point": 0}
    assert "cost" not in section  # nothing to measure when the mappings agree


def _resnet_data(folder: Path) -> Path:
    """Twenty raw-pixel images (0..255), as the ResNet-8 application feeds them."""
    x = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3)).astype(np.float32)
    path = folder / "pixels.npz"
    np.savez(path, x=x)
    return path


def test_resnet8_takes_raw_pixels_minus_128_and_not_pixel_over_255(tmp_path: Path) -> None:
    data = _resnet_data(tmp_path)
    good = run_qcheck(tmp_path / "raw", f"--qcheck-model={RESNET}", f"--qcheck-data={data}",
                      f"--qcheck-suite={_suite(tmp_path / 'raw', 'scale = 1' + chr(10) + 'zero_point = -128')}")
    result = good.check(RESNET.name, "input_contract")
    assert result["passed"] is True and result["value"] == 0, result["message"]
    assert "raw -128..127 means 0..255" in result["message"]

    bad = run_qcheck(tmp_path / "scaled", f"--qcheck-model={RESNET}", f"--qcheck-data={data}",
                     f"--qcheck-suite={_suite(tmp_path / 'scaled', 'scale = 0.00392156862745098')}")
    result = bad.check(RESNET.name, "input_contract")
    # 1/255 as a float; the zero point defaults to the int8 input's lowest value, -128.
    assert result["passed"] is False and result["value"] == 1, result["message"]
    section = bad.model(RESNET.name)["input_contract"]
    assert section["contract"]["zero_point"] == -128
    assert "scale off by 25400.00%" in result["message"]
    (cost,) = section["cost"].values()
    assert cost["mean_steps"] > 0 and "top1_changed" in cost  # no float model: change against its own
    assert "top-1 changes on" in result["message"]


def test_without_a_contract_the_mapping_is_reported_and_passes(tmp_path: Path) -> None:
    suite = _suite(tmp_path, "")
    run = run_qcheck(tmp_path, f"--qcheck-model={RESNET}", f"--qcheck-suite={suite}")
    result = run.check(RESNET.name, "input_contract")
    assert result["passed"] is True and result["value"] == 0
    assert "int8 input has scale 1, zero point -128 (raw -128..127 means 0..255); no contract stated" \
        in result["message"]


def test_a_scale_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    suite = _suite(tmp_path, 'scale = "one/255"')
    run = run_qcheck(tmp_path, f"--qcheck-model={RESNET}", f"--qcheck-suite={suite}")
    result = run.check(RESNET.name, "input_contract")
    assert result["passed"] is False
    assert "[checks.input_contract] scale 'one/255' is not a number or a fraction like \"1/255\"" in result["message"]


def test_an_image_folder_states_the_contract_by_its_pixel_scale(tmp_path: Path) -> None:
    """Images whose brightest pixel is 250 calibrate the input to 250/255: the application feeding
    the same raw pixels with the folder's ``pixel * 1/255`` is 2% off, and no suite key is needed."""
    from PIL import Image

    digits = np.load(FIXTURES / "digits.npz")
    for n, (x, y) in enumerate(zip(digits["x"][:300], digits["y"][:300])):
        folder = tmp_path / "images" / str(int(y))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(x[..., 0] * 250).astype(np.uint8), mode="L").save(folder / f"{n:03d}.png")
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={tmp_path / 'images'}",
                     "--qcheck-image-mode=L", f"--qcheck-suite={_suite(tmp_path, '')}")
    result = run.check("digits_cnn.keras", "input_contract")
    assert result["passed"] is False and result["value"] == 1, result["message"]
    section = run.model("digits_cnn.keras")["input_contract"]
    assert section["contract"] == {"scale": pytest.approx(1 / 255), "zero_point": 0,
                                   "source": "the image-folder options (pixel * scale + offset)"}
    assert section["model"]["scale"] == pytest.approx(250 / 255 / 255, rel=1e-3)
    assert "cost" in section


def test_the_assertion_helper_states_the_contract_in_python(tmp_path: Path) -> None:
    """``qcheck.assert_input_contract`` on the vww model, whose input is pixel/255 into int8."""
    import qcheck

    vww = qcheck.quantize(REAL / "mlperf_tiny" / "vww_96_int8.tflite", out=tmp_path)
    result = qcheck.assert_input_contract(vww, scale="1/255", zero_point=-128)
    assert result.passed is True and result.value == 0
    with pytest.raises(AssertionError, match=r"zero point off by -128"):
        qcheck.assert_input_contract(vww, scale="1/255", zero_point=0)
