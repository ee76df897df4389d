"""One model's pipeline: convert once, evaluate once, compile once, shared by every check.

Each step is computed on first use and remembered, failures included, so that a conversion
that fails is reported by every check that needed it and never retried within a session.
Steps that run native code (TensorFlow, the LiteRT interpreter, Vela) run in child processes
(:mod:`qcheck.isolation`), so this process never imports TensorFlow and survives a crash.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from qcheck.cache import Cache, digest, versions
from qcheck.config import ImageOptions, RunSpec
from qcheck.errors import QcheckError, StepFailed
from qcheck.files import atomic_write, safe_stem, write_json
from qcheck.inputs import read_regular
from qcheck.isolation import call_isolated
from qcheck.progress import Progress

if TYPE_CHECKING:
    from qcheck.data import Dataset, Split
    from qcheck.tflite.census import Census
    from qcheck.tflite.convert import FloatReference, Quantized
    from qcheck.tflite.inspect import ModelInfo
    from qcheck.tflite.run import RunResult
    from qcheck.vela import VelaConfig, VelaResult

T = TypeVar("T")


class Memo:
    """Values made once per key, failures included: a QcheckError or StepFailed is remembered
    and raised again, so a step that failed is reported by every check that needed it and
    never retried within a session.

    Safe to use from several threads (the session compiles for Vela on a background thread
    while the evaluation runs): a thread asking for a key that another is making waits for
    it, and keys being made by different threads do not wait for each other. Steps ask for
    the steps they build on, never the other way, so the waits cannot form a cycle.
    """

    def __init__(self) -> None:
        self._values: dict[str, tuple[bool, Any]] = {}
        self._making: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, make: Callable[[], T]) -> T:
        if key not in self._values:
            with self._guard:
                lock = self._making.setdefault(key, threading.Lock())
            with lock:
                if key not in self._values:
                    try:
                        self._values[key] = (True, make())
                    except (QcheckError, StepFailed) as exc:
                        self._values[key] = (False, exc)
        ok, value = self._values[key]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def made(self, key: str) -> Any:
        """The value already made for ``key``, or None (nothing is made here)."""
        ok, value = self._values.get(key, (False, None))
        return value if ok else None


class DataSource:
    """One data file and its calibration split, loaded once and shared by the models using it."""

    def __init__(self, data: str | None, calibration: str | None, samples: int,
                 images: ImageOptions | None = None) -> None:
        self._data_path = data
        self._calibration_path = calibration
        self._samples = samples
        self._images = images
        self._memo = Memo()

    def data(self) -> Dataset | None:
        from qcheck.data import load_data

        path = self._data_path
        return self._memo.get("data", lambda: load_data(path, self._images) if path else None)

    def calibration(self) -> Dataset | None:
        from qcheck.data import load_data

        path = self._calibration_path
        return self._memo.get("calibration", lambda: load_data(path, self._images) if path else None)

    def split(self) -> Split | None:
        from qcheck.data import split

        def make() -> Split | None:
            data = self.data()
            return split(data, self._samples, self.calibration()) if data is not None else None

        return self._memo.get("split", make)


class ModelRun:
    """The evidence about one model (implements :class:`qcheck.checks.evidence.Evidence`)."""

    def __init__(self, spec: RunSpec, stem: str, out_dir: Path, data: DataSource, timeout: float,
                 cache: Cache | None = None, progress: Progress | None = None) -> None:
        self.spec = spec
        self._progress = progress or Progress()
        self._cache = cache or Cache(None)
        self.stem = stem
        self._path = Path(spec.model)
        self._out_dir = out_dir
        self._data = data
        self._timeout = timeout
        self._memo = Memo()
        self.notes: list[str] = []  # facts for the report, e.g. how calibration was done

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def timeout(self) -> float:
        return self._timeout

    def _step(self, what: str) -> None:
        self._progress.step(self.model, what)

    @property
    def kind(self) -> str:
        from qcheck.tflite.convert import model_kind

        return self._memo.get("kind", lambda: model_kind(self._path))

    @property
    def out_dir(self) -> Path:
        return self._out_dir.resolve()

    def sections(self) -> dict[str, Any]:
        """Model-level facts already computed, for the report (nothing is computed here)."""
        from qcheck.tflite.census import quantization_info

        sections: dict[str, Any] = {}
        if self.notes:
            sections["notes"] = list(self.notes)
        info = self._memo.made("info")
        if info is not None:
            sections["quantization_info"] = quantization_info(info)
        return sections

    # -- data -------------------------------------------------------------------------------

    def evaluation_data(self) -> Dataset | None:
        split = self._data.split()
        if split is None:
            return None
        if self.kind == "tflite" and self.spec.calibration is None:
            return self._data.data()  # nothing to calibrate: evaluate on everything
        return split.evaluation

    # -- conversion ------------------------------------------------------------------------

    def _quantized(self) -> Quantized:
        def make() -> Quantized:
            from qcheck.data import SYNTHETIC_SAMPLES

            split = self._data.split()
            calibration = split.calibration if split else None
            evaluation = split.evaluation.x if split else None
            if not self._path.exists():
                raise QcheckError(self._path, "model file does not exist")
            key = digest("convert", versions("tensorflow", "keras", "tf-keras"), self._path.resolve(), calibration,
                         evaluation, self.spec.io_dtype, str(self.spec.unsafe_deserialization))

            def convert() -> Quantized:
                self._step("converting")
                converted: Quantized = call_isolated(
                    "qcheck.tflite.convert:quantize", self._path.resolve(), calibration, evaluation,
                    io_dtype=self.spec.io_dtype, unsafe=self.spec.unsafe_deserialization,
                    what=f"converting {self.model}", timeout=self._timeout,
                )
                return converted

            quantized, hit = self._cache.get_or_make(key, convert)
            if hit:
                self.notes.append("quantized model and float outputs taken from the cache")
            self.notes.extend(quantized.notes)  # e.g. which loader or converter took the model
            if split is not None:
                self.notes.append(f"calibration: {split.calibration_source}")
            else:
                self.notes.append(f"calibrated on {SYNTHETIC_SAMPLES} synthetic samples (uniform 0..1) because "
                                  "no --qcheck-data was given: accuracy and saturation are not measured")
            return quantized

        return self._memo.get("quantized", make)

    def tflite(self) -> bytes:
        def make() -> bytes:
            if self.kind == "tflite":
                data = read_regular(self._path, "model file")
                if not data:
                    raise QcheckError(self._path, "model file is empty")
                return data
            data = self._quantized().tflite
            atomic_write(self.out_dir / f"{self.stem}_quant.tflite", data)
            return data

        return self._memo.get("tflite", make)

    def tflite_path(self) -> Path:
        self.tflite()
        return self._path.resolve() if self.kind == "tflite" else self.out_dir / f"{self.stem}_quant.tflite"

    def info(self) -> ModelInfo:
        def make() -> ModelInfo:
            from qcheck.tflite.census import quantization_info
            from qcheck.tflite.inspect import inspect_model

            try:
                info = inspect_model(self.tflite())
            except ValueError as exc:
                raise QcheckError(self._path if self.kind == "tflite" else None, str(exc)) from None
            write_json(self.out_dir / f"{self.stem}_quantization_info.json", quantization_info(info))
            return info

        return self._memo.get("info", make)

    def census(self) -> Census:
        from qcheck.tflite.census import take_census

        return self._memo.get("census", lambda: take_census(self.info()))

    # -- float reference and evaluation ------------------------------------------------------

    def no_reference_reason(self) -> str:
        return ("needs the float model to compare with: this is an already quantized .tflite; "
                "pass --qcheck-reference=FLOAT_MODEL")

    def reference(self) -> FloatReference | None:
        def make() -> FloatReference | None:
            data = self.evaluation_data()
            if data is None:
                return None
            if self.kind != "tflite":
                return self._quantized().reference
            if not self.spec.reference:
                return None
            path = Path(self.spec.reference).resolve()
            if not path.exists():
                raise QcheckError(self.spec.reference, "reference model does not exist")
            from qcheck.tflite.convert import model_kind

            model_kind(path)  # a FIFO or a device is refused before it is read
            key = digest("reference", versions("tensorflow", "keras", "tf-keras", "ai-edge-litert"), path, data.x,
                         str(self.spec.unsafe_deserialization))

            def predict() -> FloatReference:
                self._step("running the float reference")
                outputs: FloatReference = call_isolated(
                    "qcheck.tflite.convert:reference_outputs", path, data.x, unsafe=self.spec.unsafe_deserialization,
                    what=f"running the reference model {self.spec.reference}", timeout=self._timeout,
                )
                return outputs

            reference, _ = self._cache.get_or_make(key, predict)
            return reference

        return self._memo.get("reference", make)

    def evaluation(self) -> RunResult | None:
        def make() -> RunResult | None:
            data = self.evaluation_data()
            if data is None:
                return None
            from qcheck.tflite.run import ANALYSIS_SAMPLES

            check_fits(self.info(), data, self.model)
            tflite = self.tflite()
            float_tflite = self._float_tflite()
            calibration = self.calibration_data()
            key = digest("evaluate", versions("ai-edge-litert"), tflite, data.x, float_tflite, calibration,
                         str(ANALYSIS_SAMPLES))
            # One pass gives the outputs and, for the first samples, every intermediate tensor.

            def evaluate() -> RunResult:
                self._step(f"evaluating {len(data)} samples")
                evaluated: RunResult = call_isolated(
                    "qcheck.tflite.run:run", tflite, data.x, float_tflite=float_tflite, calibration=calibration,
                    analysis_samples=ANALYSIS_SAMPLES,
                    what=f"running {self.model} in the LiteRT interpreter", timeout=self._timeout,
                )
                return evaluated

            result, _ = self._cache.get_or_make(key, evaluate)
            reference = self.reference()
            if reference is not None:
                result = align_heads(result, reference, self.model)
            return result

        return self._memo.get("evaluation", make)

    def _float_tflite(self) -> bytes | None:
        """The unquantized twin whose tensors the per-layer error is measured against."""
        if self.kind != "tflite":
            return self._quantized().float_tflite
        reference = self.spec.reference
        if reference and Path(reference).suffix.lower() == ".tflite" and Path(reference).is_file():
            return read_regular(reference, "reference model")
        return None

    def calibration_data(self) -> np.ndarray | None:
        """The samples the model was calibrated with (None for an already quantized .tflite)."""
        split = self._data.split()
        return split.calibration if split is not None and self.kind != "tflite" else None

    # -- targets ---------------------------------------------------------------------------

    def vela(self, config: VelaConfig) -> VelaResult:
        def make() -> VelaResult:
            from qcheck.vela import VelaFiles, compile_model, read_result

            self.info()
            folder = self.out_dir / f"{self.stem}_vela" / safe_stem(config.label)
            model = self.tflite_path()
            # The config file counts by name and, when it is the user's file, by content.
            key = digest("vela", versions("ethos-u-vela"), self.tflite(), config.accelerator, config.system_config,
                         config.memory_mode, config.config_file, Path(config.config_file).expanduser())

            def compile() -> VelaFiles:
                self._progress.step(self.model, f"compiling for {config.accelerator} with Vela")
                return compile_model(model, config, folder, timeout=self._timeout)

            files, _ = self._cache.get_or_make(key, compile)
            return read_result(model, config, files, folder)

        # One compilation per configuration, shared by the vela check and the memory checks.
        return self._memo.get(f"vela:{config}", make)


def check_fits(info: ModelInfo, data: Dataset, model: str) -> None:
    """The data's samples must have the shape of the model's (single) input, and the model
    must not be Vela's output, whose 'ethos-u' operators the interpreter cannot run."""
    if any(op.custom and op.op == "ethos-u" for op in info.operators):
        raise QcheckError(model, "was compiled by Vela: its 'ethos-u' operators run only on an Ethos-U NPU, "
                          "not in the LiteRT interpreter", "give qcheck the model you gave Vela, not Vela's output")
    if len(info.inputs) != 1:
        raise QcheckError(model, f"has {len(info.inputs)} inputs; qcheck handles one input for now")
    expected = info.inputs[0].tensor.shape[1:]
    if tuple(data.x.shape[1:]) != expected:
        raise QcheckError(data.path, f"does not fit the model {model}: samples have shape "
                          f"{tuple(data.x.shape[1:])}, the model takes {expected}")


def align_heads(result: RunResult, reference: FloatReference, model: str) -> RunResult:
    """Key the quantized outputs by the reference's names; never pair outputs by position,
    except when both sides have a single output."""
    from dataclasses import replace

    names = set(reference.output_names)
    if set(result.outputs) == names:
        return result
    if len(result.outputs) == 1 and len(names) == 1:
        (only,) = result.outputs.values()
        return replace(result, outputs={reference.output_names[0]: only})
    raise StepFailed(f"{model}: outputs {sorted(result.outputs)} do not match the float model's "
                     f"{sorted(names)}; qcheck pairs outputs by name")
