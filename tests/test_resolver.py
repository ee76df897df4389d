"""The settings resolver as a table: what each entry point's model runs with, and where each
setting comes from (the README's precedence). Pure: no pytest run, no TensorFlow."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from qcheck.config import DEFAULT_ACCELERATOR, DEFAULT_CALIBRATION_SAMPLES, DEFAULT_TIMEOUT, CommandLine, ImageOptions, \
    Quantization, RunSpec, Settings
from qcheck.project import ProjectConfig
from qcheck.resolver import (
    FLAGS,
    Invocation,
    UsageProblem,
    accelerators,
    calibration_samples,
    command_line,
    named_model_spec,
    resolve,
    run_spec,
    suite_extends,
)
from qcheck.suites import CheckSpec, Suite, load_suite

HERE = Path("/work/repo")
PROJECT = ProjectConfig(models=("/p/p.keras",), data="/p/p.npz", calibration="/p/cal.npz", calibration_samples=100,
                        reference="/p/float.keras", suite="cortex-m", accelerators=("ethos-u55-64",), out="/p/out",
                        cache_dir="/p/cache")


def invocation(project: ProjectConfig = ProjectConfig(), **options: Any) -> Invocation:
    return Invocation({f"qcheck_{key}": value for key, value in options.items()}, HERE, project)


# -- the run's settings: command line > [tool.qcheck] > built-in ----------------------------------

SETTINGS_TABLE: list[tuple[str, dict[str, Any], ProjectConfig, dict[str, Any]]] = [
    ("built-in defaults", {}, ProjectConfig(),
     {"models": (), "data": None, "calibration_samples": DEFAULT_CALIBRATION_SAMPLES, "suite": "default",
      "accelerators": (), "out_dir": Path("qcheck-out"), "timeout": DEFAULT_TIMEOUT, "cache_dir": None,
      "io_dtype": "uint8", "stateful": "reset", "images": ImageOptions(), "overrides": {}}),
    ("the project's", {}, PROJECT,
     {"models": ("/p/p.keras",), "data": "/p/p.npz", "calibration": "/p/cal.npz", "calibration_samples": 100,
      "reference": "/p/float.keras", "suite": "cortex-m", "accelerators": ("ethos-u55-64",),
      "out_dir": Path("/p/out"), "cache_dir": Path("/p/cache")}),
    ("the command line over the project's",
     {"model": ["/c/c.keras"], "data": "c.npz", "calibration": "c_cal.npz", "calibration_samples": 7,
      "reference": "c_float.keras", "suite": "ethos-u85", "accelerator": "ethos-u85-512, ethos-u55-32",
      "out": "c_out", "cache_dir": "/c/cache", "io": "int8", "stateful": "keep", "timeout": 5.0}, PROJECT,
     {"models": ("/c/c.keras",), "data": "c.npz", "calibration": "c_cal.npz", "calibration_samples": 7,
      "reference": "c_float.keras", "suite": "ethos-u85", "accelerators": ("ethos-u85-512", "ethos-u55-32"),
      "out_dir": Path("c_out"), "cache_dir": Path("/c/cache"), "io_dtype": "int8", "stateful": "keep",
      "timeout": 5.0}),
    ("no cache beats every cache folder", {"no_cache": True, "cache_dir": "/c/cache"}, PROJECT, {"cache_dir": None}),
    ("threshold flags and --qcheck-set, in the check's units",
     {"max_accuracy_drop": "2%", "max_inference_ms": "5", "set": ["vela.memory_mode=Shared_Sram", "size.max=3"]},
     ProjectConfig(),
     {"overrides": {"accuracy_drop": {"max": "2%"}, "inference_time": {"max": "5ms"},
                    "vela": {"memory_mode": "Shared_Sram"}, "size": {"max": 3}}}),
    ("image options", {"image_size": "96x64", "image_scale": 2.0, "image_offset": -1.0, "image_mode": "L"},
     ProjectConfig(), {"images": ImageOptions((96, 64), 2.0, -1.0, "L")}),
    ("int16 activations from the command line", {"activations": "int16"}, ProjectConfig(),
     {"activations": "int16", "quantization": Quantization("int16")}),
]


@pytest.mark.parametrize(("case", "options", "project", "expected"), SETTINGS_TABLE, ids=[r[0] for r in SETTINGS_TABLE])
def test_settings_table(case: str, options: dict[str, Any], project: ProjectConfig, expected: dict[str, Any]) -> None:
    settings, _ = resolve(invocation(project, **options))
    assert {key: getattr(settings, key) for key in expected} == expected


def test_the_suite_is_the_resolved_one_with_the_command_lines_thresholds_over_it() -> None:
    settings, suite = resolve(invocation(PROJECT, max_size="300KB"))
    assert suite.name == "cortex-m"
    assert suite.checks["size"].max == 300_000
    assert settings.quantization == suite.quantization_for(None)


def test_the_command_line_is_kept_apart_for_suite_files_and_markers() -> None:
    settings, _ = resolve(invocation(PROJECT, accelerator="ethos-u85-256", calibration_samples=9))
    assert settings.command_line == CommandLine(None, ("ethos-u85-256",), 9, {})
    # The project's accelerators are in the run's settings, but not in what the command line set.
    assert resolve(invocation(PROJECT))[0].command_line == CommandLine()
    # A suite path is made absolute against the folder pytest started in, for suite files elsewhere.
    assert command_line(invocation(suite="team/suite.toml")).suite == str(HERE / "team" / "suite.toml")
    assert command_line(invocation(suite="ethos-u85")).suite == "ethos-u85"


USAGE_PROBLEMS = [
    ({"accelerator": "ethos-u99"}, "unknown accelerator 'ethos-u99'; choose from"),
    ({"calibration_samples": 0}, "--qcheck-calibration-samples must be at least 1"),
    ({"timeout": float("inf")}, "--qcheck-timeout must be a positive number of seconds, not inf"),
    ({"timeout": -1.0}, "--qcheck-timeout must be a positive number of seconds, not -1"),
    ({"image_size": "96"}, "--qcheck-image-size expects HxW, e.g. 96x96, not '96'"),
    ({"set": ["accuracy_drop=2%"]}, "--qcheck-set expects CHECK.KEY=VALUE, got 'accuracy_drop=2%'"),
    ({"suite": "no-such-suite"}, "no-such-suite"),
    ({"activations": "int16", "io": "uint8"}, "--qcheck-io=uint8 does not apply to int16 activations"),
]


@pytest.mark.parametrize(("options", "words"), USAGE_PROBLEMS, ids=[w for _, w in USAGE_PROBLEMS])
def test_usage_problems(options: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageProblem) as info:
        resolve(invocation(**options))
    assert words in str(info.value)


# -- what a model runs with, per entry point ------------------------------------------------------

SETTINGS = Settings(models=("/c/c.keras",), data="/c/c.npz", calibration="/c/cal.npz", calibration_samples=7,
                    reference=None, io_dtype="int8", images=ImageOptions((8, 8)), stateful="keep",
                    quantization=Quantization("int16"))


def test_a_command_line_model_runs_with_the_runs_settings() -> None:
    assert run_spec(SETTINGS, "/c/c.keras") == RunSpec(
        model="/c/c.keras", data="/c/c.npz", calibration="/c/cal.npz", calibration_samples=7, io_dtype="int8",
        images=ImageOptions((8, 8)), stateful="keep", quantization=Quantization("int16"))


def test_every_run_spec_field_but_the_model_comes_from_the_settings_of_the_same_name() -> None:
    # Adding a RunSpec field is one line there and one here in Settings: run_spec matches them by name.
    settings_fields = {f.name for f in fields(Settings)}
    assert {f.name for f in fields(RunSpec)} - {"model"} <= settings_fields


def test_run_spec_refuses_what_a_run_spec_has_not() -> None:
    with pytest.raises(TypeError, match="no field 'date'"):
        run_spec(SETTINGS, "m.keras", date="x")


NAMED_TABLE: list[tuple[str, dict[str, Any], ProjectConfig, dict[str, Any]]] = [
    ("its own data", {"data": "/m/m.npz", "calibration": "/m/cal.npz", "reference": "/m/f.keras"}, PROJECT,
     {"data": "/m/m.npz", "calibration": "/m/cal.npz", "reference": "/m/f.keras"}),
    ("else the project's, never the command line's", {"data": None, "calibration": None, "reference": None},
     PROJECT, {"data": "/p/p.npz", "calibration": "/p/cal.npz", "reference": "/p/float.keras"}),
    ("no data anywhere", {"data": None, "calibration": None, "reference": None}, ProjectConfig(),
     {"data": None, "calibration": None, "reference": None}),
]


@pytest.mark.parametrize(("case", "own", "project", "expected"), NAMED_TABLE, ids=[r[0] for r in NAMED_TABLE])
def test_a_model_named_by_a_suite_file_or_marker(case: str, own: dict[str, Any], project: ProjectConfig,
                                                  expected: dict[str, Any]) -> None:
    spec = named_model_spec(SETTINGS, "/m/m.keras", project=project, **own)
    assert {key: getattr(spec, key) for key in expected} == expected
    # The run's conversion settings still apply to it.
    assert (spec.model, spec.io_dtype, spec.quantization, spec.images) == (
        "/m/m.keras", "int8", Quantization("int16"), ImageOptions((8, 8)))


@pytest.mark.parametrize(("cli", "file_value", "project", "expected"), [
    (CommandLine(calibration_samples=7), 50, PROJECT, 7),
    (CommandLine(), 50, PROJECT, 50),
    (CommandLine(), None, PROJECT, 100),
    (CommandLine(), None, ProjectConfig(), DEFAULT_CALIBRATION_SAMPLES),
])
def test_calibration_samples(cli: CommandLine, file_value: int | None, project: ProjectConfig, expected: int) -> None:
    assert calibration_samples(cli, file_value, project) == expected


@pytest.mark.parametrize(("cli", "extends", "project", "expected"), [
    (CommandLine(suite="ethos-u85"), "ethos-u55", PROJECT, "ethos-u85"),
    (CommandLine(), "ethos-u55", PROJECT, "ethos-u55"),
    (CommandLine(), None, PROJECT, "cortex-m"),
    (CommandLine(), None, ProjectConfig(), "default"),
    (CommandLine(), "", PROJECT, ""),  # as written: the suite loader says what is wrong with it
])
def test_what_a_suite_file_extends(cli: CommandLine, extends: str | None, project: ProjectConfig, expected: str) -> None:
    assert suite_extends(cli, extends, project) == expected


# -- accelerators ---------------------------------------------------------------------------------

U85_VELA = Suite("t", "t", "", {"vela": CheckSpec("vela", options={"accelerator": "ethos-u85-256"}),
                                "sram": CheckSpec("sram"),
                                "flash": CheckSpec("flash", options={"accelerator": "ethos-u65-256"})})
NO_VELA = Suite("t", "t", "", {"sram": CheckSpec("sram")})

ACCELERATOR_TABLE: list[tuple[str, str, Suite, dict[str, Any], tuple[str, ...]]] = [
    ("the command line first", "flash", U85_VELA,
     {"command_line": ("ethos-u55-32",), "own_table": True, "project": ("ethos-u55-64",)}, ("ethos-u55-32",)),
    ("a suite file's own table over the project", "flash", U85_VELA, {"own_table": True, "project": ("ethos-u55-64",)},
     ("ethos-u65-256",)),
    ("the project over the suite", "flash", U85_VELA, {"project": ("ethos-u55-64",)}, ("ethos-u55-64",)),
    ("the check's table", "flash", U85_VELA, {}, ("ethos-u65-256",)),
    ("a memory check without one: the vela table's", "sram", U85_VELA, {}, ("ethos-u85-256",)),
    ("no vela table: the default", "sram", NO_VELA, {}, (DEFAULT_ACCELERATOR,)),
]


@pytest.mark.parametrize(("case", "check", "suite", "given", "expected"), ACCELERATOR_TABLE,
                         ids=[r[0] for r in ACCELERATOR_TABLE])
def test_accelerators(case: str, check: str, suite: Suite, given: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert accelerators(suite.checks[check], suite, **given) == expected


def test_a_memory_check_without_an_accelerator_compiles_for_the_vela_tables() -> None:
    suite = load_suite("default").with_overrides({"vela": {"accelerator": "ethos-u85-256"}, "sram": {"max": "1MB"}},
                                                 "test")
    assert "accelerator" not in suite.checks["sram"].options  # the table sets only a budget
    assert accelerators(suite.checks["sram"], suite) == (suite.checks["vela"].options["accelerator"],) == (
        "ethos-u85-256",)


# -- the flags ------------------------------------------------------------------------------------

def test_every_flag_is_named_after_its_dest() -> None:
    dests = [flag.dest for flag in FLAGS]
    assert len(dests) == len(set(dests))
    for flag in FLAGS:
        assert flag.dest.startswith("qcheck_") and flag.name == "--" + flag.dest.replace("_", "-")
        assert flag.kwargs()["dest"] == flag.dest


def test_the_declared_ini_keys_are_the_ones_the_project_reads() -> None:
    from qcheck.project import INI_KEYS as READ
    from qcheck.resolver import INI_KEYS as DECLARED

    assert [key for key, _, _ in DECLARED] == list(READ.values())
