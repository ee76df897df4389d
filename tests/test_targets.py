"""Deployment targets: every Ethos-U family, memory and time budgets, TFLite Micro, target suites.

Real Vela on the published models in tests/real (their README gives Vela's numbers for
vww_96_int8 on ethos-u55-128); the odd cases are real models edited by ``tflite_edits``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import REAL
from tflite_edits import with_unknown_last_op, without_declared_inputs

from qcheck.checks.vela import vela_config
from qcheck.config import THRESHOLD_OPTIONS, with_default_unit
from qcheck.errors import QcheckError
from qcheck.suites import load_suite
from qcheck.tflite.arena import estimate_arena
from qcheck.tflite.breakdown import UNUSED_OP, constant_bytes, size_breakdown
from qcheck.tflite.inspect import IOInfo, ModelInfo, OperatorInfo, TensorInfo, inspect_model
from qcheck.tflm_kernels import BUILTIN_KERNELS, CUSTOM_KERNELS, SOURCE, resolver_call
from qcheck.units import parse_quantity
from qcheck.vela import VelaConfig, VelaResult, run_vela

KIB = 1024
VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
VWW_FLOAT = REAL / "mlperf_tiny" / "vww_96_float.tflite"
HELLO = REAL / "tflm" / "hello_world_int8.tflite"
HELLO_FLOAT = REAL / "tflm" / "hello_world_float.tflite"
MICRO_SPEECH = REAL / "tflm" / "micro_speech_quantized.tflite"
REAL_MODELS = sorted(REAL.glob("*/*.tflite"))
TARGET_CHECKS = ("vela", "sram", "flash", "npu_weights", "inference_time")
MEMORY_K = "sram or flash or npu_weights or inference_time"

slow = pytest.mark.slow


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, dict[str, Any]]]:
    """Run qcheck as users do; the JSON report's entries by model file name."""
    result = pytester.runpytest("-p", "no:cacheprovider", "--qcheck-json=r.json", *args)
    report = json.loads((pytester.path / "r.json").read_text())
    return result, {Path(m["model"]).name: m for m in report["models"]}


def _checks(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A model's checks by name, with the accelerator for target checks: "sram[ethos-u55-128]"."""
    return {c["name"] + (f"[{c['variant']}]" if c["variant"] else ""): c for c in model["checks"]}


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for edited models. Its path holds no check name, which "-k vela" would match."""
    return tmp_path_factory.mktemp("models")


# --- where the bytes go ------------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL_MODELS, ids=lambda p: p.name)
def test_size_breakdown_adds_up_to_the_constant_data(path: Path) -> None:
    info = inspect_model(path.read_bytes())
    layers = size_breakdown(info)

    assert sum(layer.total_bytes for layer in layers) == constant_bytes(info)
    assert constant_bytes(info) == sum(t.data_bytes for t in info.tensors if t.data_bytes)
    totals = [layer.total_bytes for layer in layers]
    assert totals == sorted(totals, reverse=True) and all(totals)


def test_size_breakdown_of_hello_world_by_hand() -> None:
    """Three dense layers 1->16->16->1: int8 weights (one byte each) and int32 biases (four)."""
    layers = size_breakdown(inspect_model(HELLO.read_bytes()))

    rows = [(layer.op, layer.weights_bytes, layer.bias_bytes, layer.other_bytes) for layer in layers]
    assert rows == [
        ("FULLY_CONNECTED", 16 * 16, 16 * 4, 0),
        ("FULLY_CONNECTED", 1 * 16, 16 * 4, 0),
        ("FULLY_CONNECTED", 16 * 1, 1 * 4, 0),
    ]
    assert layers[0].name.startswith("sequential/dense_1/")
    assert UNUSED_OP not in {layer.op for layer in layers}


def test_shape_constants_are_other_bytes_and_unread_constants_get_their_own_entry() -> None:
    """micro_speech's RESHAPE reads a 4-value int32 shape (16 bytes)."""
    info = inspect_model(MICRO_SPEECH.read_bytes())
    reshape = [layer for layer in size_breakdown(info) if layer.op == "RESHAPE"]
    assert [(r.weights_bytes, r.bias_bytes, r.other_bytes) for r in reshape] == [(0, 0, 16)]

    orphan = _tensor(9, "orphan", "int8", (10,), constant=True, data_bytes=10)
    layers = size_breakdown(_model([orphan], []))
    assert [(layer.op, layer.index, layer.total_bytes) for layer in layers] == [(UNUSED_OP, -1, 10)]


# --- activation memory --------------------------------------------------------------------------


def test_arena_of_hello_world_by_hand() -> None:
    """Tensors [1,1] -> [1,16] -> [1,16] -> [1,1], int8, each buffer rounded up to 16 bytes:
    every operator has one 16-byte input and one 16-byte output alive, so the peak is 32."""
    estimate = estimate_arena(inspect_model(HELLO.read_bytes()))

    assert estimate.peak_bytes == 32
    assert (estimate.peak_operator, estimate.peak_op) == (0, "FULLY_CONNECTED")
    assert [(t.shape, t.bytes) for t in estimate.live] == [((1, 16), 16), ((1, 1), 16)]


def test_arena_of_micro_speech_by_hand() -> None:
    """Input [1,1960] -> RESHAPE [1,49,40,1] -> DEPTHWISE_CONV_2D [1,25,20,8] -> FC [1,4] ->
    SOFTMAX [1,4]. The peak is at the depthwise conv: its input, 1960 bytes rounded up to 1968,
    and its output, 25*20*8 = 4000: 5968. (Vela's SRAM figure for it on ethos-u55-128 is 5968
    too.)"""
    estimate = estimate_arena(inspect_model(MICRO_SPEECH.read_bytes()))

    assert estimate.peak_bytes == 1968 + 4000
    assert estimate.peak_op == "DEPTHWISE_CONV_2D"
    assert [t.bytes for t in estimate.live] == [4000, 1968]


def test_arena_keeps_state_alive_and_counts_intermediates_only_while_their_operator_runs() -> None:
    tensors = [
        _tensor(0, "in", "int8", (1, 32)),
        _tensor(1, "state", "int16", (1, 8)),  # read, never written: a variable
        _tensor(2, "scratch", "int8", (1, 64)),  # operator 0's intermediate
        _tensor(3, "mid", "int8", (1, 32)),
        _tensor(4, "out", "int8", (1, 16)),
        _tensor(5, "weights", "int8", (32, 32), constant=True, data_bytes=1024),
    ]
    operators = [
        OperatorInfo(0, 0, "UNIDIRECTIONAL_SEQUENCE_LSTM", False, (0, 5, 1), (3,), (2,)),
        OperatorInfo(0, 1, "FULLY_CONNECTED", False, (3, 5), (4,), ()),
    ]
    estimate = estimate_arena(_model(tensors, operators))

    # operator 0: in 32 + state 16 + scratch 64 + mid 32; operator 1: state 16 + mid 32 + out 16
    assert (estimate.peak_bytes, estimate.peak_operator) == (144, 0)
    assert estimate.to_dict()["live_tensors"][0] == {"name": "scratch", "dtype": "int8", "shape": [1, 64], "bytes": 64}


def test_arena_of_a_graph_without_operators_is_its_inputs_and_outputs() -> None:
    estimate = estimate_arena(_model([_tensor(0, "x", "float32", (1, 3))], []))  # 12 bytes, aligned to 16
    assert (estimate.peak_bytes, estimate.peak_operator, estimate.operators) == (16, -1, 0)


# --- TFLite Micro kernels -----------------------------------------------------------------------


def test_tflm_kernel_list_names_real_operators_and_its_source() -> None:
    from ai_edge_litert import schema_py_generated as schema

    builtin = {name for name in vars(schema.BuiltinOperator) if not name.startswith("_")}
    assert set(BUILTIN_KERNELS) <= builtin
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"} <= set(BUILTIN_KERNELS)
    assert "CUSTOM" not in BUILTIN_KERNELS
    assert CUSTOM_KERNELS["ethos-u"] == "AddEthosU"
    assert "tensorflow/tflite-micro" in SOURCE and len(SOURCE.split("@")[1].strip()) == 40
    assert all(method.startswith("Add") for method in (*BUILTIN_KERNELS.values(), *CUSTOM_KERNELS.values()))
    # An operator the list lacks is named by TFLM's rule (only a hint: TFLM decides what loads).
    assert "STABLEHLO_TANH" not in BUILTIN_KERNELS and resolver_call("STABLEHLO_TANH") == "AddStablehloTanh"
    assert resolver_call("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"


# --- options, flags and suites ------------------------------------------------------------------


def test_target_options_become_the_vela_configuration() -> None:
    assert vela_config({}) == VelaConfig.default_for("ethos-u55-128")
    assert vela_config({"accelerator": "ethos-u85-512", "memory_mode": "Dedicated_Sram_512KB"}) == VelaConfig(
        "ethos-u85-512", "Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_512KB", "Arm/vela.ini")
    assert vela_config({"accelerator": "ethos-u65-256", "config_file": "my.ini"}).config_file == "my.ini"
    with pytest.raises(QcheckError, match="ethos-u99-1.*ethos-u55-32"):
        vela_config({"accelerator": "ethos-u99-1"})


def test_config_label_names_the_output_folder() -> None:
    assert VelaConfig.default_for("ethos-u65-256").label == "ethos-u65-256"
    assert (VelaConfig.default_for("ethos-u65-256", memory_mode="Dedicated_Sram_384KB").label
            == "ethos-u65-256_Ethos_U65_High_End_Dedicated_Sram_384KB")
    assert VelaConfig("ethos-u55-64", "S", "M", "/boards/my board.ini").label == "ethos-u55-64_S_M_my_board"


def test_budget_flags_exist_and_inference_ms_means_milliseconds() -> None:
    for flag, target in [("qcheck_max_sram", ("sram", "max")), ("qcheck_max_flash", ("flash", "max")),
                         ("qcheck_max_npu_weights", ("npu_weights", "max")),
                         ("qcheck_max_inference_ms", ("inference_time", "max")),
                         ("qcheck_max_arena", ("arena", "max"))]:
        assert THRESHOLD_OPTIONS[flag] == target
    ms = "qcheck_max_inference_ms"
    assert parse_quantity(with_default_unit(ms, "5"), "seconds") == pytest.approx(0.005)
    assert parse_quantity(with_default_unit(ms, " 0.5 "), "seconds") == pytest.approx(0.0005)
    assert parse_quantity(with_default_unit(ms, "2s"), "seconds") == 2
    assert with_default_unit(ms, "lots") == "lots"  # the suite reports it, naming the key
    assert with_default_unit("qcheck_max_sram", "100") == "100"  # bytes: no default unit


@pytest.mark.parametrize(("suite", "accelerator", "sram", "flash"), [
    ("ethos-u55", "ethos-u55-128", 512 * KIB, 2 * KIB * KIB),
    ("ethos-u65", "ethos-u65-256", 384 * KIB, 16 * KIB * KIB),
    ("ethos-u85", "ethos-u85-256", 512 * KIB, 16 * KIB * KIB),
])
def test_ethos_suites_extend_the_default_with_budgets_for_one_accelerator(
    suite: str, accelerator: str, sram: int, flash: int
) -> None:
    loaded, default = load_suite(suite), load_suite("default")

    assert [name for name in loaded.checks if name in default.checks] == list(default.checks)
    # The operators Vela leaves on the CPU, loaded and run in TFLite Micro (tests/test_tflm_cpu_part.py).
    targets = {*TARGET_CHECKS, "tflm_cpu_ops", "tflm_cpu_parity"}
    assert {spec.name for spec in loaded.enabled()} == {spec.name for spec in default.enabled()} | targets
    # Every target check compiles the same configuration, so Vela runs once per model.
    assert {loaded.checks[name].options["accelerator"] for name in targets} == {accelerator}
    assert (loaded.checks["sram"].max, loaded.checks["flash"].max) == (sram, flash)
    assert loaded.checks["vela"].max == 0
    assert loaded.checks["npu_weights"].max is None and loaded.checks["inference_time"].max is None
    assert loaded.description


def test_cortex_m_suite_runs_no_vela_and_budgets_tflite_micro() -> None:
    suite = load_suite("cortex-m")

    assert "vela" not in {spec.name for spec in suite.enabled()}
    assert suite.checks["tflm_ops"].max == 0
    assert suite.checks["arena"].max == 128 * KIB
    assert suite.checks["size"].max == KIB * KIB
    assert suite.checks["accuracy_drop"].max == pytest.approx(0.03)  # from the default suite


# --- on real models, as users run it -----------------------------------------------------------


@slow
@pytest.mark.parametrize(("suite", "accelerator", "flash_kind", "config"), [
    ("ethos-u55", "ethos-u55-128", "off-chip flash", ("Ethos_U55_High_End_Embedded", "Shared_Sram")),
    ("ethos-u65", "ethos-u65-256", "DRAM", ("Ethos_U65_High_End", "Dedicated_Sram")),
    ("ethos-u85", "ethos-u85-256", "DRAM", ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram")),
])
def test_each_ethos_family_suite_on_a_real_model(
    pytester: pytest.Pytester, suite: str, accelerator: str, flash_kind: str, config: tuple[str, str]
) -> None:
    result, models = _run(pytester, f"--qcheck-model={VWW}", f"--qcheck-suite={suite}", "-k", f"vela or {MEMORY_K}")
    model = models[VWW.name]
    checks = _checks(model)

    result.assert_outcomes(passed=5)
    vela = model["vela"][accelerator]
    assert (vela["system_config"], vela["memory_mode"]) == config
    assert vela["vela_version"] and vela["cpu_ops"] == 0
    assert checks[f"sram[{accelerator}]"]["value"] == vela["sram_bytes"] > 0
    assert checks[f"flash[{accelerator}]"]["value"] == vela["flash_bytes"] > 0
    assert f"of {flash_kind}" in checks[f"flash[{accelerator}]"]["message"]
    assert checks[f"npu_weights[{accelerator}]"]["value"] == vela["npu_weights_bytes"] > 0
    assert 0 < checks[f"inference_time[{accelerator}]"]["value"] == vela["inference_time_s"] < 0.01
    # The five checks read one compilation, with the family's configuration.
    assert all(", ".join((accelerator, *config)) in checks[f"{name}[{accelerator}]"]["message"]
               for name in TARGET_CHECKS)
    if suite == "ethos-u55":  # the README's numbers
        assert abs(vela["sram_bytes"] - 72.73 * KIB) < 300
        assert abs(vela["flash_bytes"] - 74.22 * KIB) < 300


@slow
def test_several_accelerators_parametrize_every_target_check(pytester: pytest.Pytester) -> None:
    result, models = _run(pytester, f"--qcheck-model={HELLO}", "--qcheck-suite=ethos-u55",
                          "--qcheck-accelerator=ethos-u55-32,ethos-u85-2048", "-k", "sram or flash")
    checks = _checks(models[HELLO.name])

    result.assert_outcomes(passed=4)
    assert "off-chip flash" in checks["flash[ethos-u55-32]"]["message"]
    assert "DRAM" in checks["flash[ethos-u85-2048]"]["message"]
    assert set(models[HELLO.name]["vela"]) == {"ethos-u55-32", "ethos-u85-2048"}


@slow
def test_budgets_that_fail_say_what_was_measured(pytester: pytest.Pytester) -> None:
    """vww_96_int8 on ethos-u55-128: SRAM 72.73 KiB, off-chip flash 74.22 KiB, 46.34 KiB of
    encoded weights, 0.44 ms; a TFLite Micro arena of 101.25 KiB (103,680 B, as a separate call of
    tflite-micro 0.dev20261023182759 reports it) of which 54 KiB are activations alive at once
    (48x48x16 + 48x48x8 int8); a 325.48 KiB file holding 213.94 KiB of weights and biases."""
    result, models = _run(
        pytester, f"--qcheck-model={VWW}", "--qcheck-max-sram=64KiB", "--qcheck-max-flash=64KiB",
        "--qcheck-max-npu-weights=40KiB", "--qcheck-max-inference-ms=0.4", "--qcheck-max-arena=48KiB",
        "--qcheck-max-size=300KB", "-k", f"{MEMORY_K} or arena or size",
    )
    model = models[VWW.name]
    checks = _checks(model)
    top = model["size_breakdown"][0]

    result.assert_outcomes(failed=6)
    result.stdout.fnmatch_lines([
        "*size failed: 325.48 KiB > max 292.97 KiB. the .tflite file is 325.48 KiB: 213.94 KiB of constant data*",
        f"*try: shrink the layers with the most constant data, 3 of them hold 54%: "
        f"CONV_2D '{top['name']}' 65.00 KiB (weights 64.00 KiB, bias 1.00 KiB)*",
        "*sram failed: 72.73 KiB > max 64.00 KiB. 72.73 KiB of SRAM used by the NPU (ethos-u55-128*",
        "*flash failed: 74.22 KiB > max 64.00 KiB. 74.22 KiB of off-chip flash*",
        "*npu_weights failed: 46.34 KiB > max 40.00 KiB*",
        "*inference_time failed: 0.442 ms > max 0.400 ms. Vela estimates 0.442 ms per inference on the NPU*",
        "*arena failed: 101.25 KiB > max 48.00 KiB*",
    ])
    assert checks["inference_time[ethos-u55-128]"]["threshold"] == pytest.approx(0.0004)
    assert checks["arena"]["value"] == model["arena"]["total"] == 103680
    assert model["arena"]["lower_bound"]["peak_bytes"] == 48 * 48 * 16 + 48 * 48 * 8
    assert model["arena"]["lower_bound"]["peak_op"] == "CONV_2D"
    assert (top["op"], top["weights_bytes"], top["bias_bytes"]) == ("CONV_2D", 65536, 1024)
    assert sum(layer["total_bytes"] for layer in model["size_breakdown"]) == 219072


@slow
def test_budgets_that_pass(pytester: pytest.Pytester) -> None:
    result, models = _run(
        pytester, f"--qcheck-model={VWW}", "--qcheck-max-sram=100KiB", "--qcheck-max-flash=100KiB",
        "--qcheck-max-npu-weights=50KiB", "--qcheck-max-inference-ms=1", "--qcheck-max-arena=128KiB",
        "-k", f"{MEMORY_K} or arena",
    )

    result.assert_outcomes(passed=5)
    assert _checks(models[VWW.name])["inference_time[ethos-u55-128]"]["threshold"] == pytest.approx(0.001)


@slow
def test_cpu_fallback_names_each_operator_and_vela_reason(pytester: pytest.Pytester, edited: Path) -> None:
    """vww_96_float: every operator on the CPU, although Vela exits 0. hello_world_int8 with an
    operator Vela does not know appended: three operators on the NPU, that one on the CPU."""
    mixed = with_unknown_last_op(HELLO, edited / "hello_mixed.tflite")
    result, models = _run(pytester, f"--qcheck-model={VWW_FLOAT}", f"--qcheck-model={mixed}",
                          "--qcheck-suite=ethos-u55", "--qcheck-set", "tflm_ops.max=0",
                          "-k", f"vela or {MEMORY_K} or tflm_ops")

    float_checks = _checks(models[VWW_FLOAT.name])
    vela = float_checks["vela[ethos-u55-128]"]
    assert (vela["passed"], vela["value"]) == (False, 31)
    assert "31 of 31 operator(s) on the CPU" in vela["message"]
    assert "Operation has tensor with unsupported DataType Float32" in vela["message"]
    assert "and 26 more" in vela["message"]  # five are named; the JSON report has them all
    softmax = [op for op in models[VWW_FLOAT.name]["vela"]["ethos-u55-128"]["cpu_operators"] if op["op"] == "SOFTMAX"]
    assert softmax == [{"op": "SOFTMAX", "name": "Identity", "index": 30, "label": "SOFTMAX 'Identity'",
                        "reason": softmax[0]["reason"]}]
    assert "unsupported DataType Float32" in softmax[0]["reason"]
    for name in ("sram", "flash", "npu_weights", "inference_time"):  # nothing to measure on the NPU
        assert float_checks[f"{name}[ethos-u55-128]"]["passed"] is None
        assert "nothing runs on the NPU" in float_checks[f"{name}[ethos-u55-128]"]["message"]

    mixed_checks = _checks(models[mixed.name])
    assert mixed_checks["vela[ethos-u55-128]"]["value"] == 1
    assert "1 of 4 operator(s) on the CPU" in mixed_checks["vela[ethos-u55-128]"]["message"]
    assert "STABLEHLO_TANH 'appended': Unsupported opType" in mixed_checks["vela[ethos-u55-128]"]["message"]
    assert models[mixed.name]["vela"]["ethos-u55-128"]["cpu_operators"] == [
        {"op": "STABLEHLO_TANH", "name": "appended", "index": 3, "label": "STABLEHLO_TANH 'appended'",
         "reason": "Unsupported opType"}]
    # The NPU part is still measured; the CPU operator is named where it matters.
    assert mixed_checks["sram[ethos-u55-128]"]["passed"] is True
    assert "not counting 1 operator(s) on the CPU" in mixed_checks["inference_time[ethos-u55-128]"]["message"]
    assert mixed_checks["tflm_ops"]["value"] == 1
    assert "Didn't find op for builtin opcode 'STABLEHLO_TANH'" in mixed_checks["tflm_ops"]["message"]
    assert "(STABLEHLO_TANH x1)" in mixed_checks["tflm_ops"]["message"]
    assert result.ret == 1


@slow
def test_a_model_vela_rejects_fails_its_target_checks_with_vela_message(
    pytester: pytest.Pytester, edited: Path
) -> None:
    """None of the published float models makes Vela 5.2 fail (they fall back to the CPU and Vela
    exits 0), so this is hello_world_float with its input left out of the graph's input list."""
    rejected = without_declared_inputs(HELLO_FLOAT, edited / "hello_float_noinput.tflite")
    result, models = _run(pytester, f"--qcheck-model={rejected}", "--qcheck-suite=ethos-u55",
                          "-k", f"vela or {MEMORY_K}")
    checks = _checks(models[rejected.name])

    result.assert_outcomes(errors=5)  # could not be measured: errors, not failed thresholds
    for name in TARGET_CHECKS:
        check = checks[f"{name}[ethos-u55-128]"]
        assert check["status"] == "error"
        assert f"{name} could not be measured" in check["message"]
        assert "failed with exit code 1" in check["error"]
        assert "Does not have valid TFLite Semantics" in check["error"]  # Vela's words, not a traceback
        assert 'File "' not in check["error"]
    # The cause is said in full once; the other checks it stopped point to that one.
    full = [name for name in TARGET_CHECKS if "Does not have valid TFLite Semantics" in
            checks[f"{name}[ethos-u55-128]"]["message"]]
    assert len(full) == 1
    assert all("(see " in checks[f"{name}[ethos-u55-128]"]["message"] for name in TARGET_CHECKS if name not in full)
    assert "Traceback" not in result.stdout.str()


@pytest.fixture(scope="module")
def vww_compiled(tmp_path_factory: pytest.TempPathFactory) -> VelaResult:
    return run_vela(VWW, VelaConfig.default_for("ethos-u55-128"), tmp_path_factory.mktemp("compiled"))


@slow
def test_an_already_compiled_model_is_recognised_not_compiled_again(
    pytester: pytest.Pytester, vww_compiled: VelaResult, edited: Path
) -> None:
    compiled = edited / "vww_compiled.tflite"
    shutil.copyfile(str(vww_compiled.compiled_model), compiled)
    result, models = _run(pytester, f"--qcheck-model={compiled}", "--qcheck-suite=ethos-u55",
                          "--qcheck-set", "tflm_ops.max=0", "-k", f"vela or {MEMORY_K} or tflm_ops")
    model = models[compiled.name]
    checks = _checks(model)

    vela = checks["vela[ethos-u55-128]"]
    assert (vela["passed"], vela["value"]) == (True, 0)
    assert "already compiled for Ethos-U: 1 NPU custom op(s), 0 CPU op(s)" in vela["message"]
    assert model["vela"]["ethos-u55-128"]["already_compiled"] is True
    assert not (pytester.path / "qcheck-out").exists() or not list((pytester.path / "qcheck-out").glob("*_vela"))
    for name in ("sram", "flash", "npu_weights", "inference_time"):
        assert checks[f"{name}[ethos-u55-128]"]["passed"] is None
        assert "already compiled" in checks[f"{name}[ethos-u55-128]"]["message"]
    # A Cortex-M without the NPU cannot run it: its one operator is the custom "ethos-u".
    assert checks["tflm_ops"]["passed"] is False
    assert "custom op 'ethos-u' x1: needs the Ethos-U NPU" in checks["tflm_ops"]["message"]
    result.assert_outcomes(passed=1, failed=1, skipped=4)


@slow
def test_cortex_m_suite_on_real_tflite_micro_models(pytester: pytest.Pytester) -> None:
    result, models = _run(pytester, f"--qcheck-model={VWW}", f"--qcheck-model={MICRO_SPEECH}",
                          "--qcheck-suite=cortex-m", "-k", "tflm_ops or arena or size")

    # The arenas tflite-micro 0.dev20261023182759 allocates, as a separate call of it reports them
    # (tests/test_tflm_runtime.py checks them against such a call on every run).
    for name, arena in [(VWW.name, 103680), (MICRO_SPEECH.name, 7584)]:
        checks = _checks(models[name])
        assert (checks["tflm_ops"]["passed"], checks["tflm_ops"]["value"]) == (True, 0)
        assert (checks["arena"]["passed"], checks["arena"]["value"]) == (True, arena)
        assert checks["size"]["passed"] is True
        assert models[name]["tflm"]["unsupported"] == []
    assert "AddDepthwiseConv2D()" in _checks(models[MICRO_SPEECH.name])["tflm_ops"]["message"]
    assert models[MICRO_SPEECH.name]["tflm"]["resolver"] == [
        "AddDepthwiseConv2D", "AddFullyConnected", "AddReshape", "AddSoftmax"]
    result.assert_outcomes(passed=6)


@slow
def test_suite_options_override_the_vela_configuration(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", board="""
        extends = "ethos-u65"
        [checks.vela]
        memory_mode = "Dedicated_Sram_384KB"
        [checks.sram]
        system_config = "No_Such_System"
    """)
    result, models = _run(pytester, f"--qcheck-model={HELLO}", "--qcheck-suite=board.toml", "-k", "vela or sram")
    checks = _checks(models[HELLO.name])

    assert checks["vela[ethos-u65-256]"]["passed"] is True
    assert models[HELLO.name]["vela"]["ethos-u65-256"]["memory_mode"] == "Dedicated_Sram_384KB"
    assert checks["sram[ethos-u65-256]"]["status"] == "error"  # Vela could not compile: not measured
    assert "No_Such_System" in checks["sram[ethos-u65-256]"]["message"]
    result.assert_outcomes(passed=1, errors=1)


# --- hand-made models ---------------------------------------------------------------------------


def _tensor(index: int, name: str, dtype: str, shape: tuple[int, ...], *, constant: bool = False,
            data_bytes: int = 0) -> TensorInfo:
    return TensorInfo(0, index, name, dtype, shape, shape, (), (), 0, constant, data_bytes)


def _model(tensors: list[TensorInfo], operators: list[OperatorInfo]) -> ModelInfo:
    """Subgraph 0 of ``tensors``: the first is the input, the one named "out" (else the first)
    the output."""
    output = next((t for t in tensors if t.name == "out"), tensors[0])
    return ModelInfo(0, tuple(tensors), tuple(operators), (IOInfo(tensors[0].name, tensors[0]),),
                     (IOInfo(output.name, output),))
