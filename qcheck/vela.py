"""Run Arm's Vela compiler on a ``.tflite`` model and read where each operator runs.

Vela exits 0 even when every operator falls back to the CPU, and its console text changed
between releases, so placement is read from the files it writes: the per-layer CSV
(``Target`` column, written with ``--verbose-performance``) and, where Vela writes no debug
database, the compiled model, where the NPU part is ``CUSTOM "ethos-u"`` operators and
everything else runs on the CPU. Which of the user's operators each per-layer row belongs to comes from Vela's debug
database (``--enable-debug-db``): its ``perf`` table lists the same rows with a ``source_id``,
and its ``source`` table gives each source operator's index in the model (``ext_key``), which
exists also when the model's tensors have no names. An operator with no row at all was folded
away by Vela (a RESHAPE becomes a view of its input): it runs nowhere. Only the reasons for
CPU fallback exist nowhere but in Vela's console output, so they are parsed from it,
best-effort, for both the 3.x and the 5.x wording.

Vela runs as a subprocess in a scratch folder inside ``out_dir`` on a copy of the model
named ``model.tflite``: Vela names its outputs after the input's file name, which may hold
characters that are awkward in paths, and nothing is written outside ``out_dir``.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from qcheck.errors import StepFailed, crashed
from qcheck.files import InputFiles, atomic_write, output_folder, remove_stale, safe_stem

if TYPE_CHECKING:
    from qcheck.tflite.inspect import ModelInfo

ACCELERATORS: Final[tuple[str, ...]] = (
    "ethos-u55-32",
    "ethos-u55-64",
    "ethos-u55-128",
    "ethos-u55-256",
    "ethos-u65-256",
    "ethos-u65-512",
    "ethos-u85-128",
    "ethos-u85-256",
    "ethos-u85-512",
    "ethos-u85-1024",
    "ethos-u85-2048",
)

BUILTIN_CONFIG_FILE: Final = "Arm/vela.ini"
"""Vela's own configuration file, shipped inside the ethos-u-vela package."""

# (system config, memory mode) per family, all from Arm/vela.ini. U55: the high-end
# embedded system (SRAM + off-chip flash) with SRAM shared with the Cortex-M, the usual
# microcontroller setup. U65 and U85: their DRAM systems with an SRAM dedicated to the NPU,
# the setup these larger NPUs are built for (U85 at the mid of its three DRAM systems).
_FAMILY_DEFAULTS: Final[dict[str, tuple[str, str]]] = {
    "ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65": ("Ethos_U65_High_End", "Dedicated_Sram"),
    "ethos-u85": ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram"),
}

NO_REASON: Final = "Vela gave no reason"
NPU_CUSTOM_CODE: Final = "ethos-u"
# What to do with a model that is Vela's output already, said by every check that cannot take one.
COMPILED_MODEL_HINT: Final = (
    "give qcheck the model you gave Vela, not Vela's output; to judge this compiled model's operators Vela left "
    "on the CPU, run an Ethos-U suite (--qcheck-suite=ethos-u55, ethos-u65 or ethos-u85): its tflm_cpu_ops loads "
    "them in TensorFlow Lite Micro as the device runs them beside the NPU")
REMOVED: Final = "removed"
"""The target of an operator Vela folds away (RESHAPE, SQUEEZE, ...): it runs nowhere."""

# weights_storage_area in the summary CSV -> (flash_kind, column holding that memory's use)
_WEIGHT_STORAGE: Final[dict[str, tuple[str, str]]] = {
    "Off-chip Flash": ("off-chip flash", "off_chip_flash_memory_used"),
    "On-chip Flash": ("on-chip flash", "on_chip_flash_memory_used"),
    "DRAM": ("DRAM", "dram_memory_used"),
    "SRAM": ("SRAM", "sram_memory_used"),
}

_STAGED_STEM: Final = "model"


@dataclass(frozen=True)
class VelaConfig:
    """Which Ethos-U to compile for and how its memories are set up."""

    accelerator: str  # one of ACCELERATORS, e.g. "ethos-u55-128"
    system_config: str  # a [System_Config.*] section of config_file
    memory_mode: str  # a [Memory_Mode.*] section of config_file
    config_file: str = BUILTIN_CONFIG_FILE

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"unknown Ethos-U accelerator {self.accelerator!r}; "
                f"valid ones: {', '.join(ACCELERATORS)}"
            )

    @classmethod
    def default_for(
        cls,
        accelerator: str,
        *,
        system_config: str | None = None,
        memory_mode: str | None = None,
        config_file: str = BUILTIN_CONFIG_FILE,
    ) -> VelaConfig:
        """The default configuration of ``accelerator``'s family, with any part overridden.

        Ethos-U55: Ethos_U55_High_End_Embedded + Shared_Sram; Ethos-U65: Ethos_U65_High_End +
        Dedicated_Sram; Ethos-U85: Ethos_U85_SYS_DRAM_Mid + Dedicated_Sram (all from Vela's
        ``Arm/vela.ini``). Raises ValueError for an unknown accelerator.
        """
        family = accelerator.rsplit("-", 1)[0]
        default_system, default_memory = _FAMILY_DEFAULTS.get(family, ("", ""))
        return cls(
            accelerator=accelerator,
            system_config=system_config or default_system,
            memory_mode=memory_mode or default_memory,
            config_file=config_file,
        )

    @property
    def described(self) -> str:
        """The configuration in messages: ``ethos-u55-128, Ethos_U55_High_End_Embedded, Shared_Sram``."""
        return f"{self.accelerator}, {self.system_config}, {self.memory_mode}"

    @property
    def label(self) -> str:
        """A folder name for this configuration's outputs: the accelerator for its defaults,
        else the accelerator, system configuration and memory mode (and config file stem)."""
        if self == VelaConfig.default_for(self.accelerator):
            return self.accelerator
        parts = [self.accelerator, self.system_config, self.memory_mode]
        if self.config_file != BUILTIN_CONFIG_FILE:
            parts.append(Path(self.config_file).stem)
        return safe_stem("_".join(parts))


@dataclass(frozen=True)
class VelaOperator:
    """One operator of the user's model and where Vela puts it."""

    op: str  # operator type, e.g. "CONV_2D" (as Vela names it when the model is unreadable)
    name: str  # name of the tensor it writes ("" when the model leaves it unnamed)
    target: str  # "NPU", "CPU" or REMOVED (folded away by Vela)
    reason: str  # why it is on the CPU; "" for the others
    index: int | None = None  # position in the model's main subgraph, when known

    @property
    def label(self) -> str:
        """``CONV_2D 'conv1'``, or ``#12 SVDF`` for an operator whose output has no name."""
        from qcheck.tflite.inspect import operator_label

        return operator_label(self.op, self.name, self.index)


@dataclass(frozen=True)
class VelaResult:
    """What Vela made of one model for one configuration.

    Sizes are in bytes. ``flash_bytes`` is the memory used in the area Vela stores weights
    in (named by ``flash_kind``); in DRAM modes that area also holds feature maps. The
    inference time is Vela's estimate for the NPU part only, None when nothing runs there.
    """

    config: VelaConfig
    vela_version: str
    operators: tuple[VelaOperator, ...]
    sram_bytes: int | None
    flash_bytes: int | None
    flash_kind: str  # "off-chip flash", "on-chip flash", "DRAM", "SRAM" or "unknown"
    npu_weights_bytes: int | None
    inference_time_s: float | None
    compiled_model: str | None  # path of the compiled <stem>_vela.tflite

    @property
    def cpu_operators(self) -> tuple[VelaOperator, ...]:
        """The operators that fall back to the CPU, each with Vela's reason."""
        return tuple(op for op in self.operators if op.target == "CPU")

    @property
    def cpu_ops(self) -> int:
        """How many operators run on the CPU."""
        return len(self.cpu_operators)

    @property
    def npu_ops(self) -> int:
        """How many operators run on the NPU (fused activations not counted apart)."""
        return sum(1 for op in self.operators if op.target == "NPU")

    @property
    def removed_operators(self) -> tuple[VelaOperator, ...]:
        """The operators Vela folds away (they run neither on the NPU nor on the CPU)."""
        return tuple(op for op in self.operators if op.target == REMOVED)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for reports."""
        return {
            "accelerator": self.config.accelerator,
            "system_config": self.config.system_config,
            "memory_mode": self.config.memory_mode,
            "vela_version": self.vela_version,
            "cpu_ops": self.cpu_ops,
            "npu_ops": self.npu_ops,
            "removed_ops": len(self.removed_operators),
            "cpu_operators": [
                {"op": op.op, "name": op.name, "index": op.index, "label": op.label, "reason": op.reason}
                for op in self.cpu_operators
            ],
            "removed_operators": [
                {"op": op.op, "name": op.name, "index": op.index, "label": op.label}
                for op in self.removed_operators
            ],
            "sram_bytes": self.sram_bytes,
            "flash_bytes": self.flash_bytes,
            "flash_kind": self.flash_kind,
            "npu_weights_bytes": self.npu_weights_bytes,
            "inference_time_s": self.inference_time_s,
        }


def vela_version() -> str:
    """The installed Vela's version, as ``vela --version`` prints it (e.g. "5.2.0")."""
    try:
        return metadata.version("ethos-u-vela")
    except metadata.PackageNotFoundError as exc:
        raise StepFailed("Vela is not installed: pip install ethos-u-vela") from exc


@dataclass(frozen=True)
class VelaFiles:
    """What one successful Vela run printed and wrote; the part worth caching (seconds of
    compilation), from which :func:`read_result` rebuilds the result and the artifacts."""

    console: str
    compiled: bytes | None  # the compiled model
    per_layer: bytes | None  # the per-layer CSV
    summary: bytes | None  # the summary CSV
    debug_db: bytes | None = None  # the debug database (XML), which maps rows to source operators


def run_vela(
    model: Path, config: VelaConfig, out_dir: Path, *, timeout: float = 600.0, root: Path | None = None,
    never: InputFiles | None = None,
) -> VelaResult:
    """Compile ``model`` with Vela for ``config`` and read the result.

    Writes ``<stem>_vela.tflite``, ``<stem>_per-layer.csv``, ``<stem>_summary.csv``,
    ``<stem>_debug.xml`` and ``<stem>_vela.log`` (Vela's console output) into ``out_dir``, where
    ``<stem>`` is the model's file name with unusual characters replaced; files of those names
    are replaced. ``out_dir`` lies below the output root ``root`` (itself by default), and no
    part of it below the root may be a link (QcheckError); nothing written or removed is one of
    the inputs ``never``.
    Raises StepFailed naming the model when Vela fails or does not finish in ``timeout`` s.
    """
    files = compile_model(model, config, out_dir, timeout=timeout, root=root, never=never)
    return read_result(model, config, files, out_dir, root=root, never=never)


def compile_model(model: Path, config: VelaConfig, out_dir: Path, *, timeout: float = 600.0,
                  root: Path | None = None, never: InputFiles | None = None) -> VelaFiles:
    """Run Vela in a scratch folder inside ``out_dir`` and collect what it wrote.

    On failure, Vela's console output is kept as ``<stem>_vela.log`` and StepFailed raised.
    ``root`` and ``never``: as for :func:`run_vela`.
    """
    output_folder(root or out_dir, out_dir)  # the scratch folder goes there too
    with tempfile.TemporaryDirectory(prefix=".vela-", dir=out_dir) as scratch_dir:
        scratch = Path(scratch_dir).resolve()  # Vela runs inside it: a relative path would not lead back
        staged = _stage(model, scratch)
        # Paths relative to the scratch folder (Vela's working directory): Vela prints them, and
        # the log must not carry the scratch folder's random name (same inputs, same bytes).
        done = _run(_vela_command(Path(staged.name), config, Path("out")), scratch, timeout, model, config)
        console = done.stdout + done.stderr
        if done.returncode != 0:
            # Keep the log for the user; leave no artifacts of an earlier run beside it.
            _write_files(VelaFiles(console, None, None, None, None), out_dir, safe_stem(model.stem), root or out_dir, never)
            _check_exit(done, model, config)
        vela_out = scratch / "out"
        summaries = sorted(vela_out.glob(f"{_STAGED_STEM}_summary_*.csv"))
        return VelaFiles(
            console=console,
            compiled=_read(vela_out / f"{_STAGED_STEM}_vela.tflite"),
            per_layer=_read(vela_out / f"{_STAGED_STEM}_per-layer.csv"),
            summary=_read(summaries[0]) if summaries else None,
            debug_db=_read(vela_out / f"{_STAGED_STEM}_debug.xml"),
        )


def read_result(model: Path, config: VelaConfig, files: VelaFiles, out_dir: Path, *, root: Path | None = None,
                never: InputFiles | None = None, info: ModelInfo | None = None) -> VelaResult:
    """Write ``files`` into ``out_dir`` under the model's stem and read the placement from them
    (``model`` is the model given to Vela, whose operators placement is counted in; ``info``, when
    given, is that model as read already, the bytes Vela compiled: it is not read again).
    ``root`` and ``never``: as for :func:`run_vela`."""
    outputs = _write_files(files, out_dir, safe_stem(model.stem), root or out_dir, never)
    return _build_result(model, config, outputs, files.console, info)


def _write_files(files: VelaFiles, out_dir: Path, stem: str, root: Path, never: InputFiles | None) -> _Outputs:
    # runs may share out_dir
    atomic_write(out_dir / f"{stem}_vela.log", files.console.encode("utf-8"), root=root, never=never)
    return _Outputs(
        compiled=_write(files.compiled, out_dir / f"{stem}_vela.tflite", root, never),
        per_layer=_write(files.per_layer, out_dir / f"{stem}_per-layer.csv", root, never),
        summary=_write(files.summary, out_dir / f"{stem}_summary.csv", root, never),
        debug_db=_write(files.debug_db, out_dir / f"{stem}_debug.xml", root, never),
    )


def is_vela_compiled(model_bytes: bytes) -> bool:
    """True when the TFLite model holds a CUSTOM "ethos-u" operator, i.e. Vela compiled it."""
    try:
        return any(op.on_npu for op in _read_tflite_operators(model_bytes))
    except ValueError:  # not a TFLite model, or a damaged one: not something Vela wrote
        return False


# --- running Vela -------------------------------------------------------------------------


def _stage(model: Path, scratch: Path) -> Path:
    staged = scratch / f"{_STAGED_STEM}.tflite"
    try:
        shutil.copyfile(model, staged)
    except OSError as exc:
        raise StepFailed(f"{model}: cannot read the model for Vela: {exc.strerror}") from exc
    return staged


def _vela_command(model: Path, config: VelaConfig, out_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "ethosu.vela", str(model),
        "--output-dir", str(out_dir),
        "--accelerator-config", config.accelerator,
        "--config", _config_argument(config.config_file),
        "--system-config", config.system_config,
        "--memory-mode", config.memory_mode,
        "--verbose-performance",
        "--show-cpu-operations",
        "--enable-debug-db",
    ]  # fmt: skip


def _config_argument(config_file: str) -> str:
    """The --config value that means the same file from Vela's scratch working directory.

    Vela reads a relative two-part path such as "Arm/vela.ini" as one of its own config
    files; any other path is the user's and is made absolute, since Vela runs elsewhere.
    """
    path = Path(config_file)
    builtin = (
        not path.is_absolute() and len(path.parts) == 2 and not config_file.startswith((".", "~"))
    )
    return config_file if builtin else str(path.expanduser().resolve())


# A Vela config file is one small .ini (Vela's own are a few kB): anything bigger is a mistake,
# e.g. config_file naming a folder or a disk image, and is not read whole.
CONFIG_FILE_LIMIT: Final = 1 << 20


def read_config_file(config_file: str) -> bytes | None:
    """The bytes of a user's Vela ``config_file``, or None for one of Vela's own ("Arm/vela.ini").

    The file must be a regular file of at most CONFIG_FILE_LIMIT bytes: a folder, FIFO, device
    or huge file is refused with a QcheckError naming it (reading one could block or never end).
    Vela is given a private copy of exactly these bytes, the ones its cache key is hashed from.
    """
    from qcheck.errors import QcheckError
    from qcheck.inputs import check_regular, open_regular

    if not Path(_config_argument(config_file)).is_absolute():
        return None  # one of Vela's own config files, read from its installation
    path = Path(config_file).expanduser()
    hint = "config_file must name one Vela .ini file (a [System_Config.*] / [Memory_Mode.*] file)"
    try:
        status = check_regular(path, "Vela config_file")
    except QcheckError as exc:
        raise QcheckError(exc.path, exc.problem, hint) from None
    if status.st_size > CONFIG_FILE_LIMIT:
        raise QcheckError(path, f"Vela config_file is {status.st_size} bytes, more than the "
                          f"{CONFIG_FILE_LIMIT} a Vela config file can sensibly be", hint)
    with open_regular(path, "Vela config_file") as handle:
        data = handle.read(CONFIG_FILE_LIMIT + 1)
    if len(data) > CONFIG_FILE_LIMIT:  # grew since it was looked at
        raise QcheckError(path, f"Vela config_file is more than {CONFIG_FILE_LIMIT} bytes", hint)
    return data


def _run(
    command: list[str], cwd: Path, timeout: float, model: Path, config: VelaConfig
) -> subprocess.CompletedProcess[str]:
    # Tensor names may be non-ASCII; Vela must not fail printing them on a C locale.
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    try:
        return subprocess.run(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(
            f"{model}: Vela ({config.described}) did not finish within {timeout:g} s"
        ) from exc


def _check_exit(done: subprocess.CompletedProcess[str], model: Path, config: VelaConfig) -> None:
    if done.returncode < 0:
        raise StepFailed(
            f"{model}: Vela ({config.described}) {crashed(-done.returncode)}:\n"
            + _failure_excerpt(done.stdout, done.stderr)
        )
    if done.returncode != 0:
        raise StepFailed(
            f"{model}: Vela ({config.described}) failed with exit code {done.returncode}:\n"
            + _failure_excerpt(done.stdout, done.stderr)
        )


def _failure_excerpt(stdout: str, stderr: str, max_lines: int = 6) -> str:
    """Vela's last meaningful lines: the exception after a traceback, else the tail."""
    lines = [line.rstrip() for line in stderr.splitlines() if _meaningful(line)]
    if any(line.startswith("Traceback") for line in lines):
        # The exception text is the first unindented line after the last stack frame (a
        # '  File "..."' line, then its indented source and caret lines) and what follows it,
        # which may itself be indented.
        frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
        start = frames[-1] + 1 if frames else 0
        while start < len(lines) and lines[start][:1].isspace():
            start += 1
        lines = lines[start:]
    if not lines:
        lines = [line.rstrip() for line in stdout.splitlines() if _meaningful(line)]
    return "\n".join(f"  {line}" for line in lines[-max_lines:]) or "  (Vela printed nothing)"


def _meaningful(line: str) -> bool:
    # Vela 5 prints one "dynamic signature" notice per tensor; they would bury the error.
    return bool(line.strip()) and "has a dynamic signature" not in line


class _Outputs(NamedTuple):
    compiled: Path | None
    per_layer: Path | None
    summary: Path | None
    debug_db: Path | None = None


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _write(data: bytes | None, target: Path, root: Path, never: InputFiles | None) -> Path | None:
    """Write ``data`` to ``target``; without data, drop a stale ``target``."""
    if data is None:
        remove_stale(target, root=root, never=never)
        return None
    atomic_write(target, data, root=root, never=never)
    return target


# --- reading the results ------------------------------------------------------------------


def _build_result(model: Path, config: VelaConfig, outputs: _Outputs, console: str,
                  info: ModelInfo | None = None) -> VelaResult:
    per_layer = _read_per_layer(outputs.per_layer) if outputs.per_layer else None
    if per_layer is None and outputs.compiled is None:
        raise StepFailed(f"{model}: Vela exited 0 but wrote no compiled model and no per-layer CSV")
    reasons = _cpu_reason_blocks(console)
    operators = _by_source_index(model, outputs, reasons, info)
    if operators is None:  # no debug database (another Vela), or one that does not add up
        # Only here is the compiled model read: the debug database places every operator.
        compiled = _read_tflite_operators(outputs.compiled.read_bytes()) if outputs.compiled else None
        placements = _per_source_operator(_merge_placements(per_layer, compiled), model, info)
        operators = [_operator(p, reasons) for p in placements]
    summary = _read_summary(outputs.summary)
    return VelaResult(
        config=config,
        vela_version=vela_version(),
        operators=tuple(operators),
        sram_bytes=summary.sram_bytes,
        flash_bytes=summary.flash_bytes,
        flash_kind=summary.flash_kind,
        npu_weights_bytes=summary.npu_weights_bytes,
        inference_time_s=summary.inference_time_s,
        compiled_model=str(outputs.compiled) if outputs.compiled else None,
    )


class _Placement(NamedTuple):
    op: str
    name: str
    target: str
    position: int = -1  # an operator without outputs: its place in its subgraph (Vela's placeholder name has it)


# Vela names the output it makes up for an operator that writes no tensor (ASSIGN_VARIABLE,
# CALL_ONCE) after the operator's place in its subgraph: its reasons and per-layer rows carry it.
_PLACEHOLDER = re.compile(r"placeholder-for-(\d+)-OFM")


def _operator(placement: _Placement, reasons: dict[str, list[tuple[str, str]]]) -> VelaOperator:
    found = reasons.get(placement.name, [])
    if not placement.name and placement.position >= 0:  # Vela prints the type, or None for one it does not know
        found = [(op, text) for op, text in reasons.get(f"placeholder-for-{placement.position}-OFM", [])
                 if op.upper() in (placement.op.upper(), "NONE")]
    reason = _join_blocks(text for _, text in found) or NO_REASON if placement.target == "CPU" else ""
    return VelaOperator(placement.op, placement.name, placement.target, reason)


def _by_source_index(model: Path, outputs: _Outputs, reasons: dict[str, list[tuple[str, str]]],
                     known: ModelInfo | None = None) -> list[VelaOperator] | None:
    """One placement per operator of the model, matched by the operator's index through Vela's
    debug database; None when that is not possible (then names are all there is).

    Each per-layer row is one of Vela's own operators (it lowers one SOFTMAX into some
    thirty); the debug database's ``perf`` table has the same rows in the same order with the
    source operator they come from. An operator is on the CPU when any of its rows is, on the
    NPU when its rows are, and removed when it has none (Vela folded it away).
    """
    if outputs.per_layer is None or outputs.debug_db is None:
        return None
    try:
        from qcheck.tflite.inspect import inspect_model

        info = known or inspect_model(model.read_bytes())
        tables = _debug_tables(outputs.debug_db)
        rows = _per_layer_rows(outputs.per_layer)
    except (OSError, ValueError):
        return None
    source_ops = [op for op in info.operators if not (op.custom and op.op == NPU_CUSTOM_CODE)]
    if not source_ops or any(op.subgraph != 0 for op in source_ops):
        return None  # Vela's source indices count the operators of one subgraph
    targets = _targets_by_source_index(tables, rows)
    if targets is None or not {op.index for op in source_ops} <= set(targets):
        return None
    unnamed = list(reasons.get("", []))  # Vela prints every unnamed operator as ofm ''
    result = []
    for op in source_ops:
        name = next((info.tensor(0, i).name for i in op.outputs if i >= 0), "")
        target = targets[op.index]
        reason = ""
        if target == "CPU":
            found = reasons.get(name, []) if name else _take_unnamed(unnamed, op.op)
            reason = _join_blocks(text for _, text in found) or NO_REASON
        result.append(VelaOperator(op.op, name, target, reason, op.index))
    return result


def _take_unnamed(blocks: list[tuple[str, str]], op: str) -> list[tuple[str, str]]:
    """The reason printed for an unnamed operator of type ``op``, taken out of ``blocks``.

    Vela does not print them in the model's order; it names the type (``QUANTIZE``), or
    ``None`` for a type it does not know: the first of the same type, else of an unknown one.
    """
    for wanted in (op, "None"):
        for i, (printed, _) in enumerate(blocks):
            if printed.upper() == wanted.upper():
                return [blocks.pop(i)]
    return [blocks.pop(0)] if blocks else []


def _debug_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    """The CSV tables of Vela's debug database, by table name. Raises ValueError if unreadable."""
    import io
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return {
        str(table.get("name")): list(csv.DictReader(io.StringIO((table.text or "").strip())))
        for table in root.iter("table")
    }


def _per_layer_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return []
    header = rows[0]
    return [dict(zip(header, _rejoin_name(row, header), strict=False)) for row in rows[1:]]


def _targets_by_source_index(tables: dict[str, list[dict[str, str]]],
                             rows: list[dict[str, str]]) -> dict[int, str] | None:
    """Source operator index -> "NPU", "CPU" or REMOVED, or None when the files disagree."""
    perf, source = tables.get("perf"), tables.get("source")
    if not perf or not source or len(perf) != len(rows):
        return None
    try:
        index_of = {row["id"]: int(row["ext_key"]) for row in source}
    except (KeyError, ValueError):
        return None
    targets: dict[int, str] = dict.fromkeys(index_of.values(), REMOVED)
    for row, perf_row in zip(rows, perf, strict=True):
        # The two lists are written from the same pass: check that they are.
        if (row.get("NNG Operator"), row.get("Name")) != (perf_row.get("operator"), perf_row.get("name")):
            return None
        index = index_of.get(perf_row.get("source_id", ""))
        target = row.get("Target", "").upper()
        if index is None or target not in ("NPU", "CPU"):
            return None
        if targets[index] != "CPU":
            targets[index] = target
    return targets


def _merge_placements(
    per_layer: list[_Placement] | None, compiled: list[_TfliteOperator] | None
) -> list[_Placement]:
    """Per-layer rows, with the compiled model's CPU operators as cross-check and fallback.

    The compiled model is what will run, so an operator counts as CPU when either source
    puts it there, and a CPU operator the CSV lacks is added.
    """
    compiled_cpu = [_Placement(op.op, op.name, "CPU") for op in compiled or () if not op.on_npu]
    if per_layer is None:
        npu = [_Placement(op.op, op.name, "NPU") for op in compiled or () if op.on_npu]
        return npu + compiled_cpu
    cpu_ops = {op.name: op.op for op in compiled_cpu}
    merged = [_as_cpu(p, cpu_ops[p.name]) if p.name in cpu_ops else p for p in per_layer]
    known = {p.name for p in per_layer}
    return merged + [p for p in compiled_cpu if p.name not in known]


def _per_source_operator(placements: list[_Placement], model: Path, info: ModelInfo | None = None) -> list[_Placement]:
    """One placement per operator of the model given to Vela, in its order.

    Vela's per-layer rows are its own operators: it lowers one SOFTMAX into some thirty, and
    lists fused activations apart. The user counts the operators of their model, so each of
    those is placed on the CPU when Vela put anything of it there (CPU rows carry the name of
    the operator's output), and on the NPU otherwise.
    """
    try:
        operators = _tflite_operators(info) if info is not None else _read_tflite_operators(model.read_bytes())
        source = [op for op in operators if op.op != NPU_CUSTOM_CODE]
    except Exception:  # an unreadable source: Vela's own rows are all there is
        return placements
    if not source:
        return placements
    cpu = {p.name: p for p in placements if p.target == "CPU"}
    result = [_Placement(op.op, op.name, "CPU" if op.name in cpu else "NPU", -1 if op.name else op.position)
              for op in source]
    named = {op.name for op in source}
    # A placeholder stands for one of the model's operators without outputs, counted above.
    unnamed = any(not op.name for op in source)
    return result + [p for p in cpu.values() if p.name not in named
                     and not (unnamed and _PLACEHOLDER.fullmatch(p.name))]


def _as_cpu(placement: _Placement, compiled_op: str) -> _Placement:
    # Vela names an operator type it does not know "None"; the compiled model still has its name.
    op = compiled_op if placement.op in ("", "None", "N/A") else placement.op
    return placement._replace(op=op, target="CPU")


def _read_per_layer(path: Path) -> list[_Placement]:
    """One placement per operator: rows sharing a name and target are one operator.

    Vela lists a fused activation as its own row with the name of the operator it is fused
    into; counting distinct names gives Vela's number of passes rather than its
    "NPU operators" line, which counts those activation rows too.
    """
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    placements: dict[tuple[str, str], _Placement] = {}
    for row in body:
        record = dict(zip(header, _rejoin_name(row, header), strict=False))
        op = record.get("Original Operator", "N/A")
        if op in ("", "N/A"):
            op = record.get("NNG Operator", "")
        placement = _Placement(op, record.get("Name", ""), record.get("Target", "").upper())
        placements.setdefault((placement.name, placement.target), placement)
    return list(placements.values())


def _rejoin_name(row: list[str], header: list[str]) -> list[str]:
    # Vela 5 writes the per-layer CSV without quoting, so a comma in the last column (the
    # tensor name) splits it into extra fields.
    if len(row) <= len(header) or header[-1] != "Name":
        return row
    keep = len(header) - 1
    return [*row[:keep], ",".join(row[keep:])]


class _TfliteOperator(NamedTuple):
    op: str  # builtin name ("CONV_2D") or custom code ("ethos-u")
    name: str  # first output tensor's name
    on_npu: bool
    position: int = -1  # place in its subgraph


def _read_tflite_operators(model_bytes: bytes) -> list[_TfliteOperator]:
    """Every operator of every subgraph of a TFLite flatbuffer, in file order, named after its
    first output as Vela names them. Raises ValueError for a damaged file (qcheck's one reader,
    :func:`qcheck.tflite.inspect.inspect_model`, checks every reference)."""
    from qcheck.tflite.inspect import inspect_model

    return _tflite_operators(inspect_model(model_bytes))


def _tflite_operators(info: ModelInfo) -> list[_TfliteOperator]:
    """The operators of a model read already (see :func:`_read_tflite_operators`)."""
    names = {(t.subgraph, t.index): t.name for t in info.tensors}
    return [
        _TfliteOperator(op.op, names[(op.subgraph, op.outputs[0])] if op.outputs else "",
                        op.custom and op.op == NPU_CUSTOM_CODE, op.index)
        for op in info.operators
    ]


# --- reasons for CPU fallback (console text) ----------------------------------------------


def _indented(line: str) -> bool:
    return line[:1].isspace()


def _any_text(line: str) -> bool:
    return True


@dataclass(frozen=True)
class _CpuMessage:
    """A message that puts an operator on the CPU, and how its explanation goes on."""

    pattern: re.Pattern[str]  # with groups "op" and "name" (the tensor the operator writes)
    continues: Callable[[str], bool]  # whether a following line still explains it
    headline: str = ""  # first words of the reason, formatted with the groups


# 5.x explains with "Reason: ..." and more lines up to a blank line; 3.x with indented lines.
_CPU_MESSAGES: Final[tuple[_CpuMessage, ...]] = (
    _CpuMessage(
        re.compile(r"^Warning \(supported operators\) operator: (?P<op>\S+), ofm: '(?P<name>.*)'$"),
        _any_text,
    ),
    _CpuMessage(
        re.compile(
            r"^Warning: (?P<op>\S+) '(?P<name>.*)' is not supported on the NPU\. "
            r"Placing on CPU instead$"
        ),
        _indented,
    ),
    _CpuMessage(
        re.compile(
            r"^Warning: Unsupported TensorFlow Lite semantics for (?P<op>\S+) '(?P<name>.*)'\. "
            r"Placing on CPU instead$"
        ),
        _indented,
        "Unsupported TensorFlow Lite semantics:",
    ),
    _CpuMessage(
        re.compile(r"^Info: (?P<op>\S+) '(?P<name>.*)' is a CPU only op$"),
        _indented,
        "{op} is a CPU only op",
    ),
)


def _cpu_reasons(console: str) -> dict[str, str]:
    """Reasons Vela printed for CPU operators, by the name of the tensor they write."""
    blocks = _cpu_reason_blocks(console)
    return {name: text for name, found in blocks.items() if (text := _join_blocks(t for _, t in found))}


def _cpu_reason_blocks(console: str) -> dict[str, list[tuple[str, str]]]:
    """Reasons Vela printed for CPU operators, by the name of the tensor they write: (operator
    type as Vela names it, text) per message, in the order printed (Vela 3 names an unnamed
    tensor ``<unnamed>``, 5 ``''``)."""
    blocks: dict[str, list[tuple[str, list[str]]]] = {}
    current: list[str] | None = None
    continues: Callable[[str], bool] = _any_text
    for line in console.splitlines():
        found = _match_cpu_message(line)
        if found is not None:
            message, match = found
            continues = message.continues
            current = [message.headline.format(**match.groupdict())] if message.headline else []
            name = "" if match["name"] == "<unnamed>" else match["name"]
            blocks.setdefault(name, []).append((match["op"], current))
        elif current is not None and line.strip() and continues(line):
            current.append(_detail(line))
        else:
            current = None
    return {name: [(op, " ".join(part)) for op, part in parts] for name, parts in blocks.items()}


def _match_cpu_message(line: str) -> tuple[_CpuMessage, re.Match[str]] | None:
    for message in _CPU_MESSAGES:
        match = message.pattern.match(line.rstrip())
        if match:
            return message, match
    return None


def _detail(line: str) -> str:
    text = line.strip()
    for prefix in ("Reason:", "- "):
        text = text.removeprefix(prefix).strip()
    return text


def _join_blocks(texts: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(text for text in texts if text))


# --- summary CSV --------------------------------------------------------------------------


class _Summary(NamedTuple):
    sram_bytes: int | None
    flash_bytes: int | None
    flash_kind: str
    npu_weights_bytes: int | None
    inference_time_s: float | None


def _read_summary(path: Path | None) -> _Summary:
    row = _first_row(path) if path else {}
    kind, column = _WEIGHT_STORAGE.get(row.get("weights_storage_area", ""), ("unknown", ""))
    weights = _number(row, "total_npu_encoded_weights")
    seconds = _number(row, "inference_time")
    return _Summary(
        sram_bytes=_kib_to_bytes(_number(row, "sram_memory_used")),
        flash_bytes=_kib_to_bytes(_number(row, column)),
        flash_kind=kind,
        npu_weights_bytes=round(weights) if weights is not None else None,
        inference_time_s=seconds if seconds is not None and seconds > 0 else None,
    )


def _first_row(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.DictReader(handle), {})


def _number(row: dict[str, str], column: str) -> float | None:
    try:
        value = float(row[column])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _kib_to_bytes(kib: float | None) -> int | None:
    return round(kib * 1024) if kib is not None else None
