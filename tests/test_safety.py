"""A bad model never takes the session down; nothing the user gives runs code or leaks.

Isolation (a child killed for memory, a step out of time), what qcheck refuses to run (no
network, no eval, no unpickling of user files), where it writes (a private temporary folder
it removes, never outside the output folder whatever the model is called) and that nothing
is lost (atomic artifacts and reports, concurrent runs, xdist workers, untouched inputs).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, REAL, ROOT, QcheckRun, run_qcheck

from qcheck.config import Settings
from qcheck.errors import StepFailed
from qcheck.files import atomic_write
from qcheck.isolation import call_isolated
from qcheck.resolver import run_spec
from qcheck.session import QcheckSession
from qcheck.suites import load_suite

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
VWW_FLOAT = REAL / "mlperf_tiny" / "vww_96_float.tflite"
HELLO_WORLD = REAL / "tflm" / "hello_world_int8.tflite"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


# -- isolation ---------------------------------------------------------------------------------


def test_a_child_killed_for_memory_is_reported_as_such() -> None:
    """The kernel's out-of-memory killer sends SIGKILL; the step fails and says why."""
    with pytest.raises(StepFailed) as info:
        call_isolated("signal:raise_signal", signal.SIGKILL, what="converting big.keras")
    assert str(info.value) == ("converting big.keras crashed with SIGKILL (killed, most likely by the system "
                               "because memory ran out)")


def test_an_allocation_the_system_refuses_is_reported_as_out_of_memory() -> None:
    with pytest.raises(StepFailed) as info:
        call_isolated("numpy:ones", 1 << 50, what="running huge.tflite in the LiteRT interpreter")
    assert str(info.value).startswith("running huge.tflite in the LiteRT interpreter failed: ran out of memory "
                                      "(Unable to allocate 8.00 PiB")


@pytest.mark.skipif(not Path("/proc/self/oom_score_adj").exists(), reason="Linux only")
def test_the_child_is_the_first_the_kernel_kills_when_memory_runs_out() -> None:
    assert call_isolated("linecache:getline", "/proc/self/oom_score_adj", 1, what="reading") == "1000\n"
    assert Path("/proc/self/oom_score_adj").read_text() != "1000\n"  # not this process


def test_a_step_over_its_time_limit_fails_its_checks_and_the_session_goes_on(tmp_path: Path) -> None:
    """A conversion cannot finish in a second (TensorFlow alone takes longer to import)."""
    # No cache: a conversion another test left in the shared cache would need no time at all.
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-model={VWW}",
                     "--qcheck-timeout=1", "--qcheck-no-cache", "-k", "fully_quantized")
    assert run.check("digits_cnn.keras", "fully_quantized")["message"] == (
        f"fully_quantized could not be measured: converting {FIXTURES / 'digits_cnn.keras'} did not finish "
        "within 1 s and was stopped (raise the limit with --qcheck-timeout)")
    assert run.check("vww_96_int8.tflite", "fully_quantized")["passed"] is True
    assert "INTERNALERROR" not in run.stdout and "Traceback" not in run.stdout


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_a_time_limit_must_be_positive(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", f"--qcheck-timeout={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: qcheck: --qcheck-timeout must be a positive number of seconds, not {value}"])


# -- nothing runs that the user did not ask for ---------------------------------------------------

# Loaded by every Python process of a run (PYTHONPATH): networking fails and every attempt,
# and every process, is written down.
SITECUSTOMIZE = '''
import os
import socket
import sys

_FOLDER = os.environ["QCHECK_TEST_GUARD"]


def _log(kind, text):
    with open(os.path.join(_FOLDER, kind), "a") as handle:
        handle.write(text + "\\n")


def _refuse(*args, **kwargs):
    _log("attempts", repr(args))
    raise OSError("network access is blocked in this test")


for _name in ("connect", "connect_ex", "sendto", "sendmsg"):
    setattr(socket.socket, _name, _refuse)
socket.create_connection = socket.getaddrinfo = _refuse
try:
    with open("/proc/self/cmdline", "rb") as _cmdline:
        _command = " ".join(part.decode() for part in _cmdline.read().split(b"\\0") if part)
except OSError:
    _command = " ".join(sys.argv)
_log("processes", _command)
'''


@dataclass(frozen=True)
class GuardedRun:
    """A run without network, with a private TMPDIR and a model named to escape its folder."""

    run: QcheckRun
    root: Path  # holds everything below, and nothing else
    guard: Path  # sitecustomize.py and its logs
    tmpdir: Path
    out: Path
    inputs: dict[Path, str]  # the user's files and their sha256 before the run
    before: set[Path]  # every file under root before the run


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> GuardedRun:
    root = tmp_path_factory.mktemp("guarded")
    guard, tmpdir, cwd = root / "guard", root / "tmp", root / "work"
    for folder in (guard, tmpdir, cwd / "models"):
        folder.mkdir(parents=True)
    (guard / "sitecustomize.py").write_text(SITECUSTOMIZE)
    model = cwd / "models" / "..%2f..%2fvww int8.tflite"
    shutil.copyfile(VWW, model)
    data = cwd / "vww data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((12, 96, 96, 3), dtype=np.float32), y=rng.integers(0, 2, 12))
    inputs = {p: sha256(p) for p in (model, data, VWW_FLOAT)}
    before = files_under(root)
    # No cache: under xdist each worker running a test of this module makes this fixture, and the
    # second run found the first's results in the session's shared cache and started no child.
    run = run_qcheck(cwd, f"--qcheck-model={model}", f"--qcheck-reference={VWW_FLOAT}", f"--qcheck-data={data}",
                     "--qcheck-out=out/deep", "--qcheck-no-cache",
                     "-k", "fully_quantized or accuracy_drop or saturation or vela",
                     env={"PYTHONPATH": str(guard), "QCHECK_TEST_GUARD": str(guard), "TMPDIR": str(tmpdir)})
    return GuardedRun(run, root, guard, tmpdir, cwd / "out" / "deep", inputs, before)


def test_a_run_without_network_passes(guarded: GuardedRun) -> None:
    run = guarded.run
    assert run.returncode == 0, run.stdout
    checks = {c["name"]: c for c in run.model("..%2f..%2fvww int8.tflite")["checks"]}
    assert set(checks) == {"fully_quantized", "accuracy_drop", "saturation", "vela"}
    assert all(c["passed"] is True for c in checks.values())


def test_no_process_of_the_run_tries_the_network(guarded: GuardedRun) -> None:
    processes = (guarded.guard / "processes").read_text().splitlines()
    # The guard was in every process: pytest, the interpreter's and the reference's children, Vela.
    assert any("pytest" in p for p in processes)
    assert sum("qcheck.worker" in p for p in processes) >= 2
    assert any("ethosu.vela" in p for p in processes)
    assert not (guarded.guard / "attempts").exists()


def test_temporary_files_are_removed(guarded: GuardedRun) -> None:
    assert list(guarded.tmpdir.iterdir()) == []  # the shared qcheck-<uid> folder too, once empty


def test_nothing_is_written_outside_the_output_folder_whatever_the_model_is_called(guarded: GuardedRun) -> None:
    new = files_under(guarded.root) - guarded.before
    outside = {p for p in new if not p.resolve().is_relative_to(guarded.out.resolve())}
    assert outside == {guarded.root / "work" / "report.json", guarded.guard / "processes"}
    names = sorted(p.relative_to(guarded.out).as_posix() for p in new - outside)
    assert "2f.._2fvww_int8_quantization_info.json" in names
    # Vela's outputs are named after the model too; tensor names (with '/') name no file.
    assert "2f.._2fvww_int8_vela/ethos-u55-128/2f.._2fvww_int8_vela.tflite" in names
    assert all("/" not in name.split("/", 2)[-1] for name in names)


def test_the_users_files_are_never_modified(guarded: GuardedRun) -> None:
    assert {p: sha256(p) for p in guarded.inputs} == guarded.inputs


@pytest.mark.parametrize(("model", "stem"), [
    ("models/..%2f..%2fx.tflite", "2f.._2fx"),
    ("my models/saved model ..", "saved_model"),
    ("exported/..", "model"),
    ("exported/../../evil", "evil"),
    ("a/.hidden.keras", "hidden"),
    ("a/" + "long" * 40 + ".h5", ("long" * 20)),
])
def test_artifact_names_taken_from_a_model_stay_in_the_output_folder(tmp_path: Path, model: str, stem: str) -> None:
    out = tmp_path / "out"
    session = QcheckSession(Settings(models=(model,), out_dir=out), load_suite("default"))
    run = session.run(run_spec(session.settings, model))
    assert run.stem == stem
    for artifact in (f"{run.stem}_quant.tflite", f"{run.stem}_vela"):
        assert (out / artifact).resolve().parent == out.resolve()


_UNPICKLERS = ("pickle", "marshal", "yaml", "dill")
_OWN_HAND_OVER = ("qcheck/isolation.py", "qcheck/worker.py")  # qcheck's own request and answer


def _risky_calls(where: str, tree: ast.AST) -> list[str]:
    """Calls that would run what a file says: eval and kin, unpickling, allow_pickle, a shell."""
    found = []
    for call in (node for node in ast.walk(tree) if isinstance(node, ast.Call)):
        func = call.func
        if isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile", "__import__"):
            found.append(f"{where}:{call.lineno} calls {func.id}")
        unpickles = (isinstance(func, ast.Attribute) and func.attr in ("load", "loads")
                     and isinstance(func.value, ast.Name) and func.value.id in _UNPICKLERS)
        if unpickles and where not in _OWN_HAND_OVER:
            found.append(f"{where}:{call.lineno} unpickles")
        for keyword in call.keywords:
            allowed = isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            if keyword.arg in ("allow_pickle", "shell") and not allowed:
                found.append(f"{where}:{call.lineno} passes {keyword.arg}={ast.unparse(keyword.value)}")
    return found


def test_the_scan_for_risky_calls_finds_them() -> None:
    source = ("import pickle, subprocess, numpy as np\neval('1')\npickle.loads(b'')\n"
              "np.load('a.npz', allow_pickle=True)\nsubprocess.run('ls', shell=True)\nnp.load('b', allow_pickle=False)\n")
    assert _risky_calls("m.py", ast.parse(source)) == [
        "m.py:2 calls eval", "m.py:3 unpickles", "m.py:4 passes allow_pickle=True", "m.py:5 passes shell=True"]


def test_qcheck_has_no_way_to_run_what_a_user_file_says() -> None:
    """No eval/exec, no unpickling outside the child-process hand-over, no allow_pickle=True,
    no shell: reading a model, a data file or a suite never runs code."""
    problems = []
    for source in sorted((ROOT / "qcheck").rglob("*.py")):
        problems += _risky_calls(source.relative_to(ROOT).as_posix(), ast.parse(source.read_text(), str(source)))
    assert problems == []


# -- nothing is lost ---------------------------------------------------------------------------


def test_a_reader_sees_the_old_file_or_the_new_one_never_a_part(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    versions = (b"a" * (1 << 20), b"b" * (3 << 20))
    atomic_write(path, versions[0])
    seen: list[bytes] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            atomic_write(path, versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen and all(content in versions for content in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


def test_artifacts_get_the_permissions_a_plain_write_would_give(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


def _qcheck_command(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _artifacts(out: Path) -> dict[str, bytes]:
    """Every file under ``out``; Vela's log names the random scratch folder it ran in, masked here."""
    found = {}
    for path in sorted(files_under(out)):
        data = path.read_bytes()
        if path.suffix == ".log":
            data = re.sub(rb"\S*/\.vela-[^/\s]+/", b"<scratch>/", data)
        found[path.relative_to(out).as_posix()] = data
    return found


def _comparable(report: dict[str, object]) -> str:
    """The report without the paths of artifacts (each run has its own output folder)."""
    return json.dumps(_without(report, "artifacts"), sort_keys=True)


def _without(value: object, key: str) -> object:
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value


def test_concurrent_runs_into_one_folder_leave_whole_artifacts_and_reports(tmp_path: Path) -> None:
    args = [f"--qcheck-model={REAL / 'tflm' / 'micro_speech_quantized.tflite'}", f"--qcheck-model={HELLO_WORLD}",
            "-k", "fully_quantized or size or vela"]
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    for folder in (shared, alone):
        folder.mkdir()
    runs = [_qcheck_command(shared, *args, "--qcheck-out=out", "--qcheck-json=out/report.json") for _ in range(3)]
    reference = _qcheck_command(alone, *args, "--qcheck-out=out", "--qcheck-json=out/report.json")
    for proc in (*runs, reference):
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output
    together, single = _artifacts(shared / "out"), _artifacts(alone / "out")
    assert sorted(together) == sorted(single)  # no stray temporary file, nothing missing
    report = json.loads(together.pop("report.json"))
    assert _comparable(report) == _comparable(json.loads(single.pop("report.json")))
    assert together == single


def test_xdist_workers_give_models_that_share_a_file_name_their_own_artifacts(tmp_path: Path) -> None:
    for folder, source in (("a", HELLO_WORLD), ("b", VWW)):
        (tmp_path / folder).mkdir()
        shutil.copyfile(source, tmp_path / folder / "model.tflite")
    run = run_qcheck(tmp_path, "-n", "2", "--qcheck-model=a/model.tflite", "--qcheck-model=b/model.tflite",
                     "-k", "fully_quantized or size or float32_tensors")
    assert run.returncode == 0, run.stdout
    first = json.loads((run.out_dir / "model_quantization_info.json").read_text())
    second = json.loads((run.out_dir / "model-2_quantization_info.json").read_text())
    assert (first["size_bytes"], second["size_bytes"]) == (HELLO_WORLD.stat().st_size, VWW.stat().st_size)


def test_a_model_is_named_the_same_whichever_is_used_first() -> None:
    settings = Settings(models=("a/model.tflite", "b/model.tflite"))
    for order in (["a/model.tflite", "b/model.tflite"], ["b/model.tflite", "a/model.tflite"]):
        session = QcheckSession(settings, load_suite("default"))
        stems = {model: session.run(run_spec(settings, model)).stem for model in order}
        assert stems == {"a/model.tflite": "model", "b/model.tflite": "model-2"}
