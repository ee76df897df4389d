"""Suite files as an adversary (or a careless hand) writes them: issue 13, items 7 and 17.

Whatever a ``qcheck_*.toml``, a ``--qcheck-suite`` file, an ``extends`` target or ``[tool.qcheck]``
holds, the only outcomes are a valid suite or a QcheckError that names the file; in a pytest run,
an error of that file (never an INTERNALERROR), and the other files' checks still run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import REAL, write
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qcheck.config import CommandLine, Settings
from qcheck.errors import QcheckError
from qcheck.project import ProjectConfig, project_config
from qcheck.suite_files import read_suite_file
from qcheck.suites import load_suite

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
KWS = REAL / "mlperf_tiny" / "kws_ref_model.tflite"
DEEP = 3000  # levels, as the issue observed them

DEEP_VALUES = {
    "arrays": "[" * DEEP + "]" * DEEP,
    "inline_tables": "{a = " * DEEP + "1" + "}" * DEEP,
}


def deep_dotted(key: str) -> str:
    """A 3,000-level table made of dotted keys: the parser does not recurse, ``repr`` does."""
    return key + ".a" * DEEP + " = 1\n"


def read(path: Path) -> object:
    return read_suite_file(path, path.name, Settings(), ProjectConfig(), CommandLine())


def refused(path: Path, words: str, *, named: str | None = None) -> QcheckError:
    with pytest.raises(QcheckError) as info:
        read(path)
    assert info.value.path == (named or path.name), str(info.value)
    assert words in str(info.value)
    return info.value


# --- item 7: deep nesting, in each place a suite comes from --------------------------------------

@pytest.mark.parametrize("kind", sorted(DEEP_VALUES))
def test_deeply_nested_values_in_a_suite_file_are_its_error(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path / "qcheck_deep.toml", f'model = "{VWW}"\ndescription = {DEEP_VALUES[kind]}\n')
    refused(path, "nests arrays or inline tables too deeply to read")


@pytest.mark.parametrize("key", ["description", "checks.size", "model", "data"])
def test_deep_dotted_keys_in_a_suite_file_are_its_error(tmp_path: Path, key: str) -> None:
    path = write(tmp_path / "qcheck_deep.toml", f'model = "{VWW}"\n' * (key != "model") + deep_dotted(key))
    refused(path, "nests tables or arrays more than 16 levels deep (at " + key)


def test_deep_nesting_in_an_extended_suite_names_that_suite(tmp_path: Path) -> None:
    base = write(tmp_path / "base.toml", "description = " + DEEP_VALUES["arrays"] + "\n")
    path = write(tmp_path / "qcheck_x.toml", f'model = "{VWW}"\nextends = "base.toml"\n')
    refused(path, "too deeply", named=str(base))


def test_a_deep_suite_file_in_a_run_is_a_collection_error_of_that_file(pytester: pytest.Pytester) -> None:
    write(pytester.path / "qcheck_deep.toml", f'model = "{VWW}"\ndescription = {DEEP_VALUES["arrays"]}\n')
    write(pytester.path / "qcheck_dotted.toml", f'model = "{VWW}"\n' + deep_dotted("description"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q")
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out and "RecursionError" not in out, out[-3000:]
    result.stdout.fnmatch_lines_random([
        "qcheck_deep.toml: nests arrays or inline tables too deeply to read*",
        "qcheck_dotted.toml: nests tables or arrays more than 16 levels deep (at description.a.a.a*",
    ])


def test_a_deep_command_line_suite_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write(pytester.path / "deep.toml", "description = " + DEEP_VALUES["inline_tables"] + "\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "--qcheck-suite=deep.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: qcheck: {pytester.path / 'deep.toml'}: nests arrays or inline tables *"])


def test_deep_tool_qcheck_table_is_a_usage_error_naming_pyproject(pytester: pytest.Pytester) -> None:
    # (Brackets 3,000 deep in pyproject.toml end pytest itself, which reads the file first; dotted keys do not.)
    write(pytester.path / "pyproject.toml", "[tool.qcheck]\n" + deep_dotted("data"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out and "RecursionError" not in out, out[-3000:]
    result.stderr.fnmatch_lines([f"ERROR: qcheck: {pytester.path / 'pyproject.toml'}: nests tables or arrays "
                                 "more than 16 levels deep (at tool.qcheck.data.a.a*"])


def test_other_tools_tables_in_pyproject_may_nest_as_they_like(tmp_path: Path) -> None:
    pyproject = write(tmp_path / "pyproject.toml", deep_dotted("tool.other") + '[tool.qcheck]\nsuite = "ethos-u55"\n')
    assert project_config(pyproject, {}, None).suite == "ethos-u55"


# --- item 7: other hostile files -------------------------------------------------------------------

def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "base.toml")  # nobody ever writes to it: reading it would block forever
    path = write(tmp_path / "qcheck_x.toml", f'model = "{VWW}"\nextends = "base.toml"\n')
    error = refused(path, "is not a regular file (it is a FIFO); qcheck reads only regular files")
    assert str(tmp_path / "base.toml") in str(error)
    with pytest.raises(QcheckError, match="is not a regular file .it is a FIFO."):
        load_suite(str(tmp_path / "base.toml"))


def test_a_device_or_folder_is_not_a_suite(tmp_path: Path) -> None:
    (tmp_path / "folder.toml").mkdir()
    for target, kind in (("/dev/zero", "a character device"), (str(tmp_path / "folder.toml"), "a folder")):
        path = write(tmp_path / "qcheck_x.toml", f'model = "{VWW}"\nextends = "{target}"\n')
        refused(path, f"extends: {target}: is not a regular file (it is {kind})")


def test_a_huge_suite_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "qcheck_huge.toml"
    path.write_text(f'model = "{VWW}"\n' + "# padding\n" * 200_000, encoding="utf-8")  # 2 MB of comments
    refused(path, "is larger than 1024 KiB, too large for a qcheck configuration file")


def test_invalid_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / "qcheck_bytes.toml"
    path.write_bytes(b'# a suite\nmodel = "m\xff.tflite"\n')
    refused(path, "is not UTF-8 text (line 2 holds a byte that is not valid UTF-8)")


def test_a_long_extends_chain_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    for i in range(600):
        write(tmp_path / f"s{i}.toml", f'extends = "s{i + 1}.toml"\n')
    write(tmp_path / "s600.toml", 'description = "the end"\n')
    path = write(tmp_path / "qcheck_x.toml", f'model = "{VWW}"\nextends = "s0.toml"\n')
    error = refused(path, "extends a chain of more than 32 suites", named=str(tmp_path / "s30.toml"))
    assert "started at" in error.hint


def test_a_cycle_through_another_file_is_named(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'extends = "sub/b.toml"\n')
    write(tmp_path / "sub" / "b.toml", 'extends = "../a.toml"\n')
    with pytest.raises(QcheckError, match=r"extends itself through .*a\.toml -> .*b\.toml -> .*a\.toml"):
        load_suite(str(tmp_path / "a.toml"))


def test_extends_pointing_outside_at_a_file_that_is_not_a_suite_does_not_echo_it(tmp_path: Path) -> None:
    secret = write(tmp_path / "elsewhere" / "credentials.toml", 'token = "s3cr3t"\n[registry]\nkey = "hunter2"\n')
    passwd = write(tmp_path / "elsewhere" / "passwd", "root:x:0:0:root:/root:/bin/bash\n")
    for target, words in ((secret, "unknown key 'registry'"), (passwd, "is not valid TOML")):
        path = write(tmp_path / "repo" / "qcheck_x.toml", f'model = "{VWW}"\nextends = "../elsewhere/{target.name}"\n')
        error = refused(path, words, named=str(target))
        assert not [word for word in ("s3cr3t", "hunter2", "root:x") if word in str(error)], str(error)


@pytest.mark.parametrize("key", ["extends", "model", "data"])
def test_a_nul_in_a_path_is_named(tmp_path: Path, key: str) -> None:
    model = "" if key == "model" else f'model = "{VWW}"\n'
    path = write(tmp_path / "qcheck_x.toml", model + f'{key} = "a\\u0000b.toml"\n')
    refused(path, "is not a path (it holds a NUL character)")


def test_messages_show_a_huge_value_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path / "qcheck_x.toml", f'model = "{VWW}"\ncalibration_samples = "{"9" * 100_000}"\n')
    error = refused(path, "calibration_samples must be a whole number of at least 1, not '9999")
    assert len(str(error)) < 300


# --- item 7: Hypothesis ----------------------------------------------------------------------------

_KEYS = ["model", "models", "data", "calibration", "calibration_samples", "reference", "extends", "description",
         "checks", "size", "accuracy_drop", "vela", "max", "min", "enabled", "accelerator", "suite", "tool",
         "qcheck", "a"]
_SCALARS = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.sampled_from(["3%", "300KB", "1e999", "-5KB", "nan", "150%"]),
    st.text(max_size=20), st.sampled_from([str(VWW), "default", "ethos-u55", "/dev/zero", ".", "a/..", "x.toml"]),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), inner, max_size=4),
), max_leaves=20)
_DOCS = st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), _VALUES, max_size=6)


def toml_value(value: object) -> str:
    """``value`` written as TOML (inline forms only); strings are JSON's, which TOML mostly reads."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def toml_doc(doc: dict[str, object]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


def only_named_errors(source: str, load: Callable[[], object]) -> None:
    try:
        load()
    except QcheckError as exc:
        assert exc.path is not None, f"an error that names no file: {exc}"
        assert exc.path == source or Path(exc.path).is_absolute(), exc.path  # the file, or what it extends


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(doc=_DOCS)
@example(doc={"model": str(VWW), "extends": "a\x00.toml"})
@example(doc={"model": str(VWW), "description": {"a": [1, {"b": "c"}]}})
@example(doc={"models": [str(VWW), str(VWW)]})
def test_random_suite_documents_give_a_suite_or_a_named_error(tmp_path: Path, doc: dict[str, object]) -> None:
    path = tmp_path / "qcheck_h.toml"
    path.write_text(toml_doc(doc), encoding="utf-8")
    only_named_errors(path.name, lambda: read(path))
    only_named_errors(str(path), lambda: load_suite(str(path)))


@_SETTINGS
@given(data=st.binary(max_size=300) | st.builds(lambda d, cut: toml_doc(d).encode()[:cut], _DOCS, st.integers(0, 400)))
@example(data=b"description = " + b"[" * DEEP)
@example(data=b"[checks.size]\nmax = \xff\n")
def test_random_bytes_give_a_suite_or_a_named_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "qcheck_h.toml"
    path.write_bytes(data)
    only_named_errors(path.name, lambda: read(path))


@_SETTINGS
@given(table=_DOCS)
@example(table={"models": ["a\x00"]})
@example(table={"data": {"a": {"b": 1}}})
def test_random_tool_qcheck_tables_give_defaults_or_a_named_error(tmp_path: Path, table: dict[str, object]) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.qcheck]\n" + toml_doc(table), encoding="utf-8")
    only_named_errors(str(pyproject), lambda: project_config(pyproject, {}, None))


# --- item 17 (a): one broken suite file among good ones --------------------------------------------

def broken_and_good_files(root: Path) -> None:
    write(root / "qcheck_good.toml", f'model = "{VWW}"\n[checks.size]\nmax = "1MB"\n')
    write(root / "suites" / "qcheck_typo.toml", f'model = "{VWW}"\n[checks.acuracy_drop]\nmax = "2%"\n')


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_a_broken_suite_file_is_its_error_and_the_other_files_still_run(pytester: pytest.Pytester,
                                                                        xdist: list[str]) -> None:
    broken_and_good_files(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", *xdist, "-k", "size", "--qcheck-json=r.json")
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "Interrupted" not in result.stdout.str()
    result.stdout.fnmatch_lines([
        "*ERROR collecting suites/qcheck_typo.toml*",
        "suites/qcheck_typo.toml: [[]checks.acuracy_drop[]]: unknown check 'acuracy_drop' (did you mean*",
        "*= qcheck =*",
        f"{VWW}*: PASS (0 of 1 checks failed)",
        "qcheck: suites/qcheck_typo.toml did not run: it has an error (see ERROR collecting suites/qcheck_typo.toml above)",
    ])
    report = json.loads((pytester.path / "r.json").read_text())
    assert [m["model"] for m in report["models"]] == [str(VWW)]  # the good file's results are written
    assert report["passed"] is False  # and the report does not pass with a file that did not run
    (error,) = report["suite_file_errors"]
    assert error["file"] == "suites/qcheck_typo.toml"
    assert error["message"].startswith("suites/qcheck_typo.toml: [checks.acuracy_drop]: unknown check 'acuracy_drop'")


def test_a_broken_python_file_still_stops_the_run_as_pytest_does(pytester: pytest.Pytester) -> None:
    broken_and_good_files(pytester.path)
    pytester.makepyfile(test_broken="def test_x(:\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist", "-k", "size")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*Interrupted: 2 errors during collection*"])


# --- item 17 (b): results say which suite file they came from --------------------------------------

def test_the_same_model_in_two_suite_files_gives_two_labelled_tables(pytester: pytest.Pytester) -> None:
    write(pytester.path / "team_a" / "qcheck_a.toml", f'model = "{VWW}"\n[checks.size]\nmax = "1MB"\n')
    write(pytester.path / "team_b" / "qcheck_b.toml", f'model = "{VWW}"\n[checks.size]\nmax = "100KB"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist", "-k", "size", f"--qcheck-model={VWW}",
                                "--qcheck-max-size=2MB", "--qcheck-json=r.json", "--qcheck-html=r.html")
    result.assert_outcomes(passed=3)  # the command line's 2MB applies over both files' thresholds
    result.stdout.fnmatch_lines_random([
        f"{VWW} (from team_a/qcheck_a.toml): PASS (0 of 1 checks failed)",
        f"{VWW} (from team_b/qcheck_b.toml): PASS (0 of 1 checks failed)",
        f"{VWW}: PASS (0 of 1 checks failed)",
    ])
    report = json.loads((pytester.path / "r.json").read_text())
    entries = [(m["model"], m["suite"], m["suite_file"], [c["suite_file"] for c in m["checks"]])
               for m in report["models"]]
    assert entries == [
        (str(VWW), "default", "", [""]),
        (str(VWW), "team_a/qcheck_a.toml", "team_a/qcheck_a.toml", ["team_a/qcheck_a.toml"]),
        (str(VWW), "team_b/qcheck_b.toml", "team_b/qcheck_b.toml", ["team_b/qcheck_b.toml"]),
    ]
    html = (pytester.path / "r.html").read_text()
    assert "(from team_a/qcheck_a.toml)" in html and "(from team_b/qcheck_b.toml)" in html


def test_suite_file_thresholds_stay_with_their_file(pytester: pytest.Pytester) -> None:
    write(pytester.path / "qcheck_a.toml", f'model = "{VWW}"\n[checks.size]\nmax = "1MB"\n')
    write(pytester.path / "qcheck_b.toml", f'model = "{VWW}"\n[checks.size]\nmax = "100KB"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2", "-k", "size", "--qcheck-json=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines_random([f"{VWW} (from qcheck_a.toml): PASS*", f"{VWW} (from qcheck_b.toml): FAIL*",
                                        "  size   325.48 KiB  976.56 KiB  PASS", "  size   325.48 KiB  97.66 KiB  FAIL"])
    report = json.loads((pytester.path / "r.json").read_text())
    verdicts = {m["suite_file"]: (m["checks"][0]["threshold"], m["passed"]) for m in report["models"]}
    assert verdicts == {"qcheck_a.toml": (1e6, True), "qcheck_b.toml": (1e5, False)}


# --- item 17 (c): the same model given twice -------------------------------------------------------

@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_the_same_model_given_twice_is_checked_once_and_said_so(pytester: pytest.Pytester, xdist: list[str]) -> None:
    (pytester.path / "m.tflite").write_bytes(VWW.read_bytes())
    os.symlink("m.tflite", pytester.path / "link.tflite")
    result = pytester.runpytest("-p", "no:cacheprovider", *xdist, "-k", "size or fully_quantized", "-rA",
                                "--qcheck-json=r.json", "--qcheck-model=m.tflite", "--qcheck-model=./m.tflite",
                                "--qcheck-model=m.tflite", "--qcheck-model=link.tflite", f"--qcheck-model={KWS}")
    result.assert_outcomes(passed=4)  # two checks on each of the two models, with and without xdist
    result.stdout.fnmatch_lines_random([
        "PASSED qcheck::size[[]m.tflite[]]*", "PASSED qcheck::fully_quantized[[]m.tflite[]]*",
        "qcheck: ./m.tflite is the same file as m.tflite; its checks run once, as m.tflite",
        "qcheck: m.tflite is given more than once; its checks run once",
        "qcheck: link.tflite is the same file as m.tflite; its checks run once, as m.tflite",
    ])
    assert "./m.tflite]" not in result.stdout.str() and "link.tflite]" not in result.stdout.str()
    report = json.loads((pytester.path / "r.json").read_text())
    assert sorted(m["model"] for m in report["models"]) == sorted([str(KWS), "m.tflite"])


def test_a_suite_file_listing_one_file_under_two_names_is_its_error(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"")
    path = write(tmp_path / "qcheck_x.toml", 'models = ["m.tflite", "./sub/../m.tflite"]\n')
    (tmp_path / "sub").mkdir()
    refused(path, "models: 'm.tflite' and './sub/../m.tflite' are the same file; list it once")
