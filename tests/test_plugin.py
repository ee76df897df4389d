"""The plugin as users run it: options, items, selection, bad input, fixtures, xdist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import FIXTURES, REAL

from qcheck.suites import load_suite

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
DEFAULT_CHECKS = {spec.name for spec in load_suite("default").enabled()}


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = ("import sys, qcheck.plugin; heavy = ('tensorflow', 'keras', 'ai_edge_litert', 'pandas', "
            "'jinja2', 'ethosu', 'numpy'); print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_a_model_qcheck_adds_no_items_and_costs_nothing(pytester: pytest.Pytester) -> None:
    # The plugin is loaded by every pytest run of the environment: a run that does not use
    # qcheck makes no session, so neither the checks nor numpy are imported.
    pytester.makepyfile("""
        import sys

        def test_plain():
            assert not [m for m in ("numpy", "qcheck.session", "qcheck.checks") if m in sys.modules]
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not [line for line in result.stdout.lines if "qcheck::" in line or "= qcheck =" in line]


def test_one_item_per_check_and_keyword_selection(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "--co", "-q")
    ids = [line for line in result.stdout.lines if line.startswith("qcheck::")]
    assert len(ids) == len(DEFAULT_CHECKS)
    assert f"qcheck::vela[{VWW}-ethos-u55-128]" in ids
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "fully_quantized")
    result.assert_outcomes(passed=1)


def test_several_accelerators_parametrize_the_vela_check(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "vela",
                                "--qcheck-accelerator=ethos-u55-64,ethos-u85-256", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*vela*ethos-u55-64*PASSED*", "*vela*ethos-u85-256*PASSED*"])


def test_command_line_threshold_overrides_the_suite(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "size",
                                "--qcheck-max-size=100KB")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*size failed: 325.48 KiB > max 97.66 KiB*", "*try:*"])
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "size",
                                "--qcheck-set", "size.max=1MB")
    result.assert_outcomes(passed=1)


def test_a_suite_file_sets_thresholds_and_disables_checks(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", board='extends = "default"\n[checks.size]\nmax = "100KB"\n[checks.vela]\nenabled = false\n')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "--qcheck-suite=board.toml")
    # size fails (static_shapes passes: a dynamic batch alone); vela is off; two checks need data
    result.assert_outcomes(passed=len(DEFAULT_CHECKS) - 4, failed=1, skipped=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qcheck-accelerator=ethos-u99"], "*unknown accelerator 'ethos-u99'*ethos-u55-128*"),
        (["--qcheck-suite=defualt"], "*no built-in suite named 'defualt' (did you mean 'default'?)*"),
        (["--qcheck-set", "acuracy_drop.max=2%"], "*unknown check 'acuracy_drop' (did you mean 'accuracy_drop'?)*"),
        (["--qcheck-max-accuracy-drop=lots"], "*checks.accuracy_drop.max*'lots' is not a quantity*"),
    ],
)
def test_usage_errors_are_one_clear_line(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_bad_models_fail_their_items_and_the_good_model_still_runs(pytester: pytest.Pytester) -> None:
    (pytester.path / "text.keras").write_text("this is not a model")
    (pytester.path / "empty.tflite").write_bytes(b"")
    (pytester.path / "random.tflite").write_bytes(np.random.default_rng(1).bytes(4096))
    (pytester.path / "model.onnx").write_bytes(b"onnx")
    bad = ["missing.keras", "text.keras", "empty.tflite", "random.tflite", "model.onnx"]
    result = pytester.runpytest("-p", "no:cacheprovider", "--qcheck-json=r.json", "-k", "fully_quantized",
                                *(f"--qcheck-model={m}" for m in bad), f"--qcheck-model={VWW}")
    result.assert_outcomes(passed=1, errors=len(bad))  # could not be measured: errors, not failures
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    report = {m["model"]: m["checks"][0]["message"] for m in json.loads((pytester.path / "r.json").read_text())["models"]}
    assert "missing.keras: model file does not exist" in report["missing.keras"]
    assert "text.keras: is not a Keras 3 model archive" in report["text.keras"]
    assert "empty.tflite: model file is empty" in report["empty.tflite"]
    assert "random.tflite: not a TFLite flatbuffer" in report["random.tflite"]
    assert "model.onnx: unsupported model type '.onnx'" in report["model.onnx"]


def test_bad_data_fails_the_checks_that_need_it_and_names_the_file(pytester: pytest.Pytester) -> None:
    np.savez(pytester.path / "wrong_shape.npz", x=np.zeros((10, 32, 32, 3), np.float32))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "--qcheck-data=wrong_shape.npz")
    # saturation cannot be measured on the data (an error); accuracy needs a reference; the
    # model's dynamic batch alone passes static_shapes
    outcomes = result.parseoutcomes()
    assert outcomes["errors"] == 1 and outcomes.get("failed", 0) == 0 and outcomes["skipped"] == 1
    result.stdout.fnmatch_lines(["*wrong_shape.npz: does not fit the model*shape (32, 32, 3)*(96, 96, 3)*"])


def test_lambda_layers_are_refused_unless_unsafe_is_asked_for(pytester: pytest.Pytester) -> None:
    model = FIXTURES / "lambda.keras"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={model}", "-k", "fully_quantized")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*lambda.keras: contains a Lambda layer*", "*--qcheck-unsafe-deserialization*"])
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={model}", "-k", "fully_quantized",
                                "--qcheck-unsafe-deserialization")
    result.assert_outcomes(passed=1)


def test_fixtures_give_users_the_quantized_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import numpy as np

        def test_runs(qcheck_quantized):
            assert qcheck_quantized.size_bytes == qcheck_quantized.path.stat().st_size
            assert set(qcheck_quantized.tensors["dtype"]) == {"int8", "int32"}
            (params,) = qcheck_quantized.input_params.values()
            assert params.dtype == "int8" and params.zero_point == -128
            x = np.random.default_rng(0).random((3, 96, 96, 3), dtype=np.float32)
            (out,) = qcheck_quantized(x).values()
            assert out.shape == (3, 2)
            (probs,) = qcheck_quantized.probabilities(x).values()
            np.testing.assert_allclose(probs, out)  # the graph ends in a softmax: nothing re-applied
            assert qcheck_quantized.quantization_info["fully_quantized"] is True

        def test_data_skips_without_data(qcheck_data):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "test_")
    result.assert_outcomes(passed=1, skipped=1)


def test_without_xdist_no_unknown_mark(pytester: pytest.Pytester) -> None:
    # `pip install pytest-qcheck` brings no pytest-xdist: qcheck's items must not carry its mark.
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist", "--strict-markers",
                                "-W", "error::pytest.PytestUnknownMarkWarning", f"--qcheck-model={VWW}", "-k", "size")
    result.assert_outcomes(passed=1)
    assert "xdist_group" not in result.stdout.str()


def test_xdist_workers_send_results_to_one_report(pytester: pytest.Pytester) -> None:
    models = [REAL / "mlperf_tiny" / n for n in ("vww_96_int8.tflite", "kws_ref_model.tflite", "ad01_int8.tflite")]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "-v", "--qcheck-json=r.json",
                                           *(f"--qcheck-model={m}" for m in models))
    report = json.loads((pytester.path / "r.json").read_text())
    assert sorted(m["model"] for m in report["models"]) == sorted(str(m) for m in models)
    assert all(len(m["checks"]) == len(DEFAULT_CHECKS) for m in report["models"])
    # -n without --dist: each model's checks stay on one worker (so it is converted and run once),
    # and the models are spread over both workers.
    workers: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        found = re.match(r"\[(gw\d)\] .* qcheck::\w+\[[^\]]*?(\w+)\.tflite", line)
        if found:
            workers.setdefault(found[2], set()).add(found[1])
    assert sorted(workers) == ["ad01_int8", "kws_ref_model", "vww_96_int8"]
    assert all(len(used) == 1 for used in workers.values()), workers
    assert len(set().union(*workers.values())) == 2, workers
    # accuracy and saturation need data; these MLPerf models' dynamic batch alone passes static_shapes
    result.assert_outcomes(passed=3 * (len(DEFAULT_CHECKS) - 2), skipped=6)
    result.stdout.fnmatch_lines([f"*vww_96_int8.tflite: PASS (0 of {len(DEFAULT_CHECKS)} checks failed)*"])


@pytest.mark.slow
def test_vela_compiles_ahead_while_the_model_is_evaluated(pytester: pytest.Pytester) -> None:
    # The vela item comes last; its compilation starts with the model's first check, on a
    # background thread, and -v says so at the next step of the main thread.
    ad01 = REAL / "mlperf_tiny" / "ad01_int8.tflite"
    np.savez(pytester.path / "d.npz", x=np.random.default_rng(0).normal(0, 1, (64, 640)).astype(np.float32),
             y=np.zeros(64, dtype=np.int64))
    args = ("-p", "no:cacheprovider", "-v", "--qcheck-no-cache", f"--qcheck-model={ad01}", "--qcheck-data=d.npz")
    result = pytester.runpytest_subprocess(*args)
    lines = result.stdout.lines
    compiling = next(i for i, line in enumerate(lines) if "compiling for ethos-u55-128 with Vela" in line)
    vela_item = next(i for i, line in enumerate(lines) if "check vela[ethos-u55-128] ..." in line)
    assert compiling < vela_item
    assert (pytester.path / "qcheck-out" / "ad01_int8_vela").is_dir()
    result.assert_outcomes(passed=len(DEFAULT_CHECKS) - 1, skipped=1)  # accuracy_drop needs a reference
    result.stdout.fnmatch_lines(["qcheck::vela*ethos-u55-128* PASSED*"])

    # Deselected checks start nothing ahead.
    shutil.rmtree(pytester.path / "qcheck-out")
    result = pytester.runpytest_subprocess(*args, "-k", "not vela")
    result.assert_outcomes(passed=len(DEFAULT_CHECKS) - 2, skipped=1)
    assert "with Vela" not in result.stdout.str()
    assert not (pytester.path / "qcheck-out" / "ad01_int8_vela").exists()
