"""Settings resolved once, for every entry point: the README's precedence table as code.

Each setting comes from the first of: the command line, ``@pytest.mark.qcheck``, the suite file,
``[tool.qcheck]`` (or the ini keys), the built-in defaults. This module knows nothing of pytest:
``qcheck.plugin`` reads ``config.option`` and the ini keys in one place and hands them in as an
:class:`Invocation` (plain values); suite files, markers and the Python API ask the functions
below for their :class:`~qcheck.config.RunSpec` and accelerators.

Adding a command-line option is one entry in :data:`FLAGS` (its flag, help and parsing) and, if
it is a run setting, one field of :class:`~qcheck.config.Settings` read in :func:`resolve`; a
field that :class:`~qcheck.config.RunSpec` shares with ``Settings`` reaches every model through
:func:`run_spec` by its name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from qcheck.config import (
    ACTIVATIONS,
    CommandLine,
    DEFAULT_ACCELERATOR,
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_OUT,
    DEFAULT_TIMEOUT,
    THRESHOLD_OPTIONS,
    ImageOptions,
    Quantization,
    RunSpec,
    Settings,
    with_default_unit,
)
from qcheck.project import ProjectConfig, looks_like_path, unique_models

if TYPE_CHECKING:
    from qcheck.suites import CheckSpec, Suite


class UsageProblem(Exception):
    """A setting that cannot be used; the plugin turns it into a pytest usage error."""


# -- the command line ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One ``--qcheck-*`` option: what ``pytest_addoption`` declares (``dest`` is ``qcheck_*``)."""

    dest: str
    help: str
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    action: str | None = None
    default: Any = None

    @property
    def name(self) -> str:
        return "--" + self.dest.replace("_", "-")

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``parser.addoption``."""
        given = {"metavar": self.metavar, "type": self.type, "choices": self.choices, "action": self.action}
        return {"dest": self.dest, "help": self.help, "default": self.default,
                **{key: value for key, value in given.items() if value is not None}}


FLAGS: tuple[Flag, ...] = (
    Flag("qcheck_model", "model to check: .keras, .h5, .tflite or a SavedModel directory (repeatable)",
         "PATH", action="append", default=[]),
    Flag("qcheck_data", "evaluation data: .npz with 'x' and labels 'y' or 'y_<output name>'", "NPZ"),
    Flag("qcheck_calibration", "separate representative data set for calibration (default: a split of --qcheck-data)",
         "NPZ"),
    Flag("qcheck_calibration_samples", f"calibration samples (default {DEFAULT_CALIBRATION_SAMPLES})", "N", int),
    Flag("qcheck_reference", "float model to compare an already quantized .tflite with", "PATH"),
    Flag("qcheck_image_size", "resize images of an image-folder data set to this size (default: as they are)", "HxW"),
    Flag("qcheck_image_scale", "multiply image pixels by this (default 1/255)", "FACTOR", float),
    Flag("qcheck_image_offset", "then add this (default 0)", "VALUE", float),
    Flag("qcheck_image_mode", "colour mode of images: RGB (3 channels, default) or L (1 channel)",
         choices=("RGB", "L")),
    Flag("qcheck_io", "dtype of the quantized model's input and output (default uint8)", choices=("uint8", "int8")),
    Flag("qcheck_activations", "activations of the conversion: int8 (full integer, default) or int16 (int16x8: "
         "int16 activations and I/O, int8 weights); over the suite's [quantization] activations", choices=ACTIVATIONS),
    Flag("qcheck_stateful", "a model with state (variable tensors or resource variables, e.g. an LSTM): reset it "
         "before each sample (default), or keep it when the data is one long sequence", choices=("reset", "keep")),
    Flag("qcheck_unsafe_deserialization", "UNSAFE: allow Keras Lambda layers, whose Python code runs when the model "
         "loads", action="store_true"),
    Flag("qcheck_suite", "suite of checks and thresholds: a built-in name or a .toml path (default: default)",
         "NAME|PATH"),
    Flag("qcheck_accelerator", f"Ethos-U configuration(s) for the vela check, comma separated (default "
         f"{DEFAULT_ACCELERATOR})", "LIST"),
    Flag("qcheck_out", f"artifact folder: quantized models, quantization info, Vela output (default {DEFAULT_OUT})",
         "DIR"),
    Flag("qcheck_json", "write the JSON report here", "PATH"),
    Flag("qcheck_html", "write a self-contained HTML report here (charts, Vela placement, budgets)", "PATH"),
    Flag("qcheck_csv", "write per-model tables (checks, tensors, layers, size) as CSV files into DIR", "DIR"),
    Flag("qcheck_cache_dir", "cache of conversions and evaluations (default: inside pytest's cache folder)", "DIR"),
    Flag("qcheck_no_cache", "neither read nor write the qcheck cache", action="store_true"),
    Flag("qcheck_cache_clear", "empty the qcheck cache before the run (only a folder qcheck made)",
         action="store_true"),
    Flag("qcheck_baseline", "compare each model with its baseline in DIR (the last good run's figures); "
         "a model without one fails", "DIR"),
    Flag("qcheck_baseline_update", "write or refresh the baselines in --qcheck-baseline's DIR for the models that run",
         action="store_true"),
    Flag("qcheck_shard", "run part K of N (each model with all its checks in one part), for a CI matrix", "K/N"),
    Flag("qcheck_shard_costs", "balance --qcheck-shard by these costs ('python -m qcheck merge --costs' writes them)",
         "FILE"),
    Flag("qcheck_remedies", "where accuracy_drop or saturation fails, try other [quantization] recipes and print "
         "what each measures and costs (also: [remedies] enabled = true in the suite)", action="store_true"),
    Flag("qcheck_timeout", "time limit for one conversion, evaluation, property search or Vela compilation "
         "(default 900)", "SECONDS", float),
    *(Flag(dest, f"override {check}.{key} of the suite", "VALUE") for dest, (check, key) in THRESHOLD_OPTIONS.items()),
    Flag("qcheck_set", "override any suite setting, e.g. accuracy_drop.max=2%% (repeatable)", "CHECK.KEY=VALUE",
         action="append", default=[]),
)

# The qcheck_* ini keys: (key, help, pytest's type). qcheck.project reads their values (INI_KEYS there
# maps each to its [tool.qcheck] key).
INI_KEYS: tuple[tuple[str, str, Literal["string", "paths"]], ...] = (
    ("qcheck_models", "models to check (paths relative to the ini file)", "paths"),
    ("qcheck_data", "evaluation data .npz (relative to the ini file)", "string"),
    ("qcheck_calibration", "calibration data .npz (relative to the ini file)", "string"),
    ("qcheck_suite", "suite name or path", "string"),
    ("qcheck_accelerator", "Ethos-U configuration(s), comma separated", "string"),
    ("qcheck_out", "artifact folder (relative to the ini file)", "string"),
    ("qcheck_cache_dir", "cache folder (relative to the ini file)", "string"),
    ("qcheck_baseline", "baseline folder (relative to the ini file)", "string"),
)


@dataclass(frozen=True)
class Invocation:
    """What the resolver reads of a pytest run, as plain values (``qcheck.plugin`` builds it)."""

    options: Mapping[str, Any]  # config.option's values by dest; a missing dest is not given
    here: Path  # the folder pytest was started in
    project: ProjectConfig = ProjectConfig()
    pytest_cache: Callable[[], Path | None] = lambda: None  # qcheck's folder in pytest's cache, made on use
    pytest_html: bool = False  # pytest-html writes a report (its --html)

    def get(self, dest: str) -> Any:
        return self.options.get(dest)

    def uses_qcheck(self) -> bool:
        """Whether any qcheck option is given (a run without one must cost nothing)."""
        return any(value not in (None, False, [], "") for dest, value in self.options.items()
                   if dest.startswith("qcheck_"))


def command_line(inv: Invocation) -> CommandLine:
    """The command line's own settings, checked; paths made absolute against ``inv.here``."""
    suite = inv.get("qcheck_suite")
    if suite and looks_like_path(suite):
        suite = str((inv.here / suite).resolve())
    samples = inv.get("qcheck_calibration_samples")
    if samples is not None and samples < 1:
        raise UsageProblem("--qcheck-calibration-samples must be at least 1")
    return CommandLine(suite or None, _accelerators(inv.get("qcheck_accelerator")), samples, _overrides(inv))


def resolve(inv: Invocation) -> tuple[Settings, Suite]:
    """The run's settings (the command line over the project's defaults over the built-in ones)
    and its suite (the command line's thresholds over it). Raises UsageProblem."""
    from qcheck.errors import QcheckError
    from qcheck.suites import load_suite

    settings = _settings(inv)
    try:
        suite = load_suite(settings.suite).with_overrides(settings.overrides, "the command line")
    except QcheckError as exc:
        raise UsageProblem(str(exc)) from None
    quantization = suite.quantization_for(settings.activations)
    settings = replace(settings, quantization=quantization,
                       calibration_samples=calibration_samples(settings.command_line, None, inv.project,
                                                               quantization.calibration_samples))
    io = inv.get("qcheck_io")
    if settings.quantization.activations == "int16" and io:
        raise UsageProblem(f"--qcheck-io={io} does not apply to int16 activations: an int16x8 model takes and "
                           "returns int16 (drop --qcheck-io, or convert with int8 activations)")
    return settings, suite


def _settings(inv: Invocation) -> Settings:
    cli = command_line(inv)
    project = inv.project
    accelerators = cli.accelerators or project_accelerators(cli, project)
    _known_accelerators(accelerators)
    timeout = inv.get("qcheck_timeout")
    if timeout is not None and not 0 < timeout < math.inf:
        raise UsageProblem(f"--qcheck-timeout must be a positive number of seconds, not {timeout:g}")
    models, notes = unique_models(tuple(inv.get("qcheck_model") or ()) or project.models, inv.here)
    baseline = inv.get("qcheck_baseline") or project.baseline
    if inv.get("qcheck_baseline_update") and not baseline:
        raise UsageProblem("--qcheck-baseline-update needs the baseline folder: pass --qcheck-baseline=DIR "
                           "(or set baseline = \"DIR\" in [tool.qcheck])")
    return Settings(
        models=models,
        data=inv.get("qcheck_data") or project.data,
        calibration=inv.get("qcheck_calibration") or project.calibration,
        calibration_samples=calibration_samples(cli, None, project),
        reference=inv.get("qcheck_reference") or project.reference,
        io_dtype=inv.get("qcheck_io") or "uint8",
        unsafe_deserialization=bool(inv.get("qcheck_unsafe_deserialization")),
        stateful=inv.get("qcheck_stateful") or "reset",
        activations=inv.get("qcheck_activations"),
        suite=inv.get("qcheck_suite") or project.suite or "default",
        accelerators=accelerators,
        out_dir=Path(inv.get("qcheck_out") or project.out or DEFAULT_OUT),
        json_path=_path(inv.get("qcheck_json")),
        html_path=_path(inv.get("qcheck_html")),
        csv_dir=_path(inv.get("qcheck_csv")),
        pytest_html_extras=inv.pytest_html,
        overrides=cli.overrides,
        timeout=timeout or DEFAULT_TIMEOUT,
        remedies=bool(inv.get("qcheck_remedies")),
        images=_image_options(inv),
        cache_dir=_cache_dir(inv),
        notes=notes,
        command_line=cli,
        baseline_dir=Path(baseline).absolute() if baseline else None,
        baseline_update=bool(inv.get("qcheck_baseline_update")),
    )


def project_accelerators(cli: CommandLine, project: ProjectConfig) -> tuple[str, ...]:
    """``[tool.qcheck] accelerator``, unless the command line names one (``--qcheck-set
    vela.accelerator=...``): the command line comes first, whichever of its flags says it."""
    if any("accelerator" in table for table in cli.overrides.values()):
        return ()
    return project.accelerators


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _accelerators(text: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (text or "").split(",") if a.strip())


def _known_accelerators(accelerators: tuple[str, ...]) -> None:
    from qcheck.vela import ACCELERATORS

    for accelerator in accelerators:
        if accelerator not in ACCELERATORS:
            raise UsageProblem(f"unknown accelerator '{accelerator}'; choose from {', '.join(ACCELERATORS)}")


def _image_options(inv: Invocation) -> ImageOptions:
    size = None
    text = inv.get("qcheck_image_size")
    if text:
        height, sep, width = text.lower().partition("x")
        if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
            raise UsageProblem(f"--qcheck-image-size expects HxW, e.g. 96x96, not {text!r}")
        size = (int(height), int(width))
    defaults = ImageOptions()
    scale, offset = inv.get("qcheck_image_scale"), inv.get("qcheck_image_offset")
    return ImageOptions(size=size, scale=defaults.scale if scale is None else scale,
                        offset=defaults.offset if offset is None else offset,
                        mode=inv.get("qcheck_image_mode") or defaults.mode)


def _cache_dir(inv: Invocation) -> Path | None:
    if inv.get("qcheck_no_cache"):
        return None
    chosen: str | None = inv.get("qcheck_cache_dir") or inv.project.cache_dir
    return Path(chosen).resolve() if chosen else inv.pytest_cache()


def _overrides(inv: Invocation) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for dest, (check, key) in THRESHOLD_OPTIONS.items():
        value = inv.get(dest)
        if value is not None:
            overrides.setdefault(check, {})[key] = with_default_unit(dest, value)
    if inv.get("qcheck_baseline") or inv.project.baseline:
        overrides.setdefault("baseline", {})["enabled"] = True  # a baseline folder turns the check on
    for item in inv.get("qcheck_set") or ():
        target, sep, value = item.partition("=")
        check, dot, key = target.strip().partition(".")
        if not (sep and dot and check and key):
            raise UsageProblem(f"--qcheck-set expects CHECK.KEY=VALUE, got {item!r}")
        overrides.setdefault(check, {})[key] = _toml_scalar(value.strip())
    return overrides


def _toml_scalar(text: str) -> Any:
    """Read a command-line value as TOML would (numbers, booleans), else keep the string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# -- what each model runs with -------------------------------------------------------------------

_SHARED = tuple(f.name for f in fields(RunSpec) if f.name != "model")  # Settings has a field of each name


def run_spec(settings: Settings, model: str, **own: Any) -> RunSpec:
    """What ``model`` is checked with: the entry point's own values (``own``, by RunSpec field
    name, ``None`` included) over the run's settings. The one place a RunSpec is made."""
    unknown = set(own) - set(_SHARED)
    if unknown:
        raise TypeError(f"RunSpec has no field {sorted(unknown)[0]!r}")
    values = {name: own.get(name, getattr(settings, name)) for name in _SHARED}
    values["calibration"] = calibration_set(values["calibration"], values["quantization"])
    return RunSpec(model=model, **values)


def calibration_set(calibration: str | None, quantization: Quantization) -> str | None:
    """The separate calibration set a model is calibrated on: none where the recipe says
    ``calibration_from = "data"`` (a seeded split of the data calibrates it, as without one)."""
    return None if quantization.calibration_from == "data" else calibration


def named_model_spec(settings: Settings, model: str, *, data: str | None, calibration: str | None,
                     reference: str | None, project: ProjectConfig, **own: Any) -> RunSpec:
    """A model named by a suite file or a marker: its own data, else ``[tool.qcheck]``'s.

    The command line's data goes with the command line's models only, so ``--qcheck-data`` never
    feeds another model's test (see the README's precedence).
    """
    return run_spec(settings, model, data=data or project.data, calibration=calibration or project.calibration,
                    reference=reference or project.reference, **own)


def calibration_samples(cli: CommandLine, file_value: int | None, project: ProjectConfig,
                        recipe: int | None = None) -> int:
    """Command line, the suite's ``[quantization] calibration_samples`` (a recipe), the suite
    file's own ``calibration_samples``, ``[tool.qcheck]``, built-in."""
    return (cli.calibration_samples or recipe or file_value or project.calibration_samples
            or DEFAULT_CALIBRATION_SAMPLES)


def suite_extends(cli: CommandLine, file_extends: Any, project: ProjectConfig) -> Any:
    """What a suite file builds on: ``--qcheck-suite``, its ``extends`` (as written: the suite
    loader validates it), ``[tool.qcheck] suite``, ``default``."""
    if cli.suite is not None:
        return cli.suite
    return file_extends if file_extends is not None else project.suite or "default"


def accelerators(spec: CheckSpec, suite: Suite, *, command_line: tuple[str, ...] = (),
                 own_table: bool = False, project: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The accelerators a per-accelerator check runs for: ``--qcheck-accelerator``, then an
    ``accelerator`` in the suite file's own ``[checks.*]`` table (``own_table``), then
    ``[tool.qcheck] accelerator``, then the suite's (the check's table, else the vela table's,
    which the memory checks describe the same compilation as), then the default."""
    if command_line:
        return command_line
    if project and not own_table:
        return project
    vela = suite.checks.get("vela")
    fallback = vela.options.get("accelerator", DEFAULT_ACCELERATOR) if vela is not None else DEFAULT_ACCELERATOR
    return (str(spec.options.get("accelerator", fallback)),)
