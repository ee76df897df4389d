"""pytest wiring for qcheck: options, ini keys, fixtures, and the session object.

An installed pytest11 plugin is imported by every pytest run of its environment, so this
module imports nothing heavy: TensorFlow, LiteRT, Vela, pandas are loaded where they are used.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from qcheck.config import RunSpec
from qcheck.resolver import FLAGS, INI_KEYS, Invocation, UsageProblem, resolve

if TYPE_CHECKING:
    from qcheck.data import Dataset
    from qcheck.project import ProjectConfig
    from qcheck.quantized import QuantizedModel
    from qcheck.session import QcheckSession
    from qcheck.suites import Suite

SESSION_KEY = pytest.StashKey["QcheckSession"]()
# node id -> error of each qcheck_*.toml that could not be collected, for the reports
SUITE_ERRORS_KEY = pytest.StashKey[dict[str, str]]()
INVOCATION_KEY = pytest.StashKey["Invocation"]()  # the command line, [tool.qcheck] and ini keys, read once
_NO_MODEL = ("no model: pass --qcheck-model=PATH, set models in [tool.qcheck], or mark the test "
             "@pytest.mark.qcheck(model=PATH)")


def pytest_addoption(parser: pytest.Parser) -> None:
    # The options and ini keys, and their help, live with the resolver that reads them.
    group = parser.getgroup("qcheck", "quantized model checks (qcheck)")
    for flag in FLAGS:
        group.addoption(flag.name, **flag.kwargs())

    for key, help_text, kind in INI_KEYS:
        parser.addini(key, help_text, type=kind, default=[] if kind == "paths" else "")


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    # With -n and no --dist, pytest-xdist would spread one model's checks over workers, and each
    # would convert the model again: group them per model instead. An explicit --dist wins.
    # (A wrapper runs before xdist's own hook, which turns an unset --dist into "load".) Only
    # runs given --qcheck-model are changed; with models from files, pass --dist loadgroup.
    option = config.option
    if getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no" and _options(config).get(
            "qcheck_model"):
        option.dist = "loadgroup"
    return (yield)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qcheck_check(name): a qcheck check item (set by qcheck)")
    config.addinivalue_line("markers", "qcheck(model=None, data=None, calibration=None, reference=None, "
                                       "**thresholds): run the test against this model, with these thresholds "
                                       "(e.g. accuracy_drop='2%') for qcheck's assertion helpers")
    if config.pluginmanager.hasplugin("xdist"):
        from qcheck.xdist_groups import ModelGroups

        config.pluginmanager.register(ModelGroups(config), "qcheck-xdist-groups")
    config.pluginmanager.register(_Results(config), "qcheck-results")
    config.pluginmanager.register(_BrokenSuiteFiles(config), "qcheck-broken-suite-files")
    # Every pytest run of the environment loads this plugin: the session (numpy, the checks,
    # the suite) is made only when qcheck is used. Asked for here, bad options and suites are
    # usage errors before anything runs; otherwise a suite file, marker or fixture makes it.
    from qcheck.project import ProjectConfig

    invocation = invocation_of(config)
    if invocation.project != ProjectConfig() or invocation.uses_qcheck():
        qsession = session_of(config)
        # Splits the run with --qcheck-shard; without, records what each model cost in the cache.
        from qcheck.shards import ShardPlugin, parse_shard

        shard_text = invocation.get("qcheck_shard")
        shard = parse_shard(shard_text) if shard_text else None
        config.pluginmanager.register(ShardPlugin(config, shard, invocation.get("qcheck_shard_costs"), qsession.cache),
                                      "qcheck-shard")


def session_of(config: pytest.Config) -> QcheckSession:
    """The run's qcheck session, made and registered on first use."""
    qsession = config.stash.get(SESSION_KEY, None)
    if qsession is not None:
        return qsession
    from qcheck.progress import Progress
    from qcheck.session import QcheckSession
    from qcheck.suite_files import read_suite_file

    invocation = invocation_of(config)
    try:
        settings, suite = resolve(invocation)
    except UsageProblem as exc:
        raise pytest.UsageError(f"qcheck: {exc}") from None
    qsession = QcheckSession(settings, suite, Progress(config), project=invocation.project,
                             broken=config.stash[SUITE_ERRORS_KEY], read_suite_file=read_suite_file)
    _check_outputs(invocation, qsession)
    _prepare_cache(invocation, qsession, worker=hasattr(config, "workerinput"))
    config.stash[SESSION_KEY] = qsession
    config.pluginmanager.register(qsession, "qcheck-session")
    from qcheck.items import FactsCourier

    config.pluginmanager.register(FactsCourier(qsession), "qcheck-facts")
    return qsession


def _check_outputs(invocation: Invocation, qsession: QcheckSession) -> None:
    """Output folders and report paths qcheck cannot write are usage errors, before anything runs."""
    from qcheck.files import check_output_file, check_output_folder

    settings = qsession.settings
    given = invocation.get("qcheck_out")
    out_option = "--qcheck-out" if given else "qcheck_out ([tool.qcheck] out)"
    problems = [check_output_folder(out_option, settings.out_dir)]
    out = settings.out_dir
    if (not given and not invocation.project.out and out.is_symlink()
            and not out.resolve().is_relative_to(Path.cwd().resolve())):
        # The default folder is nobody's choice: a repository could commit it as a link to elsewhere.
        problems.append(f"{out}: the default output folder is a symbolic link leading out of {Path.cwd()} (to "
                        f"{os.readlink(out)}); qcheck writes through such a link only when you give it: "
                        f"pass --qcheck-out={out} to use it, or remove the link")
    for option, path in (("--qcheck-json", settings.json_path), ("--qcheck-html", settings.html_path)):
        if path is not None:
            owner = qsession.inputs.owner(path)
            problems.append(f"{option}={path}: is the {owner} of this run; qcheck never writes over its inputs"
                            if owner else check_output_file(option, path))
    if settings.csv_dir is not None:
        problems.append(check_output_folder("--qcheck-csv", settings.csv_dir))
    if settings.baseline_update and settings.baseline_dir is not None:
        problems.append(check_output_folder("--qcheck-baseline", settings.baseline_dir))
    found = [problem for problem in [*problems, *qsession.clashes()] if problem]
    if found:
        raise pytest.UsageError("\n".join(f"qcheck: {problem}" for problem in found))


def invocation_of(config: pytest.Config) -> Invocation:
    """What qcheck reads of this pytest run, as plain values for :mod:`qcheck.resolver`: the one
    place that reads pytest's ``config.option`` and ini keys for qcheck's settings."""
    invocation = config.stash.get(INVOCATION_KEY, None)
    if invocation is None:
        options = _options(config)
        invocation = config.stash[INVOCATION_KEY] = Invocation(
            options, config.invocation_params.dir, _project(config, options), lambda: _pytest_cache(config),
            # pytest-html's --html option; absent when pytest-html is not installed.
            pytest_html=bool(getattr(config.option, "htmlpath", None)))
    return invocation


def _options(config: pytest.Config) -> dict[str, Any]:
    return {dest: value for dest, value in vars(config.option).items() if dest.startswith("qcheck_")}


class _Results:
    """Hands each check's result to the session, made on first use. One path whether the
    session was made at the start or not: under xdist, a controller given no qcheck option
    collects nothing, and meets qcheck only in its workers' reports."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    @pytest.hookimpl(tryfirst=True)  # before pytest-html reads the report's extras
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from qcheck.results import RESULT_PROPERTY

        if any(name == RESULT_PROPERTY for name, _ in report.user_properties):
            session_of(self._config).gather(report)


class _BrokenSuiteFiles:
    """A ``qcheck_*.toml`` that cannot be read is a collection error of that file, and the other
    files' checks still run: pytest stops a whole run at a collection error (pytest-xdist never
    does), and one typo must not silence every other suite's gate. The run still fails, and the
    reports list the file. Collection errors of other files keep pytest's behaviour.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._errors = config.stash[SUITE_ERRORS_KEY] = {}

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and "::" not in report.nodeid and is_suite_file(Path(report.nodeid).name):
            self._errors.setdefault(report.nodeid, report.longreprtext)

    @pytest.hookimpl(tryfirst=True)  # before pytest's own, which raises Interrupted
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        if self._errors and session.testsfailed == len(self._errors):
            session.config.option.continue_on_collection_errors = True


def is_suite_file(name: str) -> bool:
    """``qcheck_*.toml``: a suite file that names its models, collected like ``test_*.py``."""
    return name.startswith("qcheck_") and name.endswith(".toml")


def _project(config: pytest.Config, options: dict[str, Any]) -> ProjectConfig:
    """The project's defaults: [tool.qcheck] in pyproject.toml and the qcheck_* ini keys."""
    from qcheck.errors import QcheckError
    from qcheck.project import INI_KEYS, find_pyproject, project_config

    ini = {key: config.getini(key) for key in INI_KEYS.values()}
    # A folder the command line gives is trusted; the configuration's, then unused, is not confined.
    overridden = frozenset({*(["out"] if options.get("qcheck_out") else []),
                            *(["cache_dir"] if options.get("qcheck_cache_dir") or options.get("qcheck_no_cache")
                              else []),
                            *(["baseline"] if options.get("qcheck_baseline") else [])})
    try:
        return project_config(find_pyproject(config.rootpath, config.inipath), ini, config.inipath, overridden)
    except QcheckError as exc:
        raise pytest.UsageError(f"qcheck: {exc}") from None


def _pytest_cache(config: pytest.Config) -> Path | None:
    """qcheck's folder in pytest's cache folder (the default cache), made now."""
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if cache is None:
        return None
    try:
        folder: Path = cache.mkdir("qcheck")
        return folder
    except OSError:  # a file where qcheck's folder goes: damage, which _prepare_cache replaces
        base = Path(os.path.expandvars(os.path.expanduser(config.getini("cache_dir"))))
        return (base if base.is_absolute() else config.rootpath / base) / "d" / "qcheck"


def _prepare_cache(invocation: Invocation, qsession: QcheckSession, *, worker: bool) -> None:
    """Check that the cache folder is qcheck's to use (a usage error if not), and clear it if
    asked (on the controller only: xdist workers start after it)."""
    from qcheck.cache import CacheFolderError

    given = ("--qcheck-cache-dir" if invocation.get("qcheck_cache_dir") else
             "qcheck_cache_dir" if invocation.project.cache_dir else "")
    clear = bool(invocation.get("qcheck_cache_clear")) and not worker
    try:
        # Only qcheck's own place in pytest's cache folder is repaired; a folder the user named is refused.
        qsession.cache.prepare(clear=clear, reclaim=not given)
    except CacheFolderError as exc:
        raise pytest.UsageError(f"qcheck: {given or 'the cache folder'}: {exc}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: the items must exist before -k and -m deselect.
    qsession = config.stash.get(SESSION_KEY, None)  # made at configure when models are given
    if qsession is None or not qsession.settings.models:
        return
    from qcheck.items import QcheckModels

    collector = QcheckModels.from_parent(session, name="qcheck", nodeid=_collector_nodeid(config), qsession=qsession)
    new: list[pytest.Item | pytest.Collector] = list(collector.collect())
    # Report them as collected, so that "collected N items", --co and xdist count them.
    config.hook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, new))
    items.extend(item for item in new if isinstance(item, pytest.Item))


def pytest_collection_finish(session: pytest.Session) -> None:
    qsession = session.config.stash.get(SESSION_KEY, None)  # there are no qcheck items without one
    if qsession is not None:
        from qcheck.items import QcheckItem

        qsession.protect(session.items)  # before anything is written
        qsession.expect(item.planned for item in session.items if isinstance(item, QcheckItem))


def _collector_nodeid(config: pytest.Config) -> str:
    """'qcheck', placed in the invocation folder so that pytest shows it as 'qcheck::...'."""
    here = config.invocation_params.dir
    if here == config.rootpath or not here.is_relative_to(config.rootpath):
        return "qcheck"
    return f"{here.relative_to(config.rootpath).as_posix()}/qcheck"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """``qcheck_*.toml`` files are suites that name their models: each check is an item."""
    if is_suite_file(file_path.name):
        from qcheck.suite_files import QcheckFile

        return QcheckFile.from_parent(parent, path=file_path, qsession=lambda: session_of(parent.config))
    return None


# -- fixtures for users' own tests -------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qcheck_run_spec" in metafunc.fixturenames:
        from qcheck.markers import parametrization

        qsession = session_of(metafunc.config)
        specs, ids = parametrization(metafunc.definition, qsession.settings, qsession.project, qsession.inputs)
        metafunc.parametrize("qcheck_run_spec", specs or [None], ids=ids or ["no-model"], indirect=True,
                             scope="session")


@pytest.fixture(scope="session")
def qcheck_session(pytestconfig: pytest.Config) -> QcheckSession:
    """The run's qcheck session: settings, suite and per-model pipelines."""
    return session_of(pytestconfig)


@pytest.fixture(scope="session")
def qcheck_run_spec(request: pytest.FixtureRequest) -> RunSpec:
    """What the model under test is checked with: the model, its data, how it is quantized.

    Tests run once per model: the test's ``@pytest.mark.qcheck(model=...)``, or else each model
    of the command line or ``[tool.qcheck]``.
    """
    from qcheck.markers import InvalidMarker

    spec: RunSpec | InvalidMarker | None = getattr(request, "param", None)
    if isinstance(spec, InvalidMarker):
        pytest.fail(spec.message, pytrace=False)
    if spec is None:
        pytest.skip(_NO_MODEL)
    return spec


@pytest.fixture(scope="session")
def qcheck_model_path(qcheck_run_spec: RunSpec) -> str:
    """The path of the model under test."""
    return qcheck_run_spec.model


@pytest.fixture
def qcheck_suite(request: pytest.FixtureRequest, qcheck_session: QcheckSession) -> Suite:
    """The test's checks and thresholds: the run's suite, then its marker's, then the command line's."""
    from qcheck.markers import suite_for_test

    return suite_for_test(request.node, qcheck_session)


@pytest.fixture
def qcheck_quantized(qcheck_session: QcheckSession, qcheck_run_spec: RunSpec, qcheck_suite: Suite) -> QuantizedModel:
    """The quantized model: bytes, path, tensor table, I/O parameters, and a call that runs it.

    The conversion is shared by the whole session; this view carries the test's thresholds,
    which qcheck's assertion helpers (``qcheck.assert_accuracy_drop(q, data)``) read.
    """
    from qcheck.quantized import QuantizedModel

    run = qcheck_session.run(qcheck_run_spec)
    return QuantizedModel(run.tflite_path(), run.tflite(), run.info(), _evidence=run, _suite=qcheck_suite)


@pytest.fixture(scope="session")
def qcheck_model(qcheck_session: QcheckSession, qcheck_run_spec: RunSpec) -> Any:
    """The float Keras model (the reference model for an already quantized .tflite)."""
    from qcheck.tflite.convert import load_float_model

    run = qcheck_session.run(qcheck_run_spec)
    path = qcheck_run_spec.model if run.kind != "tflite" else qcheck_run_spec.reference
    if path is None:
        pytest.skip(f"{qcheck_run_spec.model} is a .tflite, not a Keras model; pass --qcheck-reference=FLOAT_MODEL")
    return load_float_model(Path(path), unsafe=qcheck_run_spec.unsafe_deserialization)


@pytest.fixture(scope="session")
def qcheck_data(qcheck_session: QcheckSession, qcheck_run_spec: RunSpec) -> Dataset:
    """The evaluation data of the model under test (the samples not used for calibration)."""
    data = qcheck_session.run(qcheck_run_spec).evaluation_data()
    if data is None:
        pytest.skip("no data: pass --qcheck-data=val.npz")
    return data
