"""pytest wiring for qcheck: options, ini keys, fixtures, and the session object.

An installed pytest11 plugin is imported by every pytest run of its environment, so this
module imports nothing heavy: TensorFlow, LiteRT, Vela, pandas are loaded where they are used.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from qcheck.config import ACTIVATIONS, DEFAULT_ACCELERATOR, DEFAULT_CALIBRATION_SAMPLES, DEFAULT_OUT, THRESHOLD_OPTIONS, ImageOptions, RunSpec, Settings, with_default_unit

if TYPE_CHECKING:
    from qcheck.data import Dataset
    from qcheck.project import ProjectConfig
    from qcheck.quantized import QuantizedModel
    from qcheck.session import QcheckSession
    from qcheck.suites import Suite

SESSION_KEY = pytest.StashKey["QcheckSession"]()
# node id -> error of each qcheck_*.toml that could not be collected, for the reports
SUITE_ERRORS_KEY = pytest.StashKey[dict[str, str]]()
PROJECT_KEY = pytest.StashKey["ProjectConfig"]()  # [tool.qcheck] and ini defaults, for suite files and markers
_NO_MODEL = ("no model: pass --qcheck-model=PATH, set models in [tool.qcheck], or mark the test "
             "@pytest.mark.qcheck(model=PATH)")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qcheck", "quantized model checks (qcheck)")
    group.addoption("--qcheck-model", action="append", dest="qcheck_model", default=[], metavar="PATH",
                    help="model to check: .keras, .h5, .tflite or a SavedModel directory (repeatable)")
    group.addoption("--qcheck-data", dest="qcheck_data", metavar="NPZ",
                    help="evaluation data: .npz with 'x' and labels 'y' or 'y_<output name>'")
    group.addoption("--qcheck-calibration", dest="qcheck_calibration", metavar="NPZ",
                    help="separate representative data set for calibration (default: a split of --qcheck-data)")
    group.addoption("--qcheck-calibration-samples", dest="qcheck_calibration_samples", type=int, metavar="N",
                    help=f"calibration samples (default {DEFAULT_CALIBRATION_SAMPLES})")
    group.addoption("--qcheck-reference", dest="qcheck_reference", metavar="PATH",
                    help="float model to compare an already quantized .tflite with")
    group.addoption("--qcheck-image-size", dest="qcheck_image_size", metavar="HxW",
                    help="resize images of an image-folder data set to this size (default: as they are)")
    group.addoption("--qcheck-image-scale", dest="qcheck_image_scale", type=float, metavar="FACTOR",
                    help="multiply image pixels by this (default 1/255)")
    group.addoption("--qcheck-image-offset", dest="qcheck_image_offset", type=float, metavar="VALUE",
                    help="then add this (default 0)")
    group.addoption("--qcheck-image-mode", dest="qcheck_image_mode", choices=("RGB", "L"),
                    help="colour mode of images: RGB (3 channels, default) or L (1 channel)")
    group.addoption("--qcheck-io", dest="qcheck_io", choices=("uint8", "int8"),
                    help="dtype of the quantized model's input and output (default uint8)")
    group.addoption("--qcheck-activations", dest="qcheck_activations", choices=ACTIVATIONS,
                    help="activations of the conversion: int8 (full integer, default) or int16 (int16x8: int16 "
                         "activations and I/O, int8 weights); over the suite's [quantization] activations")
    group.addoption("--qcheck-stateful", dest="qcheck_stateful", choices=("reset", "keep"),
                    help="a model with state (variable tensors, e.g. an LSTM): reset it before each sample "
                         "(default), or keep it when the data is one long sequence")
    group.addoption("--qcheck-unsafe-deserialization", dest="qcheck_unsafe_deserialization", action="store_true",
                    help="UNSAFE: allow Keras Lambda layers, whose Python code runs when the model loads")
    group.addoption("--qcheck-suite", dest="qcheck_suite", metavar="NAME|PATH",
                    help="suite of checks and thresholds: a built-in name or a .toml path (default: default)")
    group.addoption("--qcheck-accelerator", dest="qcheck_accelerator", metavar="LIST",
                    help=f"Ethos-U configuration(s) for the vela check, comma separated (default {DEFAULT_ACCELERATOR})")
    group.addoption("--qcheck-out", dest="qcheck_out", metavar="DIR",
                    help=f"artifact folder: quantized models, quantization info, Vela output (default {DEFAULT_OUT})")
    group.addoption("--qcheck-json", dest="qcheck_json", metavar="PATH", help="write the JSON report here")
    group.addoption("--qcheck-html", dest="qcheck_html", metavar="PATH",
                    help="write a self-contained HTML report here (charts, Vela placement, budgets)")
    group.addoption("--qcheck-csv", dest="qcheck_csv", metavar="DIR",
                    help="write per-model tables (checks, tensors, layers, size) as CSV files into DIR")
    group.addoption("--qcheck-cache-dir", dest="qcheck_cache_dir", metavar="DIR",
                    help="cache of conversions and evaluations (default: inside pytest's cache folder)")
    group.addoption("--qcheck-no-cache", dest="qcheck_no_cache", action="store_true",
                    help="neither read nor write the qcheck cache")
    group.addoption("--qcheck-cache-clear", dest="qcheck_cache_clear", action="store_true",
                    help="empty the qcheck cache before the run (only a folder qcheck made)")
    group.addoption("--qcheck-timeout", dest="qcheck_timeout", type=float, metavar="SECONDS",
                    help="time limit for one conversion, evaluation, property search or Vela compilation (default 900)")
    for dest, (check, key) in THRESHOLD_OPTIONS.items():
        flag = "--" + dest.replace("_", "-")
        group.addoption(flag, dest=dest, metavar="VALUE", help=f"override {check}.{key} of the suite")
    group.addoption("--qcheck-set", dest="qcheck_set", action="append", default=[], metavar="CHECK.KEY=VALUE",
                    help="override any suite setting, e.g. accuracy_drop.max=2%% (repeatable)")

    parser.addini("qcheck_models", "models to check (paths relative to the ini file)", type="paths", default=[])
    parser.addini("qcheck_data", "evaluation data .npz (relative to the ini file)", default="")
    parser.addini("qcheck_calibration", "calibration data .npz (relative to the ini file)", default="")
    parser.addini("qcheck_suite", "suite name or path", default="")
    parser.addini("qcheck_accelerator", "Ethos-U configuration(s), comma separated", default="")
    parser.addini("qcheck_out", "artifact folder (relative to the ini file)", default="")
    parser.addini("qcheck_cache_dir", "cache folder (relative to the ini file)", default="")


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    # With -n and no --dist, pytest-xdist would spread one model's checks over workers, and each
    # would convert the model again: group them per model instead. An explicit --dist wins.
    # (A wrapper runs before xdist's own hook, which turns an unset --dist into "load".) Only
    # runs given --qcheck-model are changed; with models from files, pass --dist loadgroup.
    option = config.option
    if getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no" and option.qcheck_model:
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
    config.pluginmanager.register(_LateResults(config), "qcheck-late-results")
    config.pluginmanager.register(_BrokenSuiteFiles(config), "qcheck-broken-suite-files")
    # Every pytest run of the environment loads this plugin: the session (numpy, the checks,
    # the suite) is made only when qcheck is used. Asked for here, bad options and suites are
    # usage errors before anything runs; otherwise a suite file, marker or fixture makes it.
    from qcheck.project import ProjectConfig

    if project_of(config) != ProjectConfig() or any(
        value not in (None, False, [], "") for dest, value in vars(config.option).items() if dest.startswith("qcheck_")
    ):
        session_of(config)


def session_of(config: pytest.Config) -> QcheckSession:
    """The run's qcheck session, made and registered on first use."""
    qsession = config.stash.get(SESSION_KEY, None)
    if qsession is not None:
        return qsession
    from qcheck.errors import QcheckError
    from qcheck.progress import Progress
    from qcheck.session import QcheckSession
    from qcheck.suites import load_suite

    settings = _settings(config, project_of(config))
    try:
        suite = load_suite(settings.suite).with_overrides(settings.overrides, "the command line")
    except QcheckError as exc:
        raise pytest.UsageError(f"qcheck: {exc}") from None
    settings = replace(settings, quantization=suite.quantization_for(settings.activations))
    if settings.quantization.activations == "int16" and config.option.qcheck_io:
        raise pytest.UsageError(f"qcheck: --qcheck-io={config.option.qcheck_io} does not apply to int16 activations: "
                                "an int16x8 model takes and returns int16 (drop --qcheck-io, or convert with int8 "
                                "activations)")
    qsession = QcheckSession(settings, suite, Progress(config))
    _check_outputs(config, settings, qsession)
    _prepare_cache(config, qsession)
    config.stash[SESSION_KEY] = qsession
    config.pluginmanager.register(qsession, "qcheck-session")
    from qcheck.items import FactsCourier

    config.pluginmanager.register(FactsCourier(qsession), "qcheck-facts")
    return qsession


def _check_outputs(config: pytest.Config, settings: Settings, qsession: QcheckSession) -> None:
    """Output folders and report paths qcheck cannot write are usage errors, before anything runs."""
    from qcheck.files import check_output_file, check_output_folder

    out_option = "--qcheck-out" if config.option.qcheck_out else "qcheck_out ([tool.qcheck] out)"
    problems = [check_output_folder(out_option, settings.out_dir)]
    out = settings.out_dir
    if (not config.option.qcheck_out and not project_of(config).out and out.is_symlink()
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
    found = [problem for problem in [*problems, *qsession.clashes()] if problem]
    if found:
        raise pytest.UsageError("\n".join(f"qcheck: {problem}" for problem in found))


def project_of(config: pytest.Config) -> ProjectConfig:
    """The project's defaults ([tool.qcheck] and ini keys), read once."""
    project = config.stash.get(PROJECT_KEY, None)
    if project is None:
        project = config.stash[PROJECT_KEY] = _project(config)
    return project


class _LateResults:
    """Hands results to a session made after the run started: under xdist, the controller
    collects nothing, and meets qcheck only in its workers' reports."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if SESSION_KEY in self._config.stash:
            return  # the session's own hook has it
        from qcheck.results import RESULT_PROPERTY

        if any(name == RESULT_PROPERTY for name, _ in report.user_properties):
            # Registered now, the session misses this one call of the hook: pass it on.
            session_of(self._config).pytest_runtest_logreport(report)


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


def _project(config: pytest.Config) -> ProjectConfig:
    """The project's defaults: [tool.qcheck] in pyproject.toml and the qcheck_* ini keys."""
    from qcheck.errors import QcheckError
    from qcheck.project import INI_KEYS, find_pyproject, project_config

    ini = {key: config.getini(key) for key in INI_KEYS.values()}
    opt = config.option
    # A folder the command line gives is trusted; the configuration's, then unused, is not confined.
    overridden = frozenset({*(["out"] if opt.qcheck_out else []),
                            *(["cache_dir"] if opt.qcheck_cache_dir or opt.qcheck_no_cache else [])})
    try:
        return project_config(find_pyproject(config.rootpath, config.inipath), ini, config.inipath, overridden)
    except QcheckError as exc:
        raise pytest.UsageError(f"qcheck: {exc}") from None


def _settings(config: pytest.Config, project: ProjectConfig) -> Settings:
    """The command line over the project's defaults over the built-in ones."""
    from qcheck.project import unique_models
    from qcheck.vela import ACCELERATORS

    opt = config.option
    models, notes = unique_models(tuple(opt.qcheck_model) or project.models, config.invocation_params.dir)
    accelerators = (tuple(a.strip() for a in (opt.qcheck_accelerator or "").split(",") if a.strip())
                    or project.accelerators)
    for accelerator in accelerators:
        if accelerator not in ACCELERATORS:
            raise pytest.UsageError(f"qcheck: unknown accelerator '{accelerator}'; choose from {', '.join(ACCELERATORS)}")
    samples = opt.qcheck_calibration_samples
    if samples is not None and samples < 1:
        raise pytest.UsageError("qcheck: --qcheck-calibration-samples must be at least 1")
    if opt.qcheck_timeout is not None and not 0 < opt.qcheck_timeout < float("inf"):
        raise pytest.UsageError(f"qcheck: --qcheck-timeout must be a positive number of seconds, not {opt.qcheck_timeout:g}")
    out = opt.qcheck_out or project.out or DEFAULT_OUT
    return Settings(
        models=models,
        data=opt.qcheck_data or project.data,
        calibration=opt.qcheck_calibration or project.calibration,
        calibration_samples=samples or project.calibration_samples or DEFAULT_CALIBRATION_SAMPLES,
        reference=opt.qcheck_reference or project.reference,
        io_dtype=opt.qcheck_io or "uint8",
        unsafe_deserialization=bool(opt.qcheck_unsafe_deserialization),
        stateful=opt.qcheck_stateful or "reset",
        activations=opt.qcheck_activations,
        suite=opt.qcheck_suite or project.suite or "default",
        accelerators=accelerators,
        out_dir=Path(out),
        json_path=Path(opt.qcheck_json) if opt.qcheck_json else None,
        html_path=Path(opt.qcheck_html) if opt.qcheck_html else None,
        csv_dir=Path(opt.qcheck_csv) if opt.qcheck_csv else None,
        # pytest-html's --html option; absent when pytest-html is not installed.
        pytest_html_extras=bool(getattr(opt, "htmlpath", None)),
        overrides=_overrides(config),
        timeout=opt.qcheck_timeout or 900.0,
        images=_image_options(opt),
        cache_dir=_cache_dir(config, project.cache_dir),
        notes=notes,
    )


def _image_options(opt: Any) -> ImageOptions:
    size = None
    if opt.qcheck_image_size:
        height, sep, width = opt.qcheck_image_size.lower().partition("x")
        if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
            raise pytest.UsageError(f"qcheck: --qcheck-image-size expects HxW, e.g. 96x96, not {opt.qcheck_image_size!r}")
        size = (int(height), int(width))
    defaults = ImageOptions()
    return ImageOptions(
        size=size,
        scale=defaults.scale if opt.qcheck_image_scale is None else opt.qcheck_image_scale,
        offset=defaults.offset if opt.qcheck_image_offset is None else opt.qcheck_image_offset,
        mode=opt.qcheck_image_mode or defaults.mode,
    )


def _cache_dir(config: pytest.Config, ini_value: str | None) -> Path | None:
    opt = config.option
    if opt.qcheck_no_cache:
        return None
    chosen: str | None = opt.qcheck_cache_dir or ini_value
    if chosen:
        return Path(chosen).resolve()
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if cache is None:
        return None
    try:
        folder: Path = cache.mkdir("qcheck")
        return folder
    except OSError:  # a file where qcheck's folder goes: damage, which _prepare_cache replaces
        base = Path(os.path.expandvars(os.path.expanduser(config.getini("cache_dir"))))
        return (base if base.is_absolute() else config.rootpath / base) / "d" / "qcheck"


def _prepare_cache(config: pytest.Config, qsession: QcheckSession) -> None:
    """Check that the cache folder is qcheck's to use (a usage error if not), and clear it if
    asked (on the controller only: xdist workers start after it)."""
    from qcheck.cache import CacheFolderError

    opt = config.option
    given = "--qcheck-cache-dir" if opt.qcheck_cache_dir else "qcheck_cache_dir" if project_of(config).cache_dir else ""
    clear = bool(opt.qcheck_cache_clear) and not hasattr(config, "workerinput")
    try:
        # Only qcheck's own place in pytest's cache folder is repaired; a folder the user named is refused.
        qsession.cache.prepare(clear=clear, reclaim=not given)
    except CacheFolderError as exc:
        raise pytest.UsageError(f"qcheck: {given or 'the cache folder'}: {exc}") from None


def _overrides(config: pytest.Config) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for dest, (check, key) in THRESHOLD_OPTIONS.items():
        value = getattr(config.option, dest, None)
        if value is not None:
            overrides.setdefault(check, {})[key] = with_default_unit(dest, value)
    for item in config.option.qcheck_set:
        target, sep, value = item.partition("=")
        check, dot, key = target.strip().partition(".")
        if not (sep and dot and check and key):
            raise pytest.UsageError(f"qcheck: --qcheck-set expects CHECK.KEY=VALUE, got {item!r}")
        overrides.setdefault(check, {})[key] = _toml_scalar(value.strip())
    return overrides


def _toml_scalar(text: str) -> Any:
    """Read a command-line value as TOML would (numbers, booleans), else keep the string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


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

        return QcheckFile.from_parent(parent, path=file_path)
    return None


# -- fixtures for users' own tests -------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qcheck_run_spec" in metafunc.fixturenames:
        from qcheck.markers import parametrization

        specs, ids = parametrization(metafunc.definition, session_of(metafunc.config).settings,
                                     project_of(metafunc.config))
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
