"""qcheck.suites: built-in and user suite files, ``extends``, validation and merging."""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcheck.errors import QcheckError
from qcheck.suites import CheckSpec, Suite, builtin_names, load_suite

DEFAULT_CHECKS = ["fully_quantized", "float32_tensors", "accuracy_drop", "saturation", "static_shapes", "size", "vela"]
DECLARED = ["fully_quantized", "float32_tensors", "accuracy_drop", "saturation", "static_shapes", "layer_error",
            "input_contract", "size", "vela", "robustness", "consistency", "baseline"]
# layer_error, input_contract, the property checks and baseline (on with --qcheck-baseline) are off


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path: Path, **kwargs: object) -> str:
    with pytest.raises(QcheckError) as info:
        load_suite(str(path), **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# --- the built-in default suite -----------------------------------------------------------------

def test_default_suite_has_the_six_checks() -> None:
    suite = load_suite("default")
    assert "default" in builtin_names()
    assert suite.name == "default"
    assert list(suite.checks) == DECLARED
    assert [spec.name for spec in suite.enabled()] == DEFAULT_CHECKS
    assert suite.description


def test_default_suite_thresholds() -> None:
    checks = load_suite("default").checks
    assert checks["fully_quantized"].max == 0
    assert checks["float32_tensors"].max == 0
    assert checks["accuracy_drop"].max == pytest.approx(0.03)
    assert checks["saturation"].max == pytest.approx(0.01)
    assert checks["size"].max is None
    assert checks["vela"].max == 0
    assert checks["vela"].options == {"accelerator": "ethos-u55-128"}
    assert [name for name, spec in checks.items() if spec.min is not None] == ["consistency"]
    assert [name for name, spec in checks.items() if spec.enabled is False] == ["layer_error", "input_contract",
                                                                                "robustness", "consistency",
                                                                                "baseline"]


def test_unknown_builtin_suite_suggests_a_name() -> None:
    with pytest.raises(QcheckError) as info:
        load_suite("defualt")
    assert "no built-in suite named 'defualt'" in str(info.value)
    assert "did you mean 'default'" in str(info.value)


# --- extends --------------------------------------------------------------------------------------

def test_extends_default_overrides_one_threshold_and_keeps_the_others(tmp_path: Path) -> None:
    path = write(tmp_path / "strict.toml", """
        extends = "default"
        [checks.accuracy_drop]
        max = "1%"
    """)
    suite = load_suite(str(path))
    default = load_suite("default")
    assert suite.name == "strict"
    assert suite.source == str(path.resolve())
    assert suite.checks["accuracy_drop"].max == pytest.approx(0.01)
    for name in DEFAULT_CHECKS:
        if name != "accuracy_drop":
            assert suite.checks[name] == default.checks[name]
    assert suite.description == default.description  # inherited when not set


def test_extends_chain_is_relative_to_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "suites" / "base" / "base.toml", """
        extends = "default"
        description = "base"
        [checks.size]
        max = "300KB"
    """)
    write(tmp_path / "suites" / "team.toml", """
        extends = "base/base.toml"
        [checks.saturation]
        max = "2%"
    """)
    project = write(tmp_path / "project" / "qcheck.toml", """
        extends = "../suites/team.toml"
        description = "project"
        [checks.vela]
        accelerator = "ethos-u65-256"
    """)
    monkeypatch.chdir(tmp_path / "suites" / "base")  # the working directory must not matter
    suite = load_suite(str(project))
    assert suite.description == "project"
    assert suite.checks["size"].max == 300_000
    assert suite.checks["saturation"].max == pytest.approx(0.02)
    assert suite.checks["accuracy_drop"].max == pytest.approx(0.03)
    assert suite.checks["vela"].options == {"accelerator": "ethos-u65-256"}
    assert suite.checks["vela"].max == 0


def test_relative_path_is_resolved_against_base_dir(tmp_path: Path) -> None:
    write(tmp_path / "s.toml", 'extends = "default"\n')
    assert load_suite("s.toml", base_dir=tmp_path).source == str((tmp_path / "s.toml").resolve())


def test_cycle_names_the_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    b = write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    message = load_error(a)
    assert "extends itself" in message
    assert str(a.resolve()) in message
    assert str(b.resolve()) in message


def test_self_extension_is_a_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.toml", 'extends = "./a.toml"\n')
    assert "extends itself" in load_error(a)


def test_missing_parent_file_is_named_relative_to_the_suite(tmp_path: Path) -> None:
    child = write(tmp_path / "sub" / "child.toml", 'extends = "parent.toml"\n')
    message = load_error(child)
    assert str((tmp_path / "sub" / "parent.toml").resolve()) in message
    assert "does not exist" in message


def test_unknown_builtin_in_extends_names_the_file(tmp_path: Path) -> None:
    # The module promises that every error names the file; here the file that holds the typo.
    child = write(tmp_path / "child.toml", 'extends = "defualt"\n')
    message = load_error(child)
    assert "did you mean 'default'" in message
    assert str(child.resolve()) in message


def test_missing_suite_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.toml")
    assert str((tmp_path / "nope.toml").resolve()) in message


# --- validation ---------------------------------------------------------------------------------

def test_misspelt_check_gets_a_suggestion_with_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", """
        [checks.acuracy_drop]
        max = "3%"
    """)
    message = load_error(path)
    assert "did you mean 'accuracy_drop'" in message
    assert str(path.resolve()) in message
    assert "checks.acuracy_drop" in message
    assert "known checks:" in message


def test_unknown_option_is_refused_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", """
        [checks.vela]
        acelerator = "ethos-u55-128"
    """)
    message = load_error(path)
    assert str(path.resolve()) in message
    assert "checks.vela" in message
    assert "unknown option 'acelerator'" in message
    assert "did you mean 'accelerator'" in message


def test_option_of_another_check_is_unknown(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", """
        [checks.size]
        accelerator = "ethos-u55-128"
    """)
    assert "unknown option 'accelerator'" in load_error(path)


def test_option_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", """
        [checks.vela]
        system_config = 128
    """)
    message = load_error(path)
    assert str(path.resolve()) in message
    assert "checks.vela.system_config must be a str" in message


@pytest.mark.parametrize(("check", "value", "words"), [
    ("accuracy_drop", '"-3%"', "negative"),
    ("accuracy_drop", '"lots"', "is not a quantity"),
    ("accuracy_drop", '"3KB"', "does not fit a fraction threshold"),
    ("accuracy_drop", "3", "more than 100%"),
    ("accuracy_drop", "true", "expected a number"),
    ("accuracy_drop", "nan", "not a finite number"),
    ("size", '"3%"', "does not fit a bytes threshold"),
    ("size", "-1", "negative"),
    ("vela", '"1ms"', "does not fit a count threshold"),
])
@pytest.mark.parametrize("key", ["max", "min"])
def test_bad_threshold_names_file_and_key(tmp_path: Path, check: str, value: str, words: str, key: str) -> None:
    path = write(tmp_path / "s.toml", f"""
        extends = "default"
        [checks.{check}]
        {key} = {value}
    """)
    message = load_error(path)
    assert str(path.resolve()) in message
    assert f"checks.{check}.{key}" in message
    assert words in message


def test_huge_integer_threshold_is_a_qcheck_error(tmp_path: Path) -> None:
    # TOML integers have no size limit in tomllib; a runaway literal must still be a user error.
    path = write(tmp_path / "s.toml", "[checks.size]\nmax = 1" + "0" * 400 + "\n")
    message = load_error(path)
    assert str(path.resolve()) in message
    assert "checks.size.max" in message


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", "[checks.accuracy_drop\nmax = 3%\n")
    message = load_error(path)
    assert str(path.resolve()) in message
    assert "is not valid TOML" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b'description = "\xff\xfe"\n')
    message = load_error(path)
    assert str(path.resolve()) in message
    assert "UTF-8" in message


@pytest.mark.parametrize(("text", "words"), [
    ('check = 1\n', "unknown key 'check' (did you mean 'checks'?)"),
    ('extends = 3\n', "'extends' must be a suite name or a path"),
    ('checks = 3\n', "'checks' must be a table"),
    ('[checks]\naccuracy_drop = 3\n', "'checks.accuracy_drop' must be a table"),
    ('[checks.vela]\nenabled = "no"\n', "checks.vela.enabled must be true or false"),
])
def test_malformed_documents(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path / "s.toml", text)
    message = load_error(path)
    assert str(path.resolve()) in message
    assert words in message


# --- enabled --------------------------------------------------------------------------------------

def test_disabled_check_stays_disabled_in_a_child_that_does_not_mention_it(tmp_path: Path) -> None:
    write(tmp_path / "parent.toml", """
        extends = "default"
        [checks.vela]
        enabled = false
    """)
    child = write(tmp_path / "child.toml", """
        extends = "parent.toml"
        [checks.vela]
        accelerator = "ethos-u55-256"
    """)
    parent_suite = load_suite(str(tmp_path / "parent.toml"))
    assert parent_suite.checks["vela"].enabled is False
    assert "vela" not in [spec.name for spec in parent_suite.enabled()]
    suite = load_suite(str(child))
    assert suite.checks["vela"].enabled is False
    assert suite.checks["vela"].options == {"accelerator": "ethos-u55-256"}
    assert [spec.name for spec in suite.enabled()] == [n for n in DEFAULT_CHECKS if n != "vela"]


def test_child_can_enable_again(tmp_path: Path) -> None:
    write(tmp_path / "parent.toml", 'extends = "default"\n[checks.size]\nenabled = false\n')
    child = write(tmp_path / "child.toml", 'extends = "parent.toml"\n[checks.size]\nenabled = true\n')
    assert load_suite(str(child)).checks["size"].enabled is True


# --- with_overrides --------------------------------------------------------------------------------

def test_with_overrides_changes_only_what_it_names() -> None:
    default = load_suite("default")
    suite = default.with_overrides({"accuracy_drop": {"max": "5%"}, "size": {"max": "1MiB"},
                                    "vela": {"enabled": False}}, "the command line")
    assert suite.checks["accuracy_drop"].max == pytest.approx(0.05)
    assert suite.checks["size"].max == 1024**2
    assert suite.checks["vela"].enabled is False
    assert suite.checks["vela"].options == {"accelerator": "ethos-u55-128"}
    assert suite.checks["saturation"] == default.checks["saturation"]
    assert (suite.name, suite.source, suite.description) == (default.name, default.source, default.description)
    # the original is untouched
    assert default.checks["accuracy_drop"].max == pytest.approx(0.03)
    assert default.checks["vela"].enabled is None


def test_with_overrides_errors_name_the_origin() -> None:
    default = load_suite("default")
    with pytest.raises(QcheckError) as info:
        default.with_overrides({"acuracy_drop": {"max": "5%"}}, "the command line")
    assert "the command line" in str(info.value)
    assert "did you mean 'accuracy_drop'" in str(info.value)
    with pytest.raises(QcheckError) as info:
        default.with_overrides({"accuracy_drop": {"max": "lots"}}, "the command line")
    assert "the command line" in str(info.value)
    assert "checks.accuracy_drop.max" in str(info.value)


def test_with_overrides_adds_a_check_missing_from_the_suite() -> None:
    empty = Suite("empty", "<test>", "", {})
    suite = empty.with_overrides({"size": {"max": 4096}}, "test")
    assert suite.checks == {"size": CheckSpec("size", max=4096.0)}


# --- merging, for any thresholds -----------------------------------------------------------------

fraction = st.one_of(st.none(), st.floats(min_value=0, max_value=1))
flag = st.one_of(st.none(), st.booleans())
accelerator = st.one_of(st.none(), st.sampled_from(["ethos-u55-64", "ethos-u55-256", "ethos-u65-512"]))


def table(check: str, *, max: float | None = None, min: float | None = None, enabled: bool | None = None,
          accelerator: str | None = None) -> str:
    lines = [f"[checks.{check}]"]
    if max is not None:
        lines.append(f"max = {max!r}")
    if min is not None:
        lines.append(f"min = {min!r}")
    if enabled is not None:
        lines.append(f"enabled = {'true' if enabled else 'false'}")
    if accelerator is not None:
        lines.append(f'accelerator = "{accelerator}"')
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None)
@given(parent_max=fraction, child_max=fraction, parent_min=fraction, child_min=fraction,
       parent_enabled=flag, child_enabled=flag, parent_acc=accelerator, child_acc=accelerator)
def test_child_wins_where_it_sets_a_key(parent_max: float | None, child_max: float | None,
                                        parent_min: float | None, child_min: float | None,
                                        parent_enabled: bool | None, child_enabled: bool | None,
                                        parent_acc: str | None, child_acc: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        (here / "parent.toml").write_text(
            'extends = "default"\n'
            + table("accuracy_drop", max=parent_max, min=parent_min, enabled=parent_enabled)
            + table("vela", accelerator=parent_acc))
        (here / "child.toml").write_text(
            'extends = "parent.toml"\n'
            + table("accuracy_drop", max=child_max, min=child_min, enabled=child_enabled)
            + table("vela", accelerator=child_acc))
        suite = load_suite(str(here / "child.toml"))
    spec = suite.checks["accuracy_drop"]
    default_max = load_suite("default").checks["accuracy_drop"].max
    parent_effective_max = parent_max if parent_max is not None else default_max
    assert spec.max == (child_max if child_max is not None else parent_effective_max)
    assert spec.min == (child_min if child_min is not None else parent_min)
    assert spec.enabled == (child_enabled if child_enabled is not None else parent_enabled)
    vela = suite.checks["vela"]
    assert vela.options["accelerator"] == (child_acc if child_acc is not None
                                           else parent_acc if parent_acc is not None else "ethos-u55-128")
    assert vela.max == 0
