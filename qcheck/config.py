"""The typed settings of a run and of each model (resolved by :mod:`qcheck.resolver`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_OUT = "qcheck-out"
DEFAULT_CALIBRATION_SAMPLES = 200
DEFAULT_TIMEOUT = 900.0  # seconds for one conversion, evaluation or Vela compilation
# The Ethos-U configuration the target checks compile for when nothing names one.
DEFAULT_ACCELERATOR = "ethos-u55-128"

# Command-line shortcuts for the thresholds people change most: option dest -> (check, key).
THRESHOLD_OPTIONS = {
    "qcheck_max_accuracy_drop": ("accuracy_drop", "max"),
    "qcheck_max_saturation": ("saturation", "max"),
    "qcheck_max_size": ("size", "max"),
    "qcheck_max_float32_tensors": ("float32_tensors", "max"),
    "qcheck_max_cpu_ops": ("vela", "max"),
    "qcheck_max_sram": ("sram", "max"),
    "qcheck_max_flash": ("flash", "max"),
    "qcheck_max_npu_weights": ("npu_weights", "max"),
    "qcheck_max_inference_ms": ("inference_time", "max"),
    "qcheck_max_arena": ("arena", "max"),
}

# The unit a bare number on these flags is in, where it is not the check's base unit:
# --qcheck-max-inference-ms=5 means 5 ms ("5ms"), while inference_time.max = 5 means 5 s.
THRESHOLD_DEFAULT_UNITS = {
    "qcheck_max_inference_ms": "ms",
}


def with_default_unit(dest: str, value: str) -> str:
    """``value`` of the threshold flag ``dest``, with the flag's default unit when it has none."""
    unit = THRESHOLD_DEFAULT_UNITS.get(dest)
    if unit is None:
        return value
    try:
        float(value)
    except ValueError:
        return value  # it has a unit of its own (or is not a number, which the suite reports)
    return f"{value.strip()}{unit}"


@dataclass(frozen=True)
class ImageOptions:
    """How a folder of images becomes model inputs: ``pixel * scale + offset`` after resizing."""

    size: tuple[int, int] | None = None  # (height, width); None keeps each image's own size
    scale: float = 1 / 255
    offset: float = 0.0
    mode: str = "RGB"  # Pillow mode: "RGB" (3 channels) or "L" (1 channel)


# What ``[quantization] activations`` and ``--qcheck-activations`` take: int8 (full integer) or
# int16 (int16x8: int16 activations, int8 weights).
ACTIVATIONS = ("int8", "int16")
# What ``[quantization] calibration_from`` takes: "auto" calibrates on the separate calibration set
# when one is given, else on a seeded split of the data; "data" always on that split of the
# (evaluation) data, the separate set unused (a remedy where that set looks preprocessed differently).
CALIBRATION_FROM = ("auto", "data")


@dataclass(frozen=True)
class Quantization:
    """How a float model is quantized: a suite's ``[quantization]`` table with the command line
    over it, defaults filled in. Part of the conversion's cache key."""

    activations: str = "int8"  # one of ACTIVATIONS
    # How many samples calibrate the ranges; None: the run's (--qcheck-calibration-samples).
    calibration_samples: int | None = None
    # Fully-connected weights per output channel (TensorFlow's default) or one scale per tensor.
    per_channel_dense: bool = True
    # Keras layer names whose operators stay float (int8 only; never a default: see the remedies).
    keep_float: tuple[str, ...] = ()
    # Keras layer names quantized to int16 activations (int8 weights), int8 elsewhere (ai-edge-quantizer).
    int16_layers: tuple[str, ...] = ()
    # Where the calibration samples come from (CALIBRATION_FROM); applied where a RunSpec is made
    # (qcheck.resolver.calibration_set), so it changes the RunSpec's calibration, not the converter.
    calibration_from: str = "auto"

    @property
    def kind(self) -> str:
        """What the conversion makes, as the census names it."""
        return "int16x8" if self.activations == "int16" else "full-integer"

    def key(self) -> str:
        """The settings as a stable string, for the cache key (``calibration_from`` is left out: the
        samples it picks are part of the key themselves)."""
        return ",".join(f"{name}={value}" for name, value in sorted(vars(self).items()) if name != "calibration_from")


@dataclass(frozen=True)
class RunSpec:
    """What one model is checked with: the model, its data and how it is quantized.

    Two items with equal specs share one pipeline (one conversion, one evaluation).
    """

    model: str  # the path as the user gave it; resolved against the working directory
    data: str | None = None
    calibration: str | None = None
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    reference: str | None = None
    io_dtype: str = "uint8"
    unsafe_deserialization: bool = False
    images: ImageOptions = ImageOptions()  # how a folder of images becomes inputs
    # A model with state (variable tensors, resource variables): "reset" it before each sample, or "keep" it when
    # the data is one long sequence (qcheck.tflite.run.STATEFUL_MODES).
    stateful: str = "reset"
    quantization: Quantization = Quantization()


@dataclass(frozen=True)
class CommandLine:
    """What the command line sets that would otherwise come from a suite file, a marker or the project."""

    suite: str | None = None  # a built-in suite's name or an absolute path
    accelerators: tuple[str, ...] = ()
    calibration_samples: int | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, resolved once (:func:`qcheck.resolver.resolve`)."""

    models: tuple[str, ...] = ()
    data: str | None = None
    calibration: str | None = None
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    reference: str | None = None
    io_dtype: str = "uint8"
    unsafe_deserialization: bool = False
    suite: str = "default"
    accelerators: tuple[str, ...] = ()  # empty: the suite's vela.accelerator
    out_dir: Path = Path(DEFAULT_OUT)
    json_path: Path | None = None
    html_path: Path | None = None
    csv_dir: Path | None = None
    pytest_html_extras: bool = False  # pytest-html writes a report: attach each model's summary to it
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    remedies: bool = False  # --qcheck-remedies: try other recipes where accuracy or saturation fails
    cache_dir: Path | None = None  # None: no cache
    images: ImageOptions = ImageOptions()
    notes: tuple[str, ...] = ()  # what qcheck decided for the user, for the terminal summary
    stateful: str = "reset"
    activations: str | None = None  # --qcheck-activations; None: the suite's (or int8)
    quantization: Quantization = Quantization()  # the run's suite's, with --qcheck-activations over it
    command_line: CommandLine = CommandLine()  # what the command line itself set, for suite files and markers
    baseline_dir: Path | None = None  # --qcheck-baseline / [tool.qcheck] baseline (qcheck.baseline)
    baseline_update: bool = False  # --qcheck-baseline-update: write the baselines instead of comparing
