"""Where each setting comes from: command line > marker > suite file > pyproject > built-in defaults.

Every rule is tested on the pure resolution first (fast, exhaustive, Hypothesis for thresholds),
then once through pytest as users run it, to prove the wiring.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REAL, touch, write
from hypothesis import given, settings
from hypothesis import strategies as st

from qcheck.config import DEFAULT_CALIBRATION_SAMPLES, CommandLine, RunSpec, Settings
from qcheck.errors import QcheckError
from qcheck.markers import MarkerRequest, marked_suite, read_marker
from qcheck.project import ProjectConfig, find_pyproject, project_config
from qcheck.resolver import run_spec
from qcheck.suite_files import SuiteFile, read_suite_file
from qcheck.suites import load_suite

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
KWS = REAL / "mlperf_tiny" / "kws_ref_model.tflite"
AD01 = REAL / "mlperf_tiny" / "ad01_int8.tflite"
HELLO = REAL / "tflm" / "hello_world_int8.tflite"


def suite_file(path: Path, project: ProjectConfig | None = None, cli: CommandLine | None = None) -> SuiteFile:
    return read_suite_file(path, path.name, Settings(), project or ProjectConfig(), cli or CommandLine())


def marker(**kwargs: Any) -> pytest.Mark:
    mark: pytest.Mark = pytest.mark.qcheck(**kwargs).mark
    return mark


# --- [tool.qcheck] and the ini keys --------------------------------------------------------------

def test_tool_qcheck_paths_are_relative_to_the_pyproject(tmp_path: Path) -> None:
    pyproject = write(tmp_path / "repo" / "pyproject.toml", """
        [tool.qcheck]
        models = ["models/a.keras", "../b.tflite"]
        data = "data/val.npz"
        calibration = "data/cal.npz"
        calibration_samples = 100
        reference = "models/float.keras"
        suite = "suites/team.toml"
        accelerator = "ethos-u55-64, ethos-u85-256"
        out = "build/qcheck"
        cache_dir = ".qcheck-cache"
    """)
    repo = pyproject.parent
    assert project_config(pyproject, {}, None) == ProjectConfig(
        models=(str(repo / "models" / "a.keras"), str(tmp_path / "b.tflite")),
        data=str(repo / "data" / "val.npz"),
        calibration=str(repo / "data" / "cal.npz"),
        calibration_samples=100,
        reference=str(repo / "models" / "float.keras"),
        suite=str(repo / "suites" / "team.toml"),
        accelerators=("ethos-u55-64", "ethos-u85-256"),
        out=str(repo / "build" / "qcheck"),
        cache_dir=str(repo / ".qcheck-cache"),
    )


def test_a_builtin_suite_name_stays_a_name_and_accelerators_take_a_list(tmp_path: Path) -> None:
    pyproject = write(tmp_path / "pyproject.toml", """
        [tool.qcheck]
        suite = "ethos-u55"
        accelerator = ["ethos-u55-64"]
        models = "one.keras"
    """)
    config = project_config(pyproject, {}, None)
    assert config.suite == "ethos-u55"
    assert config.accelerators == ("ethos-u55-64",)
    assert config.models == (str(tmp_path / "one.keras"),)


def test_ini_keys_are_relative_to_the_ini_file(tmp_path: Path) -> None:
    ini = tmp_path / "pytest.ini"
    config = project_config(None, {"qcheck_models": [tmp_path / "m.keras"], "qcheck_data": "d/val.npz",
                                   "qcheck_suite": "default", "qcheck_accelerator": "ethos-u65-256",
                                   "qcheck_out": "out", "qcheck_cache_dir": "", "qcheck_calibration": ""}, ini)
    assert config == ProjectConfig(models=(str(tmp_path / "m.keras"),), data=str(tmp_path / "d" / "val.npz"),
                                   suite="default", accelerators=("ethos-u65-256",), out=str(tmp_path / "out"))


def test_no_configuration_means_built_in_defaults(tmp_path: Path) -> None:
    assert project_config(None, {}, None) == ProjectConfig()
    assert project_config(write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n"), {}, None) == ProjectConfig()


def test_find_pyproject(tmp_path: Path) -> None:
    pyproject = touch(tmp_path / "pyproject.toml")
    ini = touch(tmp_path / "pytest.ini")
    assert find_pyproject(tmp_path, pyproject) == pyproject
    assert find_pyproject(tmp_path, ini) == pyproject  # [tool.qcheck] still applies beside a pytest.ini
    assert find_pyproject(tmp_path / "elsewhere", None) is None


@pytest.mark.parametrize(("table", "words"), [
    ('modles = ["a.keras"]', "[tool.qcheck]: unknown key 'modles' (did you mean 'models'?)"),
    ("models = []", "[tool.qcheck] models must be a list of model paths"),
    ("models = [3]", "[tool.qcheck] models must be a list of model paths"),
    ("data = 3", "[tool.qcheck] data must be a non-empty string, not 3"),
    ('suite = ""', "[tool.qcheck] suite must be a non-empty string"),
    ("calibration_samples = 0", "[tool.qcheck] calibration_samples must be a whole number of at least 1"),
    ("accelerator = 55", "[tool.qcheck] accelerator must be a name or a list of names"),
])
def test_tool_qcheck_errors_name_the_file_and_key(tmp_path: Path, table: str, words: str) -> None:
    pyproject = write(tmp_path / "pyproject.toml", f"[tool.qcheck]\n{table}\n")
    with pytest.raises(QcheckError) as info:
        project_config(pyproject, {}, None)
    assert str(info.value).startswith(f"{pyproject}: ")
    assert words in str(info.value)


def test_a_setting_in_both_tool_qcheck_and_the_ini_file_is_an_error(tmp_path: Path) -> None:
    pyproject = write(tmp_path / "pyproject.toml", '[tool.qcheck]\ndata = "a.npz"\n')
    with pytest.raises(QcheckError) as info:
        project_config(pyproject, {"qcheck_data": "b.npz"}, tmp_path / "pytest.ini")
    assert "[tool.qcheck] data is also set by qcheck_data in" in str(info.value)
    assert "keep one" in str(info.value)


def test_the_command_line_over_the_project_for_the_runs_own_models(pytester: pytest.Pytester) -> None:
    from qcheck.plugin import SESSION_KEY

    write(pytester.path / "pyproject.toml", """
        [tool.qcheck]
        models = ["p.keras"]
        data = "p.npz"
        calibration = "p_cal.npz"
        calibration_samples = 100
        reference = "p_float.keras"
        suite = "cortex-m"
        accelerator = "ethos-u55-64"
        out = "p_out"
        cache_dir = "p_cache"
    """)
    root = pytester.path
    project = pytester.parseconfigure("-p", "no:cacheprovider").stash[SESSION_KEY]
    assert project.settings == Settings(
        models=(str(root / "p.keras"),), data=str(root / "p.npz"), calibration=str(root / "p_cal.npz"),
        calibration_samples=100, reference=str(root / "p_float.keras"), suite="cortex-m",
        accelerators=("ethos-u55-64",), out_dir=Path(root / "p_out"), overrides={},
        cache_dir=root / "p_cache")
    assert project.suite.checks == load_suite("cortex-m").checks
    cli = pytester.parseconfigure(
        "-p", "no:cacheprovider", "--qcheck-model=c.keras", "--qcheck-data=c.npz", "--qcheck-calibration=c_cal.npz",
        "--qcheck-calibration-samples=7", "--qcheck-reference=c_float.keras", "--qcheck-suite=ethos-u85",
        "--qcheck-accelerator=ethos-u85-512", "--qcheck-out=c_out", "--qcheck-cache-dir=c_cache",
    ).stash[SESSION_KEY]
    assert cli.settings == Settings(
        models=("c.keras",), data="c.npz", calibration="c_cal.npz", calibration_samples=7,
        reference="c_float.keras", suite="ethos-u85", accelerators=("ethos-u85-512",), out_dir=Path("c_out"),
        overrides={}, cache_dir=Path("c_cache").resolve(),
        command_line=CommandLine(suite="ethos-u85", accelerators=("ethos-u85-512",), calibration_samples=7))
    assert cli.suite.checks == load_suite("ethos-u85").checks


def test_built_in_defaults_for_the_runs_own_models(pytester: pytest.Pytester) -> None:
    from qcheck.plugin import SESSION_KEY, session_of

    config = pytester.parseconfigure("-p", "no:cacheprovider")
    assert SESSION_KEY not in config.stash  # nothing asked for qcheck: made on first use
    qsession = session_of(config)
    assert qsession.settings == Settings(overrides={})
    assert qsession.suite.checks == load_suite("default").checks


# --- suite files over the project, the command line over both -------------------------------------

def test_suite_a_file_extends(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    plain = write(tmp_path / "qcheck_plain.toml", 'model = "m.tflite"\n')
    explicit = write(tmp_path / "qcheck_explicit.toml", 'model = "m.tflite"\nextends = "ethos-u85"\n')

    def names(f: SuiteFile) -> set[str]:
        return set(f.suite.checks)

    # built-in default
    assert suite_file(plain).suite.checks == load_suite("default").checks
    # pyproject > built-in default
    project = ProjectConfig(suite="cortex-m")
    assert suite_file(plain, project).suite.checks == load_suite("cortex-m").checks
    # suite file > pyproject
    assert suite_file(explicit, project).suite.checks == load_suite("ethos-u85").checks
    # command line > suite file
    cli = CommandLine(suite="ethos-u65")
    assert suite_file(explicit, project, cli).suite.checks == load_suite("ethos-u65").checks
    assert "tflm_ops" in names(suite_file(plain, project)) and "tflm_ops" not in names(suite_file(explicit, project))


def test_command_line_suite_replaces_the_base_not_the_files_own_tables(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    path = write(tmp_path / "qcheck_m.toml", 'model = "m.tflite"\nextends = "default"\n[checks.size]\nmax = "500KB"\n')
    resolved = suite_file(path, cli=CommandLine(suite="cortex-m")).suite
    assert resolved.checks["size"].max == 500_000  # the file's own table, over cortex-m's 1 MiB
    assert resolved.checks["arena"] == load_suite("cortex-m").checks["arena"]


def test_thresholds_of_a_suite_file(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    write(tmp_path / "team.toml", 'extends = "default"\n[checks.size]\nmax = "1MB"\n[checks.saturation]\nmax = "5%"\n')
    path = write(tmp_path / "qcheck_m.toml", 'model = "m.tflite"\n[checks.size]\nmax = "500KB"\n')
    project = ProjectConfig(suite=str(tmp_path / "team.toml"))
    checks = suite_file(path, project).suite.checks
    assert checks["size"].max == 500_000  # suite file > pyproject
    assert checks["saturation"].max == pytest.approx(0.05)  # pyproject > built-in default
    assert checks["accuracy_drop"].max == pytest.approx(0.03)  # built-in default
    cli = CommandLine(overrides={"size": {"max": "2MB"}})
    assert suite_file(path, project, cli).suite.checks["size"].max == 2_000_000  # command line > suite file


def test_accelerator_of_a_suite_files_checks(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    own = write(tmp_path / "qcheck_own.toml", 'model = "m.tflite"\n[checks.vela]\naccelerator = "ethos-u65-256"\n')
    plain = write(tmp_path / "qcheck_plain.toml", 'model = "m.tflite"\n')

    def variants(path: Path, project: ProjectConfig, cli: CommandLine) -> set[str]:
        return {p.variant for _, p in suite_file(path, project, cli).plan(cli, project) if p.spec.name == "vela"}

    nothing, project = ProjectConfig(), ProjectConfig(accelerators=("ethos-u55-64",))
    assert variants(plain, nothing, CommandLine()) == {"ethos-u55-128"}  # the default suite's
    assert variants(plain, project, CommandLine()) == {"ethos-u55-64"}  # pyproject > built-in
    assert variants(own, project, CommandLine()) == {"ethos-u65-256"}  # suite file > pyproject
    cli = CommandLine(accelerators=("ethos-u85-256", "ethos-u55-32"))
    assert variants(own, project, cli) == {"ethos-u85-256", "ethos-u55-32"}  # command line > suite file


def test_data_of_a_suite_files_models(tmp_path: Path) -> None:
    for name in ("m.tflite", "file.npz", "file_cal.npz", "float.keras"):
        touch(tmp_path / name)
    plain = write(tmp_path / "qcheck_plain.toml", 'model = "m.tflite"\n')
    own = write(tmp_path / "qcheck_own.toml", 'model = "m.tflite"\ndata = "file.npz"\n'
                                              'calibration = "file_cal.npz"\nreference = "float.keras"\n')
    project = ProjectConfig(data="/p/val.npz", calibration="/p/cal.npz", reference="/p/float.keras")

    def spec(path: Path, project: ProjectConfig) -> RunSpec:
        return suite_file(path, project).models[0][1]

    assert (spec(plain, ProjectConfig()).data, spec(plain, ProjectConfig()).calibration) == (None, None)
    assert (spec(plain, project).data, spec(plain, project).calibration, spec(plain, project).reference) == (
        "/p/val.npz", "/p/cal.npz", "/p/float.keras")  # pyproject
    assert (spec(own, project).data, spec(own, project).calibration, spec(own, project).reference) == (
        str(tmp_path / "file.npz"), str(tmp_path / "file_cal.npz"), str(tmp_path / "float.keras"))  # file


def test_calibration_samples_of_a_suite_files_models(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    plain = write(tmp_path / "qcheck_plain.toml", 'model = "m.tflite"\n')
    own = write(tmp_path / "qcheck_own.toml", 'model = "m.tflite"\ncalibration_samples = 50\n')

    def samples(path: Path, project: ProjectConfig, cli: CommandLine) -> int:
        return int(suite_file(path, project, cli).models[0][1].calibration_samples)

    assert samples(plain, ProjectConfig(), CommandLine()) == DEFAULT_CALIBRATION_SAMPLES
    assert samples(plain, ProjectConfig(calibration_samples=100), CommandLine()) == 100
    assert samples(own, ProjectConfig(calibration_samples=100), CommandLine()) == 50
    assert samples(own, ProjectConfig(calibration_samples=100), CommandLine(calibration_samples=10)) == 10


# --- markers --------------------------------------------------------------------------------------

def test_a_marker_model_and_its_data_are_relative_to_the_test_file(tmp_path: Path) -> None:
    model = touch(tmp_path / "models" / "kws.tflite")
    data = touch(tmp_path / "data" / "val.npz")
    request = read_marker(marker(model="../models/kws.tflite", data="../data/val.npz", size="1MB"),
                          tmp_path / "tests", "here")
    assert request == MarkerRequest(str(model), "../models/kws.tflite", str(data), None, None, {"size": {"max": "1MB"}})


def test_marker_data_over_pyproject_data_and_models_over_the_command_lines(tmp_path: Path) -> None:
    from qcheck.markers import parametrization

    model, data = touch(tmp_path / "m.tflite"), touch(tmp_path / "own.npz")
    settings = Settings(models=("cli.tflite",), data="cli.npz")
    project = ProjectConfig(data="/p/val.npz")

    class Node:
        path = tmp_path / "test_x.py"
        nodeid = "test_x.py::test"

        def __init__(self, mark: pytest.Mark | None) -> None:
            self.mark = mark

        def get_closest_marker(self, name: str) -> pytest.Mark | None:
            return self.mark

    unmarked = parametrization(Node(None), settings, project)
    assert unmarked == ([run_spec(settings, "cli.tflite")], ["cli.tflite"])
    thresholds_only = parametrization(Node(marker(size="1MB")), settings, project)
    assert thresholds_only == unmarked
    (spec,), ids = parametrization(Node(marker(model="m.tflite")), settings, project)
    assert isinstance(spec, RunSpec)
    assert (spec.model, spec.data, ids) == (str(model), "/p/val.npz", ["m.tflite"])  # pyproject data
    (spec,), _ = parametrization(Node(marker(model="m.tflite", data="own.npz")), settings, project)
    assert isinstance(spec, RunSpec)
    assert spec.data == str(data)  # the marker's own


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"modle": "m.tflite"}, "unknown argument 'modle' (did you mean 'model'?)"),
    ({"acuracy_drop": "2%"}, "unknown argument 'acuracy_drop' (did you mean 'accuracy_drop'?)"),
    ({"accuracy_drop": "lots"}, "checks.accuracy_drop.max: 'lots' is not a quantity"),
    ({"size": "2%"}, "unit '%' does not fit a bytes threshold"),
    ({"vela": {"acelerator": "ethos-u55-64"}}, "unknown option 'acelerator' (did you mean 'accelerator'?)"),
    ({"data": "m.tflite"}, "data= needs model="),
    ({"model": "gone.keras"}, "model: 'gone.keras' does not exist"),
    ({"model": 3}, "model must be a path, not 3"),
])
def test_marker_errors(tmp_path: Path, kwargs: dict[str, Any], words: str) -> None:
    touch(tmp_path / "m.tflite")
    with pytest.raises(QcheckError) as info:
        read_marker(marker(**kwargs), tmp_path, "@pytest.mark.qcheck on test_x.py::test")
    assert str(info.value).startswith("@pytest.mark.qcheck on test_x.py::test: ")
    assert words in str(info.value)


def test_marker_takes_keywords_only(tmp_path: Path) -> None:
    with pytest.raises(QcheckError, match="takes keyword arguments only"):
        read_marker(pytest.mark.qcheck("m.keras").mark, tmp_path, "here")


# --- every layer at once, for any thresholds ---------------------------------------------------------

size = st.one_of(st.none(), st.integers(1, 10**7))


@settings(max_examples=50, deadline=None)
@given(project=size, file=size, marked=size, cli=size)
def test_the_first_layer_that_sets_a_threshold_wins(project: int | None, file: int | None, marked: int | None,
                                                    cli: int | None) -> None:
    cli_overrides = {"size": {"max": cli}} if cli is not None else {}
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        touch(here / "m.tflite")
        write(here / "team.toml", 'extends = "default"\n' + (f"[checks.size]\nmax = {project}\n" if project else ""))
        path = write(here / "qcheck_m.toml", 'model = "m.tflite"\n' + (f"[checks.size]\nmax = {file}\n" if file else ""))
        config = ProjectConfig(suite=str(here / "team.toml"))
        from_file = suite_file(path, config, CommandLine(overrides=cli_overrides)).suite.checks["size"].max
        run_suite = load_suite(str(here / "team.toml")).with_overrides(cli_overrides, "the command line")
    from_marker = marked_suite(run_suite, {"size": {"max": marked}} if marked is not None else {}, cli_overrides,
                               "marker").checks["size"].max
    # suite-file items: command line > suite file > pyproject > built-in default (no budget)
    assert from_file == next((v for v in (cli, file, project) if v is not None), None)
    # tests with a marker: command line > marker > pyproject > built-in default
    assert from_marker == next((v for v in (cli, marked, project) if v is not None), None)


# --- through pytest ------------------------------------------------------------------------------

@pytest.fixture
def repo(pytester: pytest.Pytester) -> Path:
    """A repository with every layer: [tool.qcheck], two suite files and a marked test."""
    root = pytester.path
    write(root / "pyproject.toml", f"""
        [tool.qcheck]
        models = ["{HELLO}"]
        suite = "suites/team.toml"
        accelerator = "ethos-u55-64"
        out = "build/qcheck"
    """)
    write(root / "suites" / "team.toml", 'extends = "default"\n[checks.size]\nmax = "1MB"\n')
    write(root / "models" / "qcheck_vww.toml", f"""
        model = "{VWW}"
        extends = "../suites/team.toml"
        [checks.size]
        max = "500KB"
        [checks.vela]
        accelerator = "ethos-u65-256"
    """)
    write(root / "models" / "qcheck_kws.toml", f'model = "{KWS}"\n')
    write(root / "tests" / "test_api.py", f"""
        import os
        import pytest
        import qcheck

        PAIRS = os.environ.get("EXPECTED", "marked=0,unmarked=0").split(",")
        EXPECTED = {{k: float(v) for k, v in (pair.split("=") for pair in PAIRS)}}

        @pytest.mark.qcheck(model="{AD01}", size="400KB")
        def test_marked(qcheck_suite, qcheck_quantized):
            assert qcheck_suite.checks["size"].max == EXPECTED["marked"]
            assert qcheck.run_check("size", qcheck_quantized).threshold == EXPECTED["marked"]

        def test_unmarked(qcheck_suite):
            assert qcheck_suite.checks["size"].max == EXPECTED["unmarked"]
    """)
    return root


def thresholds(root: Path) -> dict[str, float]:
    report = json.loads((root / "r.json").read_text())
    return {Path(m["model"]).name: next(c["threshold"] for c in m["checks"] if c["name"] == "size")
            for m in report["models"]}


def test_thresholds_through_pytest(repo: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPECTED", "marked=400000,unmarked=1000000")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "size or test_", "--qcheck-json=r.json")
    result.assert_outcomes(passed=5, deselected=18)
    # pyproject suite for its own models and a file without thresholds; the file's own table
    assert thresholds(repo) == {"hello_world_int8.tflite": 1e6, "kws_ref_model.tflite": 1e6,
                                "vww_96_int8.tflite": 5e5}
    monkeypatch.setenv("EXPECTED", "marked=2000000,unmarked=2000000")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "size or test_", "--qcheck-json=r.json",
                                "--qcheck-max-size=2MB")
    result.assert_outcomes(passed=5, deselected=18)
    assert set(thresholds(repo).values()) == {2e6}  # the command line over every layer


def test_suite_and_accelerator_through_pytest(repo: Path, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q", "-k", "vela or tflm_ops")
    result.stdout.fnmatch_lines_random([
        f"models/qcheck_kws.toml::vela[[]{KWS}-ethos-u55-64[]]",  # pyproject accelerator
        f"models/qcheck_vww.toml::vela[[]{VWW}-ethos-u65-256[]]",  # the file's own table
        f"qcheck::vela[[]{HELLO}-ethos-u55-64[]]",
    ])
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q", "-k", "vela or tflm_ops",
                                "--qcheck-accelerator=ethos-u85-256", "--qcheck-suite=cortex-m")
    out = result.stdout.str()
    assert f"models/qcheck_vww.toml::vela[{VWW}-ethos-u85-256]" not in out  # cortex-m has no vela ...
    assert f"models/qcheck_vww.toml::tflm_ops[{VWW}]" in out  # ... it replaced what the file extends
    assert f"models/qcheck_kws.toml::tflm_ops[{KWS}]" in out and f"qcheck::tflm_ops[{HELLO}]" in out
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q", "-k", "vela",
                                "--qcheck-accelerator=ethos-u85-256")
    result.stdout.fnmatch_lines_random([f"models/qcheck_vww.toml::vela[[]{VWW}-ethos-u85-256[]]",
                                        f"models/qcheck_kws.toml::vela[[]{KWS}-ethos-u85-256[]]"])


def test_data_goes_with_whoever_names_the_model(pytester: pytest.Pytester) -> None:
    root = pytester.path
    for name in ("project", "file", "cli", "marker"):
        np.savez(root / f"{name}.npz", x=np.zeros((4, 3, 3, 3), np.float32))
    write(root / "pyproject.toml", f'[tool.qcheck]\nmodels = ["{HELLO}"]\ndata = "project.npz"\n')
    write(root / "qcheck_plain.toml", f'model = "{VWW}"\n')
    write(root / "qcheck_own.toml", f'model = "{KWS}"\ndata = "file.npz"\n')
    write(root / "test_marked.py", f"""
        import pytest

        @pytest.mark.qcheck(model="{AD01}")
        def test_project_data(qcheck_data):
            assert qcheck_data.path.endswith("project.npz")

        @pytest.mark.qcheck(model="{AD01}", data="marker.npz")
        def test_own_data(qcheck_data):
            assert qcheck_data.path.endswith("marker.npz")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "saturation or test_", "--qcheck-data=cli.npz")
    result.assert_outcomes(passed=2, errors=3, deselected=18)  # data that does not fit: not measured
    result.stdout.fnmatch_lines_random([
        f"*{root / 'project.npz'}: does not fit the model {VWW}*",  # pyproject
        f"*{root / 'file.npz'}: does not fit the model {KWS}*",  # suite file > pyproject
        f"*cli.npz: does not fit the model {HELLO}*",  # command line > pyproject, for the project's models
    ])
    # the command line's models replace the project's
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q", "-k", "size", f"--qcheck-model={AD01}")
    assert f"qcheck::size[{AD01}]" in result.stdout.str() and f"qcheck::size[{HELLO}]" not in result.stdout.str()


def test_out_and_cache_folders(pytester: pytest.Pytester) -> None:
    root = pytester.path
    np.savez(root / "hello.npz", x=np.linspace(0, 6, 20, dtype=np.float32).reshape(20, 1))
    write(root / "pyproject.toml", f"""
        [tool.qcheck]
        models = ["{HELLO}"]
        data = "hello.npz"
        out = "build/qcheck"
        cache_dir = "build/cache"
    """)
    pytester.runpytest("-p", "no:cacheprovider", "-k", "saturation").assert_outcomes(passed=1, deselected=6)
    assert (root / "build" / "qcheck" / "hello_world_int8_quantization_info.json").is_file()
    assert any((root / "build" / "cache").iterdir())
    pytester.runpytest("-p", "no:cacheprovider", "-k", "saturation", "--qcheck-out=cli-out",
                       "--qcheck-cache-dir=cli-cache").assert_outcomes(passed=1, deselected=6)
    assert (root / "cli-out" / "hello_world_int8_quantization_info.json").is_file()
    assert any((root / "cli-cache").iterdir())


def test_ini_keys_still_work_and_clash_with_tool_qcheck(pytester: pytest.Pytester) -> None:
    root = pytester.path
    write(root / "conf" / "pytest.ini", "[pytest]\nqcheck_models = ../models/hello.tflite\n")
    (root / "models").mkdir()
    (root / "models" / "hello.tflite").write_bytes(HELLO.read_bytes())
    result = pytester.runpytest("-p", "no:cacheprovider", "-c", "conf/pytest.ini", "--rootdir", str(root),
                                "--co", "-q", "-k", "size")
    result.stdout.fnmatch_lines([f"qcheck::size[[]{root / 'models' / 'hello.tflite'}[]]"])
    write(root / "pyproject.toml", '[tool.qcheck]\nmodels = ["models/hello.tflite"]\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "-c", "conf/pytest.ini", "--rootdir", str(root), "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*[[]tool.qcheck[]] models is also set by qcheck_models in*pytest.ini; keep one"])


def test_a_bad_tool_qcheck_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write(pytester.path / "pyproject.toml", '[tool.qcheck]\nmodles = ["m.keras"]\n')
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pyproject.toml: [[]tool.qcheck[]]: unknown key 'modles' (did you mean 'models'?)*"])
    assert "Traceback" not in result.stderr.str()
