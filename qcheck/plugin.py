"""pytest wiring for qcheck: options, ini keys, fixtures, and the session object.

An installed pytest11 plugin is imported by every pytest run of its environment, so this
module imports nothing heavy: TensorFlow, LiteRT, Vela, pandas are loaded where they are used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from qcheck.config import DEFAULT_CALIBRATION_SAMPLES, DEFAULT_OUT, THRESHOLD_OPTIONS, Settings

if TYPE_CHECKING:
    from qcheck.data import Dataset
    from qcheck.quantized import QuantizedModel
    from qcheck.session import QcheckSession

SESSION_KEY = pytest.StashKey["QcheckSession"]()
_NO_MODEL = "no model: pass --qcheck-model=PATH (or set qcheck_models in the ini file)"


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
    group.addoption("--qcheck-io", dest="qcheck_io", choices=("uint8", "int8"),
                    help="dtype of the quantized model's input and output (default uint8)")
    group.addoption("--qcheck-unsafe-deserialization", dest="qcheck_unsafe_deserialization", action="store_true",
                    help="UNSAFE: allow Keras Lambda layers, whose Python code runs when the model loads")
    group.addoption("--qcheck-suite", dest="qcheck_suite", metavar="NAME|PATH",
                    help="suite of checks and thresholds: a built-in name or a .toml path (default: default)")
    group.addoption("--qcheck-accelerator", dest="qcheck_accelerator", metavar="LIST",
                    help="Ethos-U configuration(s) for the vela check, comma separated (default ethos-u55-128)")
    group.addoption("--qcheck-out", dest="qcheck_out", metavar="DIR",
                    help=f"artifact folder: quantized models, quantization info, Vela output (default {DEFAULT_OUT})")
    group.addoption("--qcheck-json", dest="qcheck_json", metavar="PATH", help="write the JSON report here")
    group.addoption("--qcheck-cache-dir", dest="qcheck_cache_dir", metavar="DIR",
                    help="cache of conversions and evaluations (default: inside pytest's cache folder)")
    group.addoption("--qcheck-no-cache", dest="qcheck_no_cache", action="store_true",
                    help="neither read nor write the qcheck cache")
    group.addoption("--qcheck-cache-clear", dest="qcheck_cache_clear", action="store_true",
                    help="empty the qcheck cache before the run")
    group.addoption("--qcheck-timeout", dest="qcheck_timeout", type=float, metavar="SECONDS",
                    help="time limit for one conversion, evaluation or Vela compilation (default 900)")
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qcheck_check(name): a qcheck check item (set by qcheck)")
    from qcheck.errors import QcheckError
    from qcheck.session import QcheckSession
    from qcheck.suites import load_suite

    settings = _settings(config)
    try:
        suite = load_suite(settings.suite).with_overrides(settings.overrides, "the command line")
    except QcheckError as exc:
        raise pytest.UsageError(f"qcheck: {exc}") from None
    qsession = QcheckSession(settings, suite)
    if config.option.qcheck_cache_clear and not hasattr(config, "workerinput"):
        qsession.cache.clear()
    config.stash[SESSION_KEY] = qsession
    config.pluginmanager.register(qsession, "qcheck-session")


def _settings(config: pytest.Config) -> Settings:
    from qcheck.vela import ACCELERATORS

    opt = config.option
    base = config.inipath.parent if config.inipath else config.rootpath

    def ini_path(key: str) -> str | None:
        value = str(config.getini(key) or "")
        return str(base / value) if value else None

    models = tuple(opt.qcheck_model) or tuple(str(p) for p in config.getini("qcheck_models"))
    accelerators = tuple(a.strip() for a in (opt.qcheck_accelerator or config.getini("qcheck_accelerator") or "").split(",") if a.strip())
    for accelerator in accelerators:
        if accelerator not in ACCELERATORS:
            raise pytest.UsageError(f"qcheck: unknown accelerator '{accelerator}'; choose from {', '.join(ACCELERATORS)}")
    samples = opt.qcheck_calibration_samples
    if samples is not None and samples < 1:
        raise pytest.UsageError("qcheck: --qcheck-calibration-samples must be at least 1")
    out = opt.qcheck_out or ini_path("qcheck_out") or DEFAULT_OUT
    return Settings(
        models=models,
        data=opt.qcheck_data or ini_path("qcheck_data"),
        calibration=opt.qcheck_calibration or ini_path("qcheck_calibration"),
        calibration_samples=samples or DEFAULT_CALIBRATION_SAMPLES,
        reference=opt.qcheck_reference,
        io_dtype=opt.qcheck_io or "uint8",
        unsafe_deserialization=bool(opt.qcheck_unsafe_deserialization),
        suite=opt.qcheck_suite or str(config.getini("qcheck_suite") or "") or "default",
        accelerators=accelerators,
        out_dir=Path(out),
        json_path=Path(opt.qcheck_json) if opt.qcheck_json else None,
        overrides=_overrides(config),
        timeout=opt.qcheck_timeout or 900.0,
        cache_dir=_cache_dir(config, ini_path("qcheck_cache_dir")),
    )


def _cache_dir(config: pytest.Config, ini_value: str | None) -> Path | None:
    opt = config.option
    if opt.qcheck_no_cache:
        return None
    if opt.qcheck_cache_dir or ini_value:
        return Path(opt.qcheck_cache_dir or ini_value).resolve()
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    return cache.mkdir("qcheck") if cache is not None else None


def _overrides(config: pytest.Config) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for dest, (check, key) in THRESHOLD_OPTIONS.items():
        value = getattr(config.option, dest, None)
        if value is not None:
            overrides.setdefault(check, {})[key] = value
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
    qsession = config.stash.get(SESSION_KEY, None)
    if qsession is None or not qsession.settings.models:
        return
    from qcheck.items import QcheckModels

    collector = QcheckModels.from_parent(session, name="qcheck", nodeid=_collector_nodeid(config), qsession=qsession)
    new = list(collector.collect())
    # Report them as collected, so that "collected N items", --co and xdist count them.
    config.hook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, new))
    items.extend(new)


def _collector_nodeid(config: pytest.Config) -> str:
    """'qcheck', placed in the invocation folder so that pytest shows it as 'qcheck::...'."""
    here = config.invocation_params.dir
    if here == config.rootpath or not here.is_relative_to(config.rootpath):
        return "qcheck"
    return f"{here.relative_to(config.rootpath).as_posix()}/qcheck"


# -- fixtures for users' own tests -------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qcheck_model_path" in metafunc.fixturenames:
        models = metafunc.config.stash[SESSION_KEY].settings.models
        metafunc.parametrize("qcheck_model_path", list(models) or [None], ids=list(models) or ["no-model"], scope="session")


@pytest.fixture(scope="session")
def qcheck_session(pytestconfig: pytest.Config) -> QcheckSession:
    """The run's qcheck session: settings, suite and per-model pipelines."""
    return pytestconfig.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def qcheck_model_path(request: pytest.FixtureRequest) -> str:
    """The path of the model under test, as given (tests run once per model)."""
    param = getattr(request, "param", None)
    if param is None:
        pytest.skip(_NO_MODEL)
    return str(param)


@pytest.fixture(scope="session")
def qcheck_quantized(qcheck_session: QcheckSession, qcheck_model_path: str) -> QuantizedModel:
    """The quantized model: bytes, path, tensor table, I/O parameters, and a call that runs it."""
    from qcheck.quantized import QuantizedModel

    run = qcheck_session.run(qcheck_session.settings.run_spec(qcheck_model_path))
    return QuantizedModel(run.tflite_path(), run.tflite(), run.info())


@pytest.fixture(scope="session")
def qcheck_model(qcheck_session: QcheckSession, qcheck_model_path: str) -> Any:
    """The float Keras model (the reference model for an already quantized .tflite)."""
    from qcheck.tflite.convert import load_float_model

    run = qcheck_session.run(qcheck_session.settings.run_spec(qcheck_model_path))
    path = qcheck_model_path if run.kind != "tflite" else qcheck_session.settings.reference
    if path is None:
        pytest.skip(f"{qcheck_model_path} is already quantized; pass --qcheck-reference=FLOAT_MODEL")
    return load_float_model(Path(path), unsafe=qcheck_session.settings.unsafe_deserialization)


@pytest.fixture(scope="session")
def qcheck_data(qcheck_session: QcheckSession, qcheck_model_path: str) -> Dataset:
    """The evaluation data of the model under test (the samples not used for calibration)."""
    data = qcheck_session.run(qcheck_session.settings.run_spec(qcheck_model_path)).evaluation_data()
    if data is None:
        pytest.skip("no data: pass --qcheck-data=val.npz")
    return data
