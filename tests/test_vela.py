"""qcheck.vela against the real Vela and real models from other projects (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from tflite_edits import with_mismatched_weights, with_unknown_last_op, without_declared_inputs

from qcheck.errors import StepFailed
from qcheck.vela import (
    ACCELERATORS,
    NO_REASON,
    VelaConfig,
    VelaResult,
    _cpu_reasons,
    _failure_excerpt,
    is_vela_compiled,
    run_vela,
    vela_version,
)

REAL = Path(__file__).resolve().parent / "real"
VWW_INT8 = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
VWW_FLOAT = REAL / "mlperf_tiny" / "vww_96_float.tflite"
TOYCAR_HYBRID = REAL / "mlperf_tiny" / "model_ToyCar_quant.tflite"
HELLO_INT8 = REAL / "tflm" / "hello_world_int8.tflite"
HELLO_FLOAT = REAL / "tflm" / "hello_world_float.tflite"

KIB = 1024
BYTES_TOLERANCE = 300

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def vww_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vww_int8")


@pytest.fixture(scope="module")
def vww_int8(vww_out: Path) -> VelaResult:
    """vww_96_int8 compiled once for the Ethos-U55-128 defaults."""
    return run_vela(VWW_INT8, VelaConfig.default_for("ethos-u55-128"), vww_out)


@slow
def test_vww_int8_runs_entirely_on_the_npu(vww_int8: VelaResult) -> None:
    assert vww_int8.cpu_ops == 0
    assert vww_int8.cpu_operators == ()
    # The model's own 31 operators (Vela lowers them into more); its RESHAPE Vela folds away.
    assert vww_int8.npu_ops == 30 and len(vww_int8.operators) == 31
    assert [op.op for op in vww_int8.removed_operators] == ["RESHAPE"]
    assert all(op.target in ("NPU", "removed") and op.reason == "" for op in vww_int8.operators)


@slow
def test_vww_int8_memory_matches_vela_summary(vww_int8: VelaResult) -> None:
    assert vww_int8.sram_bytes == pytest.approx(72.73 * KIB, abs=BYTES_TOLERANCE)
    assert vww_int8.flash_bytes == pytest.approx(74.22 * KIB, abs=BYTES_TOLERANCE)
    assert vww_int8.flash_kind == "off-chip flash"
    assert vww_int8.npu_weights_bytes is not None and vww_int8.npu_weights_bytes > 0
    assert vww_int8.inference_time_s is not None and 0.0 < vww_int8.inference_time_s < 1.0


@slow
def test_result_records_config_and_version(vww_int8: VelaResult) -> None:
    assert vww_int8.config == VelaConfig(
        "ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram", "Arm/vela.ini"
    )
    assert vww_int8.vela_version == vela_version()
    assert vela_version().split(".")[0].isdigit()


@slow
def test_outputs_land_in_out_dir_under_the_model_stem(vww_int8: VelaResult, vww_out: Path) -> None:
    names = {path.name for path in vww_out.iterdir()}
    assert names == {
        "vww_96_int8_vela.tflite",
        "vww_96_int8_per-layer.csv",
        "vww_96_int8_summary.csv",
        "vww_96_int8_vela.log",
        "vww_96_int8_debug.xml",
    }
    assert vww_int8.compiled_model == str(vww_out / "vww_96_int8_vela.tflite")


@slow
def test_to_dict_is_json_with_the_documented_keys(vww_int8: VelaResult) -> None:
    data = json.loads(json.dumps(vww_int8.to_dict()))
    assert set(data) == {
        "accelerator", "system_config", "memory_mode", "vela_version", "cpu_ops", "npu_ops",
        "removed_ops", "cpu_operators", "removed_operators", "sram_bytes", "flash_bytes", "flash_kind",
        "npu_weights_bytes", "inference_time_s",
    }  # fmt: skip
    assert data["accelerator"] == "ethos-u55-128"
    assert (data["cpu_ops"], data["npu_ops"], data["removed_ops"], data["cpu_operators"]) == (0, 30, 1, [])


@slow
def test_is_vela_compiled_tells_compiled_from_source(vww_int8: VelaResult) -> None:
    assert vww_int8.compiled_model is not None
    assert is_vela_compiled(Path(vww_int8.compiled_model).read_bytes())
    assert not is_vela_compiled(VWW_INT8.read_bytes())


def test_is_vela_compiled_is_false_for_non_models() -> None:
    assert not is_vela_compiled(b"")
    assert not is_vela_compiled(os.urandom(4096))


@slow
def test_float_model_falls_back_to_cpu_with_vela_reasons(tmp_path: Path) -> None:
    result = run_vela(VWW_FLOAT, VelaConfig.default_for("ethos-u55-128"), tmp_path)

    assert result.npu_ops == 0
    assert result.cpu_ops == 31
    assert all("Float32" in op.reason for op in result.cpu_operators)
    assert result.inference_time_s is None
    assert not is_vela_compiled(Path(str(result.compiled_model)).read_bytes())
    softmax = [op for op in result.cpu_operators if op.op == "SOFTMAX"]
    assert [op.name for op in softmax] == ["Identity"]


@slow
def test_hybrid_quantized_model_runs_on_cpu(tmp_path: Path) -> None:
    result = run_vela(TOYCAR_HYBRID, VelaConfig.default_for("ethos-u55-128"), tmp_path)

    assert (result.cpu_ops, result.npu_ops) == (10, 0)
    assert {op.op for op in result.cpu_operators} == {"FULLY_CONNECTED"}
    assert all(op.reason and op.reason != NO_REASON for op in result.cpu_operators)
    assert result.to_dict()["cpu_operators"][0].keys() == {"op", "name", "index", "label", "reason"}


@slow
@pytest.mark.parametrize(
    ("accelerator", "system_config", "memory_mode", "flash_kind"),
    [
        ("ethos-u55-64", "Ethos_U55_High_End_Embedded", "Shared_Sram", "off-chip flash"),
        ("ethos-u65-512", "Ethos_U65_High_End", "Dedicated_Sram", "DRAM"),
        ("ethos-u85-1024", "Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram", "DRAM"),
    ],
)
def test_each_family_compiles_with_its_default_config(
    tmp_path: Path, accelerator: str, system_config: str, memory_mode: str, flash_kind: str
) -> None:
    config = VelaConfig.default_for(accelerator)
    assert (config.system_config, config.memory_mode) == (system_config, memory_mode)

    result = run_vela(VWW_INT8, config, tmp_path)

    assert result.cpu_ops == 0 and result.npu_ops > 0
    assert result.flash_kind == flash_kind
    assert result.sram_bytes and result.flash_bytes
    assert is_vela_compiled(Path(str(result.compiled_model)).read_bytes())


def test_default_for_takes_overrides() -> None:
    config = VelaConfig.default_for("ethos-u65-256", memory_mode="Dedicated_Sram_512KB")
    assert config == VelaConfig(
        "ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_512KB", "Arm/vela.ini"
    )


@pytest.mark.parametrize("make", [VelaConfig.default_for, lambda acc: VelaConfig(acc, "S", "M")])
def test_unknown_accelerator_lists_the_valid_ones(make: object) -> None:
    with pytest.raises(ValueError, match="ethos-u99-1") as caught:
        make("ethos-u99-1")  # type: ignore[operator]
    assert all(name in str(caught.value) for name in ACCELERATORS)


@slow
def test_vela_failure_raises_step_failed_naming_the_model(tmp_path: Path) -> None:
    model = tmp_path / "x.tflite"
    model.write_bytes(os.urandom(2048))
    out = tmp_path / "out"

    with pytest.raises(StepFailed) as caught:
        run_vela(model, VelaConfig.default_for("ethos-u55-128"), out)

    message = str(caught.value)
    assert str(model) in message
    assert "exit code 1" in message
    assert "Compilation failed" in message  # Vela's own words, not the traceback frames
    assert 'File "' not in message
    assert [path.name for path in out.iterdir()] == ["x_vela.log"]


@slow
def test_unknown_system_config_raises_step_failed(tmp_path: Path) -> None:
    config = VelaConfig("ethos-u55-128", "No_Such_System", "Shared_Sram")
    with pytest.raises(StepFailed, match="No_Such_System"):
        run_vela(HELLO_INT8, config, tmp_path)


@slow
def test_timeout_raises_step_failed(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"hello_world_int8\.tflite.*did not finish"):
        run_vela(HELLO_INT8, VelaConfig.default_for("ethos-u55-128"), tmp_path, timeout=0.01)


def test_missing_model_raises_step_failed(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"nowhere\.tflite"):
        run_vela(tmp_path / "nowhere.tflite", VelaConfig.default_for("ethos-u55-128"), tmp_path)


@slow
def test_odd_file_names_stay_inside_out_dir(tmp_path: Path) -> None:
    source = tmp_path / "in" / "my model (v2);'rm -rf'.tflite"
    source.parent.mkdir()
    shutil.copyfile(HELLO_INT8, source)
    out = tmp_path / "out"

    result = run_vela(source, VelaConfig.default_for("ethos-u55-128"), out)

    assert result.npu_ops > 0
    assert sorted(path.name for path in out.iterdir()) == [
        "my_model_v2_rm_-rf_debug.xml",
        "my_model_v2_rm_-rf_per-layer.csv",
        "my_model_v2_rm_-rf_summary.csv",
        "my_model_v2_rm_-rf_vela.log",
        "my_model_v2_rm_-rf_vela.tflite",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", "out"]
    assert [path.name for path in source.parent.iterdir()] == [source.name]


@slow
def test_user_config_file_given_relative_to_the_callers_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ethosu.vela

    builtin = Path(ethosu.vela.__file__).parents[1] / "config_files" / "Arm" / "vela.ini"
    shutil.copyfile(builtin, tmp_path / "mine.ini")
    monkeypatch.chdir(tmp_path)
    config = VelaConfig("ethos-u55-128", "Ethos_U55_Deep_Embedded", "Shared_Sram", "./mine.ini")

    result = run_vela(HELLO_INT8, config, tmp_path / "out")

    assert result.npu_ops > 0 and result.cpu_ops == 0


def test_reasons_are_read_from_vela_3_wording() -> None:
    # Vela 3.x cannot be installed next to 5.x; this is its output for a float and an
    # unsupported model, as its tflite_supported_operators printed it.
    console = "\n".join(
        [
            "Warning: CONV_2D 'conv/Relu' is not supported on the NPU. Placing on CPU instead",
            " - Tensors must be of type: int16, int32, int8, uint8",
            "   Tensor 'input' has data type: float32",
            "Info: CUMSUM 'cumsum' is a CPU only op",
            "Warning: Unsupported TensorFlow Lite semantics for MEAN 'mean'. "
            "Placing on CPU instead",
            " - Input tensor must be at least 2D",
            "Network summary for net",
        ]
    )
    assert _cpu_reasons(console) == {
        "conv/Relu": "Tensors must be of type: int16, int32, int8, uint8 "
        "Tensor 'input' has data type: float32",
        "cumsum": "CUMSUM is a CPU only op",
        "mean": "Unsupported TensorFlow Lite semantics: Input tensor must be at least 2D",
    }


def test_reasons_are_read_from_vela_5_wording() -> None:
    console = "\n".join(
        [
            "",
            "Warning (supported operators) operator: SOFTMAX, ofm: 'Identity'",
            "Reason: Operation has tensor with unsupported DataType Float32 (dense)",
            'Feature-map dataTypes must be one of {"INT8"}',
            "",
            "Warning (supported operators) operator: RELU, ofm: 'a,b'",
            "Reason: first",
            "",
            "Warning (supported operators) operator: RELU, ofm: 'a,b'",
            "Reason: second",
            "",
            "Performance for NPU Graph net",
        ]
    )
    assert _cpu_reasons(console) == {
        "Identity": "Operation has tensor with unsupported DataType Float32 (dense) "
        'Feature-map dataTypes must be one of {"INT8"}',
        "a,b": "first; second",
    }


@slow
@pytest.mark.parametrize("path", [VWW_FLOAT, HELLO_FLOAT, TOYCAR_HYBRID], ids=lambda p: p.name)
def test_published_float_models_fall_back_to_the_cpu_rather_than_fail(tmp_path: Path, path: Path) -> None:
    result = run_vela(path, VelaConfig.default_for("ethos-u55-128"), tmp_path)
    assert result.npu_ops == 0 and result.cpu_ops > 0
    assert result.sram_bytes == 0 and result.inference_time_s is None


@slow
def test_a_float_model_vela_rejects_gives_vela_message_with_its_details(tmp_path: Path) -> None:
    model = without_declared_inputs(HELLO_FLOAT, tmp_path / "noinput.tflite")

    with pytest.raises(StepFailed) as caught:
        run_vela(model, VelaConfig.default_for("ethos-u55-128"), tmp_path / "out")

    message = str(caught.value)
    assert "failed with exit code 1" in message
    assert "'serving_default_dense_input:0' Does not have valid TFLite Semantics." in message
    assert "Constant tensors must not have empty buffers" in message  # an indented detail line
    assert 'File "' not in message and "^^^" not in message


@slow
def test_a_vela_crash_is_reported_with_its_signal(tmp_path: Path) -> None:
    model = with_mismatched_weights(HELLO_INT8, tmp_path / "mismatch.tflite")

    with pytest.raises(StepFailed, match=r"mismatch\.tflite: Vela \(ethos-u55-128, .*\) crashed with SIGFPE"):
        run_vela(model, VelaConfig.default_for("ethos-u55-128"), tmp_path / "out")


@slow
def test_an_operator_vela_cannot_name_is_named_from_the_model(tmp_path: Path) -> None:
    model = with_unknown_last_op(HELLO_INT8, tmp_path / "mixed.tflite")

    result = run_vela(model, VelaConfig.default_for("ethos-u55-128"), tmp_path / "out")

    assert (result.npu_ops, result.cpu_ops) == (3, 1)
    assert [(op.op, op.name, op.reason) for op in result.cpu_operators] == [
        ("STABLEHLO_TANH", "appended", "Unsupported opType")]


def test_failure_excerpt_keeps_the_indented_lines_of_the_exception() -> None:
    stderr = "\n".join([
        "Traceback (most recent call last):",
        '  File "vela.py", line 137, in process_regor',
        "    compiled_model = regor.compile(accelerator)",
        "                     ^^^^^^^^^^^^^^^^^^^^^^^^^^",
        "RuntimeError: Compilation failed: Error: 'x' Does not have valid TFLite Semantics.",
        " - Constant tensors must not have empty buffers",
        "Failed to parse TFLite file",
    ])
    assert _failure_excerpt("", stderr).splitlines() == [
        "  RuntimeError: Compilation failed: Error: 'x' Does not have valid TFLite Semantics.",
        "   - Constant tensors must not have empty buffers",
        "  Failed to parse TFLite file",
    ]
