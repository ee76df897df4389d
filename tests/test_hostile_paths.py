"""Hostile and careless output paths (issue 13): what qcheck writes, and where it refuses to.

The promises tested here: a report or artifact never replaces a device, a FIFO, a link or one
of the run's own inputs; an output path qcheck cannot use is a usage error (exit 4) that names
the option and the path; a report that could not be written fails the run while the other
reports are still written; the same inputs give the same bytes (Vela's log, error messages).

The tests run as root (as CI often does), where permissions cannot make a folder unwritable:
"cannot be created" is a path under a regular file. Devices are made with mknod in the test's
own folder; /dev/null and /dev/stdout themselves are only ever written by the fixed code.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from helpers import FIXTURES, REAL, run_qcheck, write

from qcheck.checks import registry
from qcheck.errors import QcheckError
from qcheck.files import InputFiles, atomic_write
from qcheck.suites import CheckSpec
from qcheck.verdict import error_result

HELLO = REAL / "tflm" / "hello_world_int8.tflite"  # already quantized: checked without a conversion


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def null_device(folder: Path) -> Path:
    """A character device like /dev/null (1, 3), made in ``folder``."""
    node = folder / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.fail("the tests run as root, as CI does; mknod needs it")
    return node


def model_here(cwd: Path, name: str = "hw.tflite") -> Path:
    cwd.mkdir(parents=True, exist_ok=True)
    model = cwd / name
    model.write_bytes(HELLO.read_bytes())
    return model


# -- item 4: devices, FIFOs and links are written through, never replaced ----------------------


def test_a_report_to_a_device_node_is_written_into_it_and_the_device_stays(tmp_path: Path) -> None:
    device = null_device(tmp_path)
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "size",
                     "--qcheck-html=null", "--qcheck-csv=tables")
    assert run.returncode == 0, run.stdout
    assert stat.S_ISCHR(os.lstat(device).st_mode)  # not replaced by a regular file
    assert os.major(os.lstat(device).st_rdev) == 1 and os.minor(os.lstat(device).st_rdev) == 3
    assert "HTML report written to null" in run.stdout
    assert not list(tmp_path.glob(".null.*"))  # no temporary file left beside it


def test_a_report_to_dev_stdout_is_printed_and_dev_null_stays_a_device(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "size",
                     "--qcheck-json=/dev/stdout", "--qcheck-html=/dev/null")
    assert run.returncode == 0, run.stdout
    assert '"schema_version": 1' in run.stdout and '"qcheck_version"' in run.stdout
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert os.path.islink("/dev/stdout")


def test_a_report_path_that_is_a_link_keeps_the_link_and_writes_its_target(tmp_path: Path) -> None:
    target = tmp_path / "kept" / "report.json"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "report-link.json"
    link.symlink_to(target)
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "size", f"--qcheck-json={link.name}")
    assert run.returncode == 0, run.stdout
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["models"][0]["checks"][0]["name"] == "size"


def test_a_report_to_a_fifo_nobody_reads_fails_the_run_at_once_and_the_fifo_stays(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "size", "--qcheck-html=fifo")
    assert time.monotonic() - started < 120  # never waits for a reader
    assert run.returncode == 1
    assert "could not write the HTML report to fifo: is a FIFO that nothing reads from" in run.stdout
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert run.report["models"]  # the JSON report is still written


def test_a_fifo_with_a_reader_gets_the_report(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as handle:  # blocks until the writer opens it
            received.append(handle.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while True:  # the reader must be there before the (non-blocking) write
        try:
            atomic_write(fifo, b'{"ok": true}\n', named_by_user=True)
            break
        except QcheckError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    reader.join(10)
    assert received == [b'{"ok": true}\n']
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_link_planted_at_an_artifact_name_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    planted = tmp_path / "qcheck-out" / "hw_quantization_info.json"
    planted.parent.mkdir()
    planted.symlink_to(victim)
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "fully_quantized")
    assert run.returncode == 1
    message = run.check("hw.tflite", "fully_quantized")["message"]
    assert f"{planted}: is a symbolic link, not a file qcheck wrote" in message
    assert "internal error" not in run.stdout
    assert planted.is_symlink() and victim.read_text() == "keep me\n"


def test_artifact_writes_refuse_devices_and_report_writes_go_through_them(tmp_path: Path) -> None:
    device = null_device(tmp_path)
    with pytest.raises(QcheckError, match="is a character device, not a file qcheck wrote"):
        atomic_write(device, b"data")
    atomic_write(device, b"data", named_by_user=True)
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    with pytest.raises(QcheckError, match="is a folder"):
        atomic_write(tmp_path, b"data", named_by_user=True)


# -- item 5: the run's own inputs are never written ----------------------------------------------


def test_an_artifact_over_another_input_of_the_command_line_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    """m.keras's quantized model would be ./m_quant.tflite: another model of the same run."""
    (tmp_path / "m.keras").write_bytes((FIXTURES / "digits_cnn.keras").read_bytes())
    other = model_here(tmp_path, "m_quant.tflite")
    before = sha256(other)
    run = run_qcheck(tmp_path, "--qcheck-model=m.keras", "--qcheck-model=m_quant.tflite", "--qcheck-out=.",
                     "-k", "fully_quantized")
    assert sha256(other) == before
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout
    assert (f"qcheck: {Path('.') / 'm_quant.tflite'}: m.keras's artifact would be written over the model "
            "m_quant.tflite; qcheck never writes over its inputs") in run.stdout


@pytest.mark.slow
def test_an_artifact_over_an_input_named_in_a_suite_file_fails_that_model_and_keeps_the_input(tmp_path: Path) -> None:
    """Models named only in suite files are known after collection: the write itself refuses."""
    (tmp_path / "m.keras").write_bytes((FIXTURES / "digits_cnn.keras").read_bytes())
    other = model_here(tmp_path, "m_quant.tflite")
    write(tmp_path / "qcheck_both.toml", 'models = ["m.keras", "m_quant.tflite"]\n')
    before = sha256(other)
    run = run_qcheck(tmp_path, "--qcheck-out=.", "-k", "fully_quantized")
    assert sha256(other) == before
    assert run.returncode == 1, run.stdout
    refused = run.check("m.keras", "fully_quantized")
    assert refused["passed"] is False
    assert (f"{other}: is the model {other} of this run; qcheck never writes over its inputs"
            in refused["message"])
    assert run.check("m_quant.tflite", "fully_quantized")["passed"] is True  # the other model is checked


@pytest.mark.parametrize("option", ["--qcheck-json", "--qcheck-html"])
@pytest.mark.parametrize("victim", ["hw.tflite", "digits.npz", "suite.toml"])
def test_a_report_path_that_is_an_input_is_a_usage_error(tmp_path: Path, option: str, victim: str) -> None:
    model_here(tmp_path)
    (tmp_path / "digits.npz").write_bytes((FIXTURES / "digits.npz").read_bytes())
    write(tmp_path / "suite.toml", 'extends = "default"\n')
    before = sha256(tmp_path / victim)
    run = run_qcheck(tmp_path, "--qcheck-model=hw.tflite", "--qcheck-data=digits.npz", "--qcheck-suite=suite.toml",
                     "-k", "size", f"{option}={victim}")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout
    assert f"qcheck: {option}={victim}: is the " in run.stdout and "qcheck never writes over its inputs" in run.stdout
    assert sha256(tmp_path / victim) == before


@pytest.mark.parametrize("report", ["models/hw.tflite", "models/link.tflite"])
def test_a_report_over_a_model_named_only_in_a_suite_file_fails_the_run_and_keeps_the_model(
        tmp_path: Path, report: str) -> None:
    model = model_here(tmp_path / "models")
    write(tmp_path / "qcheck_hw.toml", 'model = "models/hw.tflite"\n')
    (tmp_path / "models" / "link.tflite").symlink_to(model)  # another spelling of the same file
    before = sha256(model)
    run = run_qcheck(tmp_path, "-k", "size", f"--qcheck-html={report}")
    assert sha256(model) == before and (tmp_path / "models" / "link.tflite").is_symlink()
    assert run.returncode == 1, run.stdout
    assert f"could not write the HTML report to {report}: is the model" in run.stdout
    assert run.report["models"]  # the JSON report is still written


def test_a_calibration_set_the_recipe_does_not_use_is_still_never_written_over(tmp_path: Path) -> None:
    """With calibration_from = "data" the run calibrates on a split of the data and its RunSpec
    drops the suite file's calibration set; that file is still the user's."""
    model_here(tmp_path / "models")
    calibration = tmp_path / "models" / "cal.npz"
    calibration.write_bytes((FIXTURES / "digits.npz").read_bytes())
    write(tmp_path / "qcheck_hw.toml", 'model = "models/hw.tflite"\ncalibration = "models/cal.npz"\n'
                                       '[quantization]\ncalibration_from = "data"\n')
    before = sha256(calibration)
    run = run_qcheck(tmp_path, "-k", "size", "--qcheck-html=models/cal.npz")
    assert sha256(calibration) == before
    assert run.returncode == 1, run.stdout
    assert "could not write the HTML report to models/cal.npz: is the calibration data" in run.stdout


def test_inputs_are_known_by_identity_not_by_spelling(tmp_path: Path) -> None:
    model = model_here(tmp_path)
    os.link(model, tmp_path / "hard.tflite")
    inputs = InputFiles()
    inputs.add(str(model), "model")
    for other in (tmp_path / "hard.tflite", tmp_path / "." / "hw.tflite"):
        with pytest.raises(QcheckError, match="is the model .* of this run"):
            atomic_write(other, b"x", never=inputs)
    assert model.read_bytes() == HELLO.read_bytes()
    with pytest.raises(QcheckError, match="holds the model"):
        inputs.refuse_inside(tmp_path)


# -- item 13: unusable output paths are usage errors ------------------------------------------------


@pytest.mark.parametrize("option, value, expected", [
    ("--qcheck-out", "afile.txt", "--qcheck-out=afile.txt: is a file, not a folder"),
    ("--qcheck-out", "/dev/null", "--qcheck-out=/dev/null: is a character device, not a folder"),
    ("--qcheck-out", "afile.txt/out", "--qcheck-out=afile.txt/out: cannot be created: {cwd}/afile.txt is a file"),
    ("--qcheck-csv", "afile.txt", "--qcheck-csv=afile.txt: is a file, not a folder"),
    ("--qcheck-json", "afile.txt/r.json", "--qcheck-json=afile.txt/r.json: cannot be created: {cwd}/afile.txt is a file"),
    ("--qcheck-html", "afolder", "--qcheck-html=afolder: is a folder"),
])
def test_an_output_path_qcheck_cannot_use_is_a_usage_error(tmp_path: Path, option: str, value: str,
                                                           expected: str) -> None:
    (tmp_path / "afile.txt").write_text("mine\n")
    (tmp_path / "afolder").mkdir()
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "size", f"{option}={value}")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout
    assert f"qcheck: {expected.format(cwd=tmp_path)}" in run.stdout
    assert "internal error" not in run.stdout and "Traceback" not in run.stdout
    assert (tmp_path / "afile.txt").read_text() == "mine\n" and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not (tmp_path / "qcheck-out").exists()  # stopped before anything ran


def test_a_file_where_an_artifact_folder_goes_fails_that_check_with_the_path_not_an_internal_error(
        tmp_path: Path) -> None:
    (tmp_path / "qcheck-out").mkdir()
    (tmp_path / "qcheck-out" / "hw_vela").write_text("mine\n")  # where Vela's folder goes
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "vela or size")
    assert run.returncode == 1
    message = run.check("hw.tflite", "vela")["message"]
    assert f"{tmp_path / 'qcheck-out' / 'hw_vela'}: is a file, not a folder" in message
    assert "internal error" not in message
    assert run.check("hw.tflite", "size")["passed"] is True
    assert (tmp_path / "qcheck-out" / "hw_vela").read_text() == "mine\n"


# -- item 14: a report that could not be written fails the run -----------------------------------


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])  # the controller writes them
def test_a_report_that_cannot_be_written_fails_the_run_and_the_others_are_written(tmp_path: Path,
                                                                                    xdist: list[str]) -> None:
    os.mkfifo(tmp_path / "fifo")  # nothing reads it
    (tmp_path / "tables" / "hw_checks.csv").mkdir(parents=True)  # a folder where a table goes
    run = run_qcheck(tmp_path, f"--qcheck-model={model_here(tmp_path)}", "-k", "size",
                     "--qcheck-html=fifo", "--qcheck-csv=tables", *xdist)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert "1 passed" in run.stdout  # the checks passed; the run fails for its reports
    assert "qcheck: ERROR: could not write the HTML report to fifo: is a FIFO that nothing reads from" in run.stdout
    assert (f"qcheck: ERROR: could not write the CSV tables to tables: tables/hw_checks.csv: "
            "is a folder") in run.stdout
    assert run.report["models"][0]["checks"][0]["name"] == "size"  # the JSON report is written


# -- item 16: the same inputs give the same bytes ------------------------------------------------------


@pytest.mark.slow
def test_vela_log_is_the_same_bytes_in_two_runs_and_names_no_scratch_folder(tmp_path: Path) -> None:
    logs = []
    for name in ("first", "second"):
        cwd = tmp_path / name
        run = run_qcheck(cwd, f"--qcheck-model={model_here(cwd)}", "-k", "vela", "--qcheck-no-cache")
        assert run.check("hw.tflite", "vela")["passed"] is True, run.stdout
        logs.append((run.out_dir / "hw_vela" / "ethos-u55-128" / "hw_vela.log").read_bytes())
    assert logs[0] == logs[1]
    assert b"Performance for NPU Grap out/model" in logs[0]  # a real Vela log; this line names a path
    assert b".vela-" not in logs[0] and str(tmp_path).encode() not in logs[0]


def test_an_error_message_carries_no_object_address() -> None:
    size = registry()["size"]
    messages = {error_result("m", size, CheckSpec("size"), RuntimeError(f"cannot use {object()!r} here")).message
                for _ in range(3)}
    assert messages == {"size could not be measured: cannot use <object object> here"}


# -- review item 7: a link below the output folder never redirects a write or a removal -------------


def _listing(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (links not followed) with its content's digest."""
    return {str(entry.relative_to(folder)): sha256(entry) if entry.is_file() else "folder"
            for entry in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("link, target", [("hw_vela/ethos-u55-128", "../../../victim"), ("hw_vela", "../victim")],
                         ids=["config-folder", "model-folder"])
def test_a_link_planted_below_the_output_folder_is_refused_and_vela_writes_nothing_through_it(
        tmp_path: Path, link: str, target: str) -> None:
    """A repository can commit qcheck-out/hw_vela/ethos-u55-128 -> ../../../victim: Vela's files
    (and removals of stale ones) would land in victim/, over a user's files."""
    repo = tmp_path / "repo"
    model_here(repo)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "hw_vela.tflite").write_bytes(b"the user's model\n")
    (victim / "hw_summary.csv").write_text("the user's table\n")
    (victim / "hw_vela").mkdir()
    (victim / "hw_vela" / "hw_summary.csv").write_text("the user's table\n")
    planted = repo / "qcheck-out" / link
    planted.parent.mkdir(parents=True)
    planted.symlink_to(target)
    before = _listing(victim)
    run = run_qcheck(repo, "--qcheck-model=hw.tflite", "-k", "vela or size")
    assert _listing(victim) == before
    assert planted.is_symlink()  # refused, not removed: it may be the user's
    assert run.returncode == 1, run.stdout
    message = run.check("hw.tflite", "vela")["message"]
    assert f"{planted}: is a symbolic link inside qcheck's output folder" in message
    assert "internal error" not in message
    assert run.check("hw.tflite", "size")["passed"] is True  # one check's refusal ends nothing else
    # Without the link, the same run compiles with Vela into the output folder.
    planted.unlink()
    run = run_qcheck(repo, "--qcheck-model=hw.tflite", "-k", "vela")
    assert run.check("hw.tflite", "vela")["passed"] is True, run.stdout
    assert (repo / "qcheck-out" / "hw_vela" / "ethos-u55-128" / "hw_vela.tflite").is_file()
    assert _listing(victim) == before


@pytest.mark.slow
def test_a_linked_vela_folder_holding_an_input_model_keeps_it_and_the_other_model_is_checked(tmp_path: Path) -> None:
    """The review's scenario: the link leads to a folder with another model of the run, whose name
    is Vela's output name: refuse_inside saw only the link's spelling and the model was replaced."""
    repo = tmp_path / "repo"
    model_here(repo)
    victim = tmp_path / "victim"
    model_here(victim, "hw_vela.tflite")
    (victim / "hw_per-layer.csv").write_text("the user's table\n")
    planted = repo / "qcheck-out" / "hw_vela" / "ethos-u55-128"
    planted.parent.mkdir(parents=True)
    planted.symlink_to("../../../victim")
    before = _listing(victim)
    run = run_qcheck(repo, "--qcheck-model=hw.tflite", "--qcheck-model=../victim/hw_vela.tflite", "-k", "vela")
    assert _listing(victim) == before
    assert run.returncode == 1, run.stdout
    assert "holds the model ../victim/hw_vela.tflite of this run" in run.check("hw.tflite", "vela")["message"]
    assert run.check("hw_vela.tflite", "vela")["passed"] is True, run.stdout  # a real Vela run


def test_artifact_writes_and_removals_refuse_links_at_any_depth_below_the_root_but_not_the_root(
        tmp_path: Path) -> None:
    from qcheck.files import remove_stale

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "b").mkdir(parents=True)
    (elsewhere / "b" / "x.csv").write_text("mine\n")
    root = tmp_path / "out"
    (root / "a").mkdir(parents=True)
    (root / "a" / "b").symlink_to(elsewhere / "b")
    (root / "c").symlink_to(elsewhere)
    for path, link in ((root / "a" / "b" / "x.csv", root / "a" / "b"), (root / "c" / "b" / "x.csv", root / "c")):
        with pytest.raises(QcheckError, match=f"{link}: is a symbolic link inside qcheck's output folder"):
            atomic_write(path, b"x", root=root)
        with pytest.raises(QcheckError, match=f"{link}: is a symbolic link inside qcheck's output folder"):
            remove_stale(path, root=root)
    assert (elsewhere / "b" / "x.csv").read_text() == "mine\n"
    (root / "stale.csv").symlink_to(elsewhere / "b" / "x.csv")
    with pytest.raises(QcheckError, match="is a symbolic link, not a file qcheck wrote"):
        remove_stale(root / "stale.csv", root=root)
    model = model_here(root / "d")
    inputs = InputFiles()
    inputs.add(str(model), "model")
    with pytest.raises(QcheckError, match="is the model .* of this run"):
        remove_stale(model, root=root, never=inputs)
    assert model.read_bytes() == HELLO.read_bytes() and (root / "stale.csv").is_symlink()
    # The root itself may be a link: the command line chose it.
    chosen = tmp_path / "chosen"
    chosen.symlink_to(elsewhere)
    atomic_write(chosen / "new" / "y.csv", b"y", root=chosen)
    assert (elsewhere / "new" / "y.csv").read_bytes() == b"y"


# -- review item 8: configuration files keep qcheck's writes inside their project --------------------


@pytest.mark.parametrize("config, value", [("pyproject.toml", "../victim"), ("pyproject.toml", "{victim}"),
                                           ("pyproject.toml", "inside"), ("pytest.ini", "../victim")],
                         ids=["dotdot", "absolute", "link", "ini"])
def test_an_output_folder_from_a_configuration_file_outside_its_project_is_a_usage_error(
        tmp_path: Path, config: str, value: str) -> None:
    """An untrusted repository's configuration could send qcheck's artifacts over files elsewhere."""
    repo = tmp_path / "repo"
    model_here(repo)
    victim = tmp_path / "victim"
    model_here(victim, "hw_quantization_info.json")  # a user's file with the artifact's name
    before = _listing(victim)
    (repo / "inside").symlink_to(victim)  # a link the repository commits
    value = value.format(victim=victim)
    if config == "pytest.ini":
        write(repo / config, f"[pytest]\nqcheck_out = {value}\n")
        key = "qcheck_out"
    else:
        write(repo / config, f'[tool.qcheck]\nout = "{value}"\n')
        key = "[tool.qcheck] out"
    run = run_qcheck(repo, "--qcheck-model=hw.tflite", "-k", "size")
    assert _listing(victim) == before
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout
    assert (f"qcheck: {repo / config}: {key} leads to {victim}, outside the project folder {repo}; "
            "qcheck writes there") in run.stdout
    assert "give --qcheck-out on the command line" in run.stdout
    # The command line is trusted: the folder given there is used, the configuration's ignored.
    run = run_qcheck(repo, "--qcheck-model=hw.tflite", "-k", "size", "--qcheck-out=../victim/chosen")
    assert run.check("hw.tflite", "size")["passed"] is True, run.stdout
    assert (victim / "chosen" / "hw_quantization_info.json").is_file()
    assert (victim / "hw_quantization_info.json").read_bytes() == HELLO.read_bytes()


def test_a_cache_folder_from_a_configuration_file_stays_in_its_project_unless_the_command_line_overrides(
        tmp_path: Path) -> None:
    from qcheck.project import project_config

    pyproject = write(tmp_path / "repo" / "pyproject.toml", '[tool.qcheck]\ncache_dir = "../elsewhere"\n'
                      'out = "build/../out"\ndata = "../shared/val.npz"\n')
    with pytest.raises(QcheckError, match=r"\[tool.qcheck\] cache_dir leads to .*elsewhere, outside the project"):
        project_config(pyproject, {}, None)
    config = project_config(pyproject, {}, None, frozenset({"cache_dir"}))
    assert config.out == str(tmp_path / "repo" / "out")  # inside: fine
    assert config.data == str(tmp_path / "shared" / "val.npz")  # only read: may be anywhere
    with pytest.raises(QcheckError, match=r"qcheck_cache_dir leads to /, outside the project"):
        project_config(None, {"qcheck_cache_dir": "/"}, tmp_path / "tox.ini")


def test_a_default_output_folder_that_is_a_link_out_of_the_folder_is_a_usage_error_unless_given(
        tmp_path: Path) -> None:
    """qcheck-out is nobody's choice when it is the default: a repository can commit it as a link."""
    repo = tmp_path / "repo"
    model_here(repo)
    victim = tmp_path / "victim"
    model_here(victim, "hw_quantization_info.json")  # a user's file with the artifact's name
    (repo / "qcheck-out").symlink_to("../victim")
    run = run_qcheck(repo, "--qcheck-model=hw.tflite", "-k", "size")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout
    assert "qcheck: qcheck-out: the default output folder is a symbolic link leading out of" in run.stdout
    assert (victim / "hw_quantization_info.json").read_bytes() == HELLO.read_bytes()
    run = run_qcheck(repo, "--qcheck-model=hw.tflite", "-k", "size", "--qcheck-out=qcheck-out")  # now chosen
    assert run.check("hw.tflite", "size")["passed"] is True, run.stdout
    assert (victim / "hw_quantization_info.json").read_bytes() != HELLO.read_bytes()
