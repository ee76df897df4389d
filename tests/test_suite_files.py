"""qcheck_*.toml suite files: parsing, paths, items and every error a user can make in one."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REAL, touch, write

from qcheck.config import CommandLine, RunSpec, Settings
from qcheck.errors import QcheckError
from qcheck.project import ProjectConfig
from qcheck.suite_files import SuiteFile, read_suite_file

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"


def read(path: Path, *, project: ProjectConfig | None = None, cli: CommandLine | None = None) -> SuiteFile:
    return read_suite_file(path, path.name, Settings(), project or ProjectConfig(), cli or CommandLine())


def error(path: Path) -> str:
    with pytest.raises(QcheckError) as info:
        read(path)
    return str(info.value)


# --- what a file runs ------------------------------------------------------------------------------

def test_paths_are_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = touch(tmp_path / "models" / "kws.keras")
    data = touch(tmp_path / "data" / "val.npz")
    cal = touch(tmp_path / "data" / "cal.npz")
    reference = touch(tmp_path / "models" / "float.keras")
    path = write(tmp_path / "suites" / "qcheck_kws.toml", """
        model = "../models/kws.keras"
        data = "../data/val.npz"
        calibration = "../data/cal.npz"
        calibration_samples = 50
        reference = "../models/float.keras"
    """)
    monkeypatch.chdir(tmp_path / "data")  # the working directory must not matter
    (written, spec), = read(path).models
    assert written == "../models/kws.keras"
    assert spec == RunSpec(str(model), str(data), str(cal), 50, str(reference))


def test_models_list_gives_one_item_per_model_and_check(tmp_path: Path) -> None:
    touch(tmp_path / "a.tflite")
    touch(tmp_path / "sub" / "b.tflite")
    path = write(tmp_path / "qcheck_two.toml", """
        models = ["a.tflite", "sub/b.tflite"]
        [checks.accuracy_drop]
        enabled = false
    """)
    names = [name for name, _ in read(path).plan(CommandLine(), ProjectConfig())]
    assert "size[a.tflite]" in names and "size[sub/b.tflite]" in names
    assert "vela[a.tflite-ethos-u55-128]" in names
    assert not [n for n in names if n.startswith("accuracy_drop")]
    assert len(names) == 2 * len(read(path).suite.enabled())


def test_file_thresholds_and_the_lines_of_their_tables(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    path = write(tmp_path / "qcheck_m.toml", """
        model = "m.tflite"
        extends = "default"

        [checks.size]   # the budget
        max = "300KB"
        [checks."saturation"]
        max = "2%"
    """)
    suite_file = read(path)
    assert suite_file.suite.checks["size"].max == 300_000
    assert suite_file.suite.checks["saturation"].max == pytest.approx(0.02)
    assert suite_file.suite.checks["accuracy_drop"].max == pytest.approx(0.03)  # from default
    assert suite_file.lines == {"size": 4, "saturation": 6}
    assert suite_file.suite.name == "qcheck_m"


def test_extends_a_suite_relative_to_the_file(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    write(tmp_path / "suites" / "team.toml", 'extends = "default"\n[checks.size]\nmax = "1MB"\n')
    path = write(tmp_path / "models" / "qcheck_m.toml", 'model = "../m.tflite"\nextends = "../suites/team.toml"\n')
    assert read(path).suite.checks["size"].max == 1_000_000


# --- errors: each names the file and the key --------------------------------------------------------

@pytest.mark.parametrize(("text", "words"), [
    ('model = "m.tflite"\nmodle = "m.tflite"\n', "unknown key 'modle' (did you mean 'model'?)"),
    ('model = "m.tflite"\n[checks.acuracy_drop]\nmax = "2%"\n',
     "[checks.acuracy_drop]: unknown check 'acuracy_drop' (did you mean 'accuracy_drop'?)"),
    ('model = "m.tflite"\n[checks.size]\nmax = "3%"\n', "checks.size.max: '3%': unit '%' does not fit a bytes threshold"),
    ('model = "m.tflite"\n[checks.accuracy_drop]\nmax = "lots"\n', "checks.accuracy_drop.max: 'lots' is not a quantity"),
    ('model = "m.tflite"\n[checks.vela]\nacelerator = "ethos-u55-64"\n',
     "[checks.vela]: unknown option 'acelerator' (did you mean 'accelerator'?)"),
    ('model = "m.tflite"\n[checks.vela]\nenabled = "no"\n', "checks.vela.enabled must be true or false"),
    ('model = "m.tflite"\nextends = "defualt"\n', "extends: no built-in suite named 'defualt' (did you mean 'default'?)"),
    ('model = "m.tflite"\nextends = 3\n', "'extends' must be a suite name or a path"),
    ('model = "m.tflite"\nchecks = 3\n', "'checks' must be a table"),
    ('model = "m.tflite"\n[checks]\nsize = 3\n', "'checks.size' must be a table"),
    ('model = "m.tflite"\n[checks.vela]\nsystem_config = 128\n', "checks.vela.system_config must be a str, not 128"),
    ('model = "m.tflite"\n[checks.saturation]\nscope = "al"\n', "checks.saturation.scope: must be one of 'io', 'all', not 'al'"),
    ('[checks.size]\nmax = "1MB"\n', "names no model"),
    ('model = "m.tflite"\nmodels = ["m.tflite"]\n', "sets both 'model' and 'models'; keep one"),
    ('model = 3\n', "model must be a path (a string), not 3"),
    ('models = "m.tflite"\n', "models must be a non-empty list of paths"),
    ('models = []\n', "models must be a non-empty list of paths"),
    ('models = ["m.tflite", 4]\n', "models[1] must be a path (a string), not 4"),
    ('models = ["m.tflite", "m.tflite"]\n', "models: 'm.tflite' is listed twice"),
    ('model = "missing.keras"\n', "model: 'missing.keras' does not exist"),
    ('models = ["m.tflite", "gone.tflite"]\n', "models[1]: 'gone.tflite' does not exist"),
    ('model = "m.tflite"\ndata = "val.npz"\n', "data: 'val.npz' does not exist"),
    ('model = "m.tflite"\ncalibration = "cal.npz"\n', "calibration: 'cal.npz' does not exist"),
    ('model = "m.tflite"\nreference = "float.keras"\n', "reference: 'float.keras' does not exist"),
    ('model = "m.tflite"\ncalibration_samples = 0\n', "calibration_samples must be a whole number of at least 1, not 0"),
    ('model = "m.tflite"\ncalibration_samples = true\n', "calibration_samples must be a whole number"),
    ('model = "m.tflite"\n[checks.size\n', "is not valid TOML"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, words: str) -> None:
    touch(tmp_path / "m.tflite")
    path = write(tmp_path / "qcheck_bad.toml", text)
    message = error(path)
    assert message.startswith("qcheck_bad.toml: ")
    assert words in message


def test_missing_paths_say_where_they_were_looked_for(tmp_path: Path) -> None:
    path = write(tmp_path / "sub" / "qcheck_bad.toml", 'model = "../models/kws.keras"\n')
    assert f"(looked for {(tmp_path / 'models' / 'kws.keras').resolve()})" in error(path)


def test_unknown_check_lists_the_known_ones(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    path = write(tmp_path / "qcheck_bad.toml", 'model = "m.tflite"\n[checks.sizes]\nmax = 1\n')
    message = error(path)
    assert "did you mean 'size'?" in message
    assert "hint: known checks:" in message and "robustness" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "qcheck_bad.toml"
    path.write_bytes(b'model = "\xff"\n')
    assert "qcheck_bad.toml: is not UTF-8 text" in error(path)


def test_a_file_that_extends_itself(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    path = write(tmp_path / "qcheck_loop.toml", 'model = "m.tflite"\nextends = "qcheck_loop.toml"\n')
    assert f"{path.resolve()}: extends itself through {path.resolve()} -> {path.resolve()}" in error(path)


def test_an_error_in_an_extended_suite_names_that_suite(tmp_path: Path) -> None:
    touch(tmp_path / "m.tflite")
    team = write(tmp_path / "team.toml", '[checks.size]\nmax = "big"\n')
    path = write(tmp_path / "qcheck_m.toml", 'model = "m.tflite"\nextends = "team.toml"\n')
    message = error(path)
    assert message.startswith(f"{team.resolve()}: checks.size.max: 'big' is not a quantity")


# --- as pytest collects and runs them -------------------------------------------------------------

def test_pytest_collects_suite_files_with_node_ids_at_the_file(pytester: pytest.Pytester) -> None:
    write(pytester.path / "models" / "qcheck_vww.toml", f"""
        model = "{VWW}"
        [checks.size]
        max = "100KB"
    """)
    write(pytester.path / "models" / "not_a_suite.toml", 'model = "nothing"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert f"models/qcheck_vww.toml::size[{VWW}]" in ids
    assert f"models/qcheck_vww.toml::vela[{VWW}-ethos-u55-128]" in ids
    assert not [line for line in ids if "not_a_suite" in line or line.startswith("qcheck::")]


def test_a_failing_item_points_at_its_table_in_the_file(pytester: pytest.Pytester) -> None:
    write(pytester.path / "qcheck_vww.toml", f"""
        model = "{VWW}"

        [checks.size]
        max = "100KB"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "size or fully_quantized", "-rA")
    result.assert_outcomes(passed=1, failed=1, deselected=5)
    result.stdout.fnmatch_lines([
        f"*_ size[[]{VWW}[]] _*",
        "size failed: 325.48 KiB > max 97.66 KiB.*",
        f"FAILED qcheck_vww.toml::size[[]{VWW}[]]*",
    ])
    assert "Traceback" not in result.stdout.str()


def test_item_location_is_the_line_of_its_table(pytester: pytest.Pytester) -> None:
    write(pytester.path / "qcheck_vww.toml", f'model = "{VWW}"\n\n[checks.size]\nmax = "100KB"\n')
    pytester.makeconftest("""
        def pytest_collection_modifyitems(items):
            for item in items:
                print("LOCATION", item.location)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q", "-s", "-k", "size or vela")
    result.stdout.fnmatch_lines([
        f"LOCATION ('qcheck_vww.toml', 2, 'size[[]{VWW}[]]')",
        f"LOCATION ('qcheck_vww.toml', None, 'vela[[]{VWW}-ethos-u55-128[]]')",
    ])


def test_errors_are_collection_errors_of_their_file_and_the_rest_still_runs(pytester: pytest.Pytester) -> None:
    write(pytester.path / "qcheck_good.toml", f'model = "{VWW}"\n')
    write(pytester.path / "suites" / "qcheck_typo.toml", f'model = "{VWW}"\n[checks.acuracy_drop]\nmax = "2%"\n')
    write(pytester.path / "suites" / "qcheck_nomodel.toml", '[checks.size]\nmax = "1MB"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors", "-k", "size")
    result.assert_outcomes(passed=1, deselected=6, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR collecting suites/qcheck_nomodel.toml*",
        "suites/qcheck_nomodel.toml: names no model",
        '  hint: add model = "path/to/model.keras" (or models = [[]...[]]), relative to this file',
        "*ERROR collecting suites/qcheck_typo.toml*",
        "suites/qcheck_typo.toml: [[]checks.acuracy_drop[]]: unknown check 'acuracy_drop' "
        "(did you mean 'accuracy_drop'?)",
    ])
    assert "Traceback" not in result.stdout.str() and "qcheck/suites.py" not in result.stdout.str()


def test_suite_files_and_command_line_models_run_side_by_side(pytester: pytest.Pytester) -> None:
    hello = REAL / "tflm" / "hello_world_int8.tflite"
    write(pytester.path / "qcheck_vww.toml", f'model = "{VWW}"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={hello}", "--co", "-q", "-k", "size")
    result.stdout.fnmatch_lines([f"qcheck_vww.toml::size[[]{VWW}[]]", f"qcheck::size[[]{hello}[]]"])


def test_suite_files_under_xdist(pytester: pytest.Pytester) -> None:
    kws = REAL / "mlperf_tiny" / "kws_ref_model.tflite"
    write(pytester.path / "qcheck_vww.toml", f'model = "{VWW}"\n[checks.size]\nmax = "100KB"\n')
    write(pytester.path / "qcheck_kws.toml", f'model = "{kws}"\n[checks.size]\nmax = "100KB"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2", "-k", "size", "--qcheck-json=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"FAILED qcheck_vww.toml::size[[]{VWW}[]]*"])
    assert '"threshold": 100000.0' in (pytester.path / "r.json").read_text()


def test_suite_files_under_xdist_without_any_qcheck_option(pytester: pytest.Pytester) -> None:
    # Nothing on the command line asks for qcheck: the controller, which collects nothing,
    # meets qcheck only in the workers' reports, and still prints the table of results.
    kws = REAL / "mlperf_tiny" / "kws_ref_model.tflite"
    write(pytester.path / "qcheck_vww.toml", f'model = "{VWW}"\n[checks.size]\nmax = "100KB"\n')
    write(pytester.path / "qcheck_kws.toml", f'model = "{kws}"\n[checks.size]\nmax = "100KB"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2", "-k", "size")
    result.assert_outcomes(passed=1, failed=1)
    # Models appear in the order their first result arrived, which the workers decide.
    for model_line in (f"{kws} (from qcheck_kws.toml): PASS*",
                       f"{VWW} (from qcheck_vww.toml): FAIL (1 of 1 checks failed)"):
        result.stdout.fnmatch_lines(["*= qcheck =*", model_line])
