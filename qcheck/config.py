"""Settings resolved once per session from the command line and ini keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_OUT = "qcheck-out"
DEFAULT_CALIBRATION_SAMPLES = 200

# Command-line shortcuts for the thresholds people change most: option dest -> (check, key).
THRESHOLD_OPTIONS = {
    "qcheck_max_accuracy_drop": ("accuracy_drop", "max"),
    "qcheck_max_saturation": ("saturation", "max"),
    "qcheck_max_size": ("size", "max"),
    "qcheck_max_float32_tensors": ("float32_tensors", "max"),
    "qcheck_max_cpu_ops": ("vela", "max"),
}


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, read once in ``pytest_configure``."""

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
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    rootdir: Path = Path.cwd()
