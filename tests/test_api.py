"""The Python API: qcheck.quantize() outside pytest, one assertion helper per check, the marker."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, REAL

import qcheck
from qcheck.checks import registry
from qcheck.data import load_npz
from qcheck.errors import QcheckError
from qcheck.pipeline import ModelRun
from qcheck.quantized import QuantizedModel
from qcheck.named_inputs import NamedInputs

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> QuantizedModel:
    """The digits CNN quantized by qcheck.quantize(), once for the session (a ~10 s conversion)."""
    return qcheck.quantize(FIXTURES / "digits_cnn.keras", FIXTURES / "digits.npz",
                           out=tmp_path_factory.mktemp("digits_api"))


@pytest.fixture(scope="session")
def vww() -> QuantizedModel:
    """An already quantized model: checked as it is, no conversion, no data."""
    return qcheck.quantize(VWW)


def test_importing_qcheck_loads_nothing_heavy() -> None:
    code = ("import sys, qcheck; heavy = ('tensorflow', 'keras', 'ai_edge_litert', 'pandas', 'numpy', "
            "'hypothesis'); print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_check_has_an_assertion_helper() -> None:
    for name in registry():
        helper = getattr(qcheck, f"assert_{name}")
        assert callable(helper) and helper.__doc__, name
        assert f"assert_{name}" in dir(qcheck)
    with pytest.raises(AttributeError):
        qcheck.assert_no_such_check  # noqa: B018


def test_quantize_outside_pytest(digits: QuantizedModel) -> None:
    assert digits.path.is_file() and digits.path.read_bytes() == digits.tflite
    assert digits.quantization_info["fully_quantized"] is True
    result = qcheck.assert_fully_quantized(digits)
    assert (result.passed, result.value, result.check) == (True, 0.0, "fully_quantized")
    drop = qcheck.assert_accuracy_drop(digits)  # on the evaluation samples kept apart from calibration
    assert drop.threshold == pytest.approx(0.03) and drop.value is not None and drop.value < 0.03


def test_a_failing_helper_raises_the_checks_message(digits: QuantizedModel) -> None:
    with pytest.raises(AssertionError) as info:
        qcheck.assert_size(digits, max="1KB")
    message = str(info.value)
    assert message.startswith("size failed: ") and "> max 1000 B" in message and "try:" in message


def test_helpers_measure_like_the_suites_items(digits: QuantizedModel) -> None:
    from qcheck.suites import load_suite
    from qcheck.verdict import judge

    check = registry()["saturation"]
    spec = load_suite("default").checks["saturation"]
    evidence = digits._evidence
    assert evidence is not None
    expected = judge(evidence.model, check, spec, check.measure(evidence, spec.options))
    assert qcheck.run_check("saturation", digits) == expected


def test_other_data_is_measured_on_those_samples(digits: QuantizedModel) -> None:
    data = load_npz(FIXTURES / "digits.npz")
    x, y = data.x[:60], data.labels[""][:60]
    result = qcheck.run_check("accuracy_drop", digits, (x, y))
    (head,) = result.sections["accuracy"].values()
    assert head["samples"] == 60 and head["labelled"] is True
    assert not isinstance(x, NamedInputs)
    unlabelled = qcheck.run_check("accuracy_drop", digits, x[:30])
    (head,) = unlabelled.sections["accuracy"].values()
    assert head["samples"] == 30 and head["labelled"] is False
    assert qcheck.assert_saturation(digits, data).passed is True  # a Dataset, as qcheck_data gives


def test_a_check_that_cannot_be_measured_skips(vww: QuantizedModel) -> None:
    assert qcheck.assert_size(vww).value == VWW.stat().st_size
    with pytest.raises(pytest.skip.Exception, match="needs evaluation data"):
        qcheck.assert_accuracy_drop(vww)


def test_helper_errors_are_clear(vww: QuantizedModel) -> None:
    with pytest.raises(QcheckError, match=r"unknown check 'sise' \(did you mean 'size'\?\)"):
        qcheck.assert_check("sise", vww)
    with pytest.raises(QcheckError, match=r"qcheck.assert_size\(\): checks.size.max: 'big' is not a quantity"):
        qcheck.assert_size(vww, max="big")
    bare = QuantizedModel(vww.path, vww.tflite, vww.info)
    with pytest.raises(QcheckError, match="has no pipeline to measure from"):
        qcheck.assert_size(bare)
    with pytest.raises(QcheckError, match="io must be 'uint8' or 'int8'"):
        qcheck.quantize(VWW, io="float")


def test_the_temporary_folder_goes_with_the_model() -> None:
    q = qcheck.quantize(VWW, np.zeros((2, 96, 96, 3), np.float32))
    evidence = q._evidence
    assert isinstance(evidence, ModelRun)
    folder = evidence.out_dir
    assert (folder / "data.npz").is_file()
    del q, evidence
    gc.collect()
    assert not folder.exists()


@pytest.mark.slow
def test_quantize_an_in_memory_keras_model_with_arrays(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import keras, numpy as np, qcheck
        data = np.load({str(FIXTURES / 'digits.npz')!r})
        model = keras.saving.load_model({str(FIXTURES / 'digits_cnn.keras')!r}, compile=False)
        q = qcheck.quantize(model, (data["x"], data["y"]), calibration=data["x"][:50], io="int8")
        qcheck.assert_fully_quantized(q)
        result = qcheck.assert_accuracy_drop(q, max="5%")
        print("OK", q.input_params, result.sections["accuracy"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout and "int8" in out.stdout and "'samples': 540" in out.stdout


def test_marker_and_helpers_in_a_users_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_model=f"""
        import pytest
        import qcheck

        @pytest.mark.qcheck(model="{VWW}", size="100KB")
        def test_size_budget_from_the_marker(qcheck_quantized):
            qcheck.assert_fully_quantized(qcheck_quantized)
            qcheck.assert_size(qcheck_quantized)

        @pytest.mark.qcheck(model="{VWW}")
        def test_explicit_budget(qcheck_quantized):
            qcheck.assert_size(qcheck_quantized, max="1MB")

        @pytest.mark.qcheck(model="{VWW}", sise="1KB")
        def test_typo(qcheck_quantized):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_typo[[]invalid-marker[]]*",
        "@pytest.mark.qcheck on test_model.py::test_typo: unknown argument 'sise' (did you mean 'size'?)",
        "*_ test_size_budget_from_the_marker*",
        ">       qcheck.assert_size(qcheck_quantized)",
        "E       AssertionError: size failed: 325.48 KiB > max 97.66 KiB.*",
        "test_model.py:7: AssertionError",
    ])
    assert "qcheck/api.py" not in result.stdout.str()  # the failure points at the user's line only


def test_the_command_line_overrides_the_markers_thresholds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import pytest
        import qcheck

        @pytest.mark.qcheck(model="{VWW}", size="100KB")
        def test_size(qcheck_quantized, qcheck_model_path):
            assert qcheck_model_path == "{VWW}"
            qcheck.assert_size(qcheck_quantized)
    """)
    pytester.runpytest("-p", "no:cacheprovider", "--qcheck-max-size=1MB").assert_outcomes(passed=1)
