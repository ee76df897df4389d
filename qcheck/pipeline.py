"""One model's pipeline: convert once, evaluate once, compile once, shared by every check.

Each step is computed on first use and remembered, failures included, so that a conversion
that fails is reported by every check that needed it and never retried within a session.
Steps that run native code (TensorFlow, the LiteRT interpreter, Vela) run in child processes
(:mod:`qcheck.isolation`), so this process never imports TensorFlow and survives a crash.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from qcheck.cache import Cache, private_copy, private_file, versions
from qcheck.config import ImageOptions, RunSpec
from qcheck.errors import QcheckError, StepFailed
from qcheck.files import InputFiles, atomic_write, safe_stem, write_json
from qcheck.hashing import digest
from qcheck.inputs import as_given, read_regular
from qcheck.isolation import call_isolated
from qcheck.progress import Progress

if TYPE_CHECKING:
    from qcheck.checks.calibration import CalibrationDiagnosis
    from qcheck.data import Dataset, Split
    from qcheck.facts import ModelFacts
    from qcheck.named_inputs import NamedInputs
    from qcheck.tflite.breakdown import LayerBytes
    from qcheck.tflite.census import Census
    from qcheck.tflite.convert import FloatReference, Quantized
    from qcheck.tflite.inspect import ModelInfo
    from qcheck.tflite.run import RunResult
    from qcheck.tflm import CpuParity, CpuPartLoad, Divergence, TflmLoad
    from qcheck.vela import VelaConfig, VelaResult

T = TypeVar("T")
CPU_PARITY_SAMPLES = 100  # evaluation samples the CPU part of an Ethos-U system runs in both runtimes


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
                        if not hasattr(exc, "qcheck_step"):  # the innermost step that failed
                            exc.qcheck_step = key  # type: ignore[union-attr]
                        self._values[key] = (False, exc)
        ok, value = self._values[key]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def made(self, key: str) -> Any:
        """The value already made for ``key``, or None (nothing is made here)."""
        ok, value = self._values.get(key, (False, None))
        return value if ok else None

    def made_under(self, prefix: str) -> dict[str, Any]:
        """The values already made for the keys starting with ``prefix``, by key (nothing is made here)."""
        made = list(self._values.items())  # one step (a background thread may be adding a value)
        return {key: value for key, (ok, value) in sorted(made) if ok and key.startswith(prefix)}


# What it means for the model that a step failed, by the step's Memo key (for the checks that
# point to the one that reported the cause in full).
_FAILED_STEPS = {
    "kind": "could not be read", "quantized": "could not be loaded or converted", "tflite": "could not be read",
    "info": "could not be read as a TFLite model", "census": "could not be read as a TFLite model",
    "reference": "could not be compared: its float reference could not be run",
    "evaluation": "could not be run on the evaluation data", "vela": "could not be compiled by Vela",
    "data": "has no usable data: the data file could not be loaded",
    "calibration": "has no usable calibration data: the file could not be loaded",
    "split": "has no usable data: the data could not be split",
    "tflm": "could not be loaded in TFLite Micro", "tflm_evaluation": "could not be run in TFLite Micro",
    "tflm_cpu_part": "could not have its CPU part loaded in TFLite Micro",
}


def failed_step(error: BaseException) -> str:
    """What failed, as said of the model ("could not be converted"), or "" when not a step's."""
    step = str(getattr(error, "qcheck_step", "")).split(":")[0]
    return _FAILED_STEPS.get(step, "")


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


# What a model run writes into its output folder, named by its stem: report key -> name ending.
ARTIFACTS = {"quantized_model": "_quant.tflite", "quantization_info": "_quantization_info.json", "vela": "_vela"}


class ModelRun:
    """The evidence about one model (implements :class:`qcheck.checks.evidence.Evidence`)."""

    def __init__(self, spec: RunSpec, stem: str, out_dir: Path, data: DataSource, timeout: float,
                 cache: Cache | None = None, progress: Progress | None = None, *,
                 inputs: InputFiles | None = None, folder: str = "") -> None:
        self.spec = spec
        self._inputs = inputs or InputFiles()  # never written over: the session's inputs
        self._progress = progress or Progress()
        self._cache = cache or Cache(None)
        self.stem = stem
        self._path = Path(spec.model)
        self._out_dir = out_dir
        # A folder below the output root for the artifacts (the remedies'): the root stays the
        # limit of the link checks, so a link planted at the folder is refused, never followed.
        self._folder = folder
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

    def _digest(self, *parts: Any) -> str:
        """A cache key over ``parts``; large data files' digests may come from the cache's
        index of files by identity (:mod:`qcheck.stat_index`)."""
        from qcheck.stat_index import using

        with using(self._cache):
            return digest(*parts)

    @property
    def kind(self) -> str:
        from qcheck.tflite.convert import model_kind

        return self._memo.get("kind", lambda: model_kind(self._path))

    @property
    def out_dir(self) -> Path:
        return self._out_dir.resolve()

    def artifact(self, key: str) -> Path:
        """Where this run writes its artifact ``key`` (of :data:`ARTIFACTS`)."""
        return self.out_dir / self._folder / f"{self.stem}{ARTIFACTS[key]}"

    def first_artifacts(self) -> list[Path]:
        """The files this run writes before any check asks for more: the quantized model (a .tflite
        is checked as it is, not converted) and its quantization info."""
        keys = ("quantization_info",) if self._path.suffix.lower() == ".tflite" else ("quantized_model",
                                                                                       "quantization_info")
        return [self.artifact(key) for key in keys]

    def artifacts(self) -> dict[str, str]:
        """The files this run has written so far (absolute paths), and its artifact stem.

        Checks on one model run at different times, so each result lists what exists when it is
        made; the report merges them. A .tflite model is checked as it is: it is its own
        quantized model.
        """
        paths = {key: self.artifact(key) for key in ARTIFACTS}
        if self._path.suffix.lower() == ".tflite":
            paths["quantized_model"] = as_given(self._path)  # a link keeps its name
        return {"stem": self.stem, **{key: str(path) for key, path in paths.items() if path.exists()}}

    def facts(self) -> ModelFacts:
        """What the run knows about the model so far, for the reports, from the steps already
        taken (nothing is computed here). Asked for once per model, after the last of its checks
        (:class:`qcheck.items.FactsCourier`)."""
        from qcheck.facts import ModelFacts
        from qcheck.tflite.census import quantization_info

        self._step("gathering the facts for the report")
        info = self._memo.made("info")
        evaluation = self._memo.made("evaluation")
        analysis = evaluation.analysis if evaluation is not None else None
        breakdown = self._memo.made("size_breakdown")
        return ModelFacts(
            notes=tuple(self.notes),
            quantization_info=quantization_info(info, self._memo.made("census")) if info is not None else None,
            calibration=self._memo.made("calibration_diagnosis"),
            tensors=analysis.tensors if analysis is not None else (),
            layers=tuple(t for t in analysis.tensors if t.rmse_steps is not None) if analysis is not None else (),
            reference_weights=analysis.weights if analysis is not None else None,
            vela={result.config.accelerator: result for result in self._memo.made_under("vela:").values()},
            size_breakdown=tuple(breakdown) if breakdown is not None else None,
            artifacts=self.artifacts(),
        )

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
            from qcheck.warm_start import CONVERTER, remember_conversion, start_converter_unless_cached

            hinted = True
            with contextlib.suppress(QcheckError):  # raised below, in its turn
                if self.kind != "tflite":  # its TensorFlow import overlaps loading the data
                    hinted = start_converter_unless_cached(self._cache, self.spec)
            split = self._data.split()
            calibration = split.calibration if split else None
            evaluation = split.evaluation.x if split else None
            if not self._path.exists():
                raise QcheckError(self._path, "model file does not exist")
            self.kind  # a FIFO or a device is refused before it is copied
            with private_copy(self._path) as model:  # hashed and converted: the same bytes
                key = self._digest("convert", versions("tensorflow", "keras", "tf-keras"), model, calibration,
                                   evaluation, self.spec.io_dtype, str(self.spec.unsafe_deserialization),
                                   self.spec.quantization.key(), self.spec.stateful)

                def convert() -> Quantized:
                    self._step("converting")
                    with named_as(model, as_given(self._path)):
                        converted: Quantized = call_isolated(
                            "qcheck.tflite.convert:quantize", model, calibration, evaluation,
                            io_dtype=self.spec.io_dtype, unsafe=self.spec.unsafe_deserialization,
                            activations=self.spec.quantization.activations,
                            per_channel_dense=self.spec.quantization.per_channel_dense,
                            keep_float=self.spec.quantization.keep_float,
                            int16_layers=self.spec.quantization.int16_layers,
                            calibration_file=split.calibration_path if split else "", stateful=self.spec.stateful,
                            what=f"converting {self.model}", timeout=self._timeout, kept=CONVERTER,
                        )
                    return converted

                quantized, hit = self._cache.get_or_make(key, convert)
                if not (hit and hinted):
                    remember_conversion(self._cache, self.spec, key)
            if hit:
                self.notes.append("quantized model and float outputs taken from the cache")
            if self.spec.quantization.activations == "int16":
                self.notes.append("converted to int16x8 (int16 activations, int8 weights; int16 input and output), "
                                  "as activations = \"int16\" asks")
            self.notes.extend(quantized.notes)  # e.g. which loader or converter took the model
            if split is not None:
                from qcheck.data import few_calibration_samples

                self.notes.append(f"calibration: {split.calibration_source}" + (
                    " (as [quantization] calibration_from = \"data\" asks: a separate calibration set is not used)"
                    if self.spec.quantization.calibration_from == "data" else ""))
                few = few_calibration_samples(len(split.calibration))
                if few:
                    self.notes.append(few)
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
                if self.spec.quantization.activations != "int8":
                    self.notes.append(f"activations = \"{self.spec.quantization.activations}\" is not applied: "
                                      "a .tflite is checked as it is, converted already")
                return data
            data = self._quantized().tflite
            atomic_write(self.artifact("quantized_model"), data, never=self._inputs, root=self.out_dir)
            return data

        return self._memo.get("tflite", make)

    def tflite_path(self) -> Path:
        self.tflite()
        return as_given(self._path) if self.kind == "tflite" else self.artifact("quantized_model")

    def info(self) -> ModelInfo:
        def make() -> ModelInfo:
            from qcheck.tflite.census import quantization_info, take_census

            try:
                info = self._read_model(self.tflite())
            except ValueError as exc:
                raise QcheckError(self._path if self.kind == "tflite" else None, str(exc)) from None
            census = self._memo.get("census", lambda: take_census(info))  # once, for the file and the checks
            write_json(self.artifact("quantization_info"), quantization_info(info, census),
                       never=self._inputs, root=self.out_dir)
            self.notes.extend(census.io_notes)
            return info

        return self._memo.get("info", make)

    def _read_model(self, tflite: bytes) -> ModelInfo:
        """``tflite`` read (:func:`qcheck.tflite.inspect.inspect_model`), or as the cache kept it from
        reading the same bytes: a warm run does not load LiteRT's flatbuffer binding (thousands of
        objects that every garbage collection of the run then walks). ValueError for a damaged model."""
        from qcheck.tflite.inspect import ModelInfo, inspect_model

        key = digest("inspect", versions("ai-edge-litert"), tflite)
        info, _ = self._cache.get_or_make(key, lambda: inspect_model(tflite))
        return info if isinstance(info, ModelInfo) else inspect_model(tflite)

    def census(self) -> Census:
        from qcheck.tflite.census import take_census

        info = self.info()  # made with the model's info; asked for first, so no lock waits on the other
        return self._memo.get("census", lambda: take_census(info))

    # -- float reference and evaluation ------------------------------------------------------

    def no_reference_reason(self) -> str:
        from qcheck.tflite.census import is_float_model

        if is_float_model(self.info()):  # a float .tflite is not "already quantized"
            return ("needs a quantized model to compare with a float one: this .tflite is a float model (no tensor "
                    "is quantized); give qcheck the Keras model to quantize, or the quantized .tflite with this "
                    "one as --qcheck-reference")
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
            path = as_given(self.spec.reference)
            if not path.exists():
                raise QcheckError(self.spec.reference, "reference model does not exist")
            from qcheck.tflite.convert import model_kind

            model_kind(path)  # a FIFO or a device is refused before it is read
            from qcheck.warm_start import kept_for

            with private_copy(path) as copy:  # hashed and run: the same bytes
                key = self._digest("reference", versions("tensorflow", "keras", "tf-keras", "ai-edge-litert"), copy,
                                   data.x, str(self.spec.unsafe_deserialization), self.spec.stateful)

                def predict() -> FloatReference:
                    self._step("running the float reference")
                    with named_as(copy, path):
                        outputs: FloatReference = call_isolated(
                            "qcheck.tflite.convert:reference_outputs", copy, data.x,
                            unsafe=self.spec.unsafe_deserialization, stateful=self.spec.stateful,
                            what=f"running the reference model {self.spec.reference}", timeout=self._timeout,
                            kept=kept_for(path),
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
            key = self._digest("evaluate", versions("ai-edge-litert"), tflite, data.x, float_tflite, calibration,
                               str(ANALYSIS_SAMPLES), "weights+origins", self.spec.stateful)  # the analysis changed
            # One pass gives the outputs and, for the first samples, every intermediate tensor.

            def evaluate() -> RunResult:
                self._step(f"evaluating {len(data)} samples")
                evaluated: RunResult = call_isolated(
                    "qcheck.tflite.run:run", tflite, data.x, float_tflite=float_tflite, calibration=calibration,
                    analysis_samples=ANALYSIS_SAMPLES, stateful=self.spec.stateful,
                    what=f"running {self.model} in the LiteRT interpreter", timeout=self._timeout,
                )
                return evaluated

            self.notes.extend(data_notes(self.info(), len(data), self.spec))

            result, _ = self._cache.get_or_make(key, evaluate)
            return result

        result = self._memo.get("evaluation", make)
        if result is None:
            return None  # no data: nothing about the model is needed (it may not even load)
        return with_reference_names(result, self.reference, self.model, self.notes, self.info())

    def application_evaluation(self, scale: float, zero_point: int) -> RunResult | None:
        """The model run on inputs the application quantized with its own ``scale`` and
        ``zero_point`` (the ``input_contract`` check); None without data or an integer input."""
        def make() -> RunResult | None:
            data, own = self.evaluation_data(), self.evaluation()
            if data is None or own is None or own.input_params is None:
                return None
            tflite, params = self.tflite(), own.input_params
            key = self._digest("contract", versions("ai-edge-litert"), tflite, data.x, repr((scale, zero_point)))

            def evaluate() -> RunResult:
                self._step(f"evaluating {len(data)} samples fed the application's way")
                evaluated: RunResult = call_isolated(
                    "qcheck.tflite.contract:run_as_application", tflite, data.x, model_scale=params.scale,
                    model_zero_point=params.zero_point, dtype=params.dtype, contract_scale=scale,
                    contract_zero_point=zero_point, what=f"running {self.model} on the application's inputs",
                    timeout=self._timeout,
                )
                return evaluated

            result, _ = self._cache.get_or_make(key, evaluate)
            return same_heads(result, own)

        return self._memo.get(f"contract:{scale!r}:{zero_point}", make)

    def _float_tflite(self) -> bytes | None:
        """The unquantized twin whose tensors the per-layer error is measured against."""
        if self.kind != "tflite":
            return self._quantized().float_tflite
        reference = self.spec.reference
        if reference and Path(reference).suffix.lower() == ".tflite" and Path(reference).is_file():
            from qcheck.tflite.inspect import inspect_model

            twin = read_regular(reference, "reference model")
            try:
                inspect_model(twin)
            except ValueError as exc:
                # The twin is for the per-layer comparison only: the quantized model's run must
                # not fail for it (accuracy_drop, which needs the reference, says what is wrong).
                self.notes.append(f"layers not compared with the float reference: {reference} cannot be read ({exc})")
                return None
            return twin
        return None

    def calibration_data(self) -> np.ndarray | NamedInputs | None:
        """The samples the model was calibrated with (None for an already quantized .tflite)."""
        split = self._data.split()
        return split.calibration if split is not None and self.kind != "tflite" else None

    # -- TensorFlow Lite Micro (qcheck.tflm.steps) ------------------------------------------

    def tflm(self) -> TflmLoad:
        from qcheck.tflm import steps

        return self._memo.get("tflm", lambda: steps.load(self))

    def tflm_evaluation(self, runtime: str = "tflm") -> RunResult | None:
        from qcheck.tflm import steps

        def make() -> RunResult | None:
            data = self.evaluation_data()
            if data is None:
                return None
            check_fits(self.info(), data, self.model)
            return steps.evaluation(self, data, runtime)

        result = self._memo.get(f"tflm_evaluation:{runtime}", make)
        return with_reference_names(result, self.reference, self.model, self.notes, self.info())

    def tflm_divergence(self, samples: np.ndarray, steps: float) -> Divergence:
        from qcheck.tflm import steps as tflm_steps

        key = f"tflm_divergence:{samples.tolist()}:{steps!r}"
        return self._memo.get(key, lambda: tflm_steps.divergence(self, samples, steps))

    def vela_compiled(self, config: VelaConfig) -> bytes:
        """Vela's compiled model for ``config`` (compiled once, as for :meth:`vela`)."""
        self.vela(config)
        compiled: bytes | None = self._memo.made(f"vela_compiled:{config}")
        if not compiled:
            raise QcheckError(self.model, f"Vela wrote no compiled model for {config.described}")
        return compiled

    def tflm_cpu_part(self, config: VelaConfig | None) -> CpuPartLoad:
        from qcheck.tflm import steps

        def make() -> CpuPartLoad:
            if config is None:  # the model is Vela's output already
                return steps.cpu_part(self, self.tflite(), "the model as given")
            return steps.cpu_part(self, self.vela_compiled(config), f"Vela's output for {config.accelerator}")

        return self._memo.get(f"tflm_cpu_part:{config}", make)

    def tflm_cpu_parity(self, config: VelaConfig) -> CpuParity | None:
        from qcheck.tflm import steps

        def make() -> CpuParity | None:
            data = self.evaluation_data()
            if data is None:
                return None
            check_fits(self.info(), data, self.model)
            x = data.x[np.arange(min(len(data), CPU_PARITY_SAMPLES))]
            return steps.cpu_parity(self, self.vela_compiled(config), f"Vela's output for {config.accelerator}", x)

        return self._memo.get(f"tflm_cpu_parity:{config}", make)

    def calibration_diagnosis(self) -> CalibrationDiagnosis | None:
        """Calibration inputs against evaluation inputs, and constant outputs (None without data),
        made once for the checks that cite it and the report."""
        from qcheck.checks.calibration import calibration_diagnosis

        return self._memo.get("calibration_diagnosis", lambda: calibration_diagnosis(self))

    def size_breakdown(self) -> list[LayerBytes]:
        """The constant bytes of the .tflite per operator, largest first (made once)."""
        from qcheck.tflite.breakdown import size_breakdown

        return self._memo.get("size_breakdown", lambda: size_breakdown(self.info()))

    # -- targets ---------------------------------------------------------------------------

    def vela(self, config: VelaConfig) -> VelaResult:
        def make() -> VelaResult:
            from dataclasses import replace

            from qcheck.vela import VelaFiles, compile_model, read_config_file, read_result

            self.info()
            folder = self.artifact("vela") / safe_stem(config.label)
            self._inputs.refuse_inside(folder)  # Vela's files there are replaced, stale ones removed
            model = self.tflite_path()
            ini = read_config_file(config.config_file)  # None for Vela's own; a user's: bounded, read once
            # The config file counts by name and, when it is the user's file, by content.
            key = digest("vela", "debug-db", versions("ethos-u-vela"), self.tflite(), config.accelerator,
                         config.system_config, config.memory_mode, config.config_file, ini)

            def compile() -> VelaFiles:
                self._progress.step(self.model, f"compiling for {config.accelerator} with Vela")
                # Vela compiles the bytes of the key, not the files as they may be by now.
                with private_file(self.tflite(), model.name) as staged, named_as(staged, model):
                    if ini is None:
                        return compile_model(staged, config, folder, timeout=self._timeout, root=self.out_dir,
                                             never=self._inputs)
                    user_ini = Path(config.config_file).expanduser()
                    with private_file(ini, user_ini.name) as staged_ini, named_as(staged_ini, user_ini):
                        return compile_model(staged, replace(config, config_file=str(staged_ini)), folder,
                                             timeout=self._timeout, root=self.out_dir, never=self._inputs)

            files, _ = self._cache.get_or_make(key, compile)
            self._memo.get(f"vela_compiled:{config}", lambda: files.compiled)  # for the CPU part's checks
            return read_result(model, config, files, folder, root=self.out_dir, never=self._inputs, info=self.info())

        # One compilation per configuration, shared by the vela check and the memory checks.
        return self._memo.get(f"vela:{config}", make)


@contextlib.contextmanager
def named_as(copy: Path, original: Path) -> Iterator[None]:
    """Errors of a step run on a private copy name the user's file, not the copy."""
    def named(text: str | None) -> str | None:
        return text.replace(str(copy), str(original)) if text else text

    try:
        yield
    except QcheckError as exc:
        raise QcheckError(named(exc.path), named(exc.problem) or "", named(exc.hint) or "") from None
    except StepFailed as exc:
        raise StepFailed(named(str(exc))) from None


def _paired_by_layer_name(info: ModelInfo, ours: list[str], theirs: tuple[str, ...]) -> dict[str, str] | None:
    """Each output's float-model name, when exactly one of ``theirs`` appears as a part of the
    names of the tensors its operator reads or writes (Keras 3 adds "_1": ``cls_1``), one to one."""
    import re

    tensors = {io.name: io.tensor for io in info.outputs}
    pairs: dict[str, str] = {}
    for name in ours:
        tensor = tensors.get(name)
        op = info.producer(tensor) if tensor is not None else None
        if tensor is None or op is None:
            return None
        names = [tensor.name] + [info.tensor(op.subgraph, i).name for i in op.inputs if i >= 0]
        parts = {re.sub(r"_\d+$", "", part) for text in names for part in re.split(r"[/;:]", text)}
        found = [candidate for candidate in theirs if candidate in parts]
        if len(found) != 1:
            return None
        pairs[name] = found[0]
    return pairs if len(set(pairs.values())) == len(pairs) == len(theirs) else None


# Below this many evaluation samples one sample moves accuracy by more than a point.
FEW_EVALUATION_SAMPLES = 100


def data_notes(info: ModelInfo, evaluated: int, spec: RunSpec) -> list[str]:
    """Report notes on how the evaluation ran: a stateful model's state, too few samples."""
    notes = []
    if info.stateful:
        if spec.stateful == "keep":
            notes.append(f"the model keeps state in {info.state}: kept from sample to sample, "
                         "the evaluation data run in order as one long sequence (stateful = \"keep\")")
        else:
            how = " (resource variables by a new interpreter per sample)" if info.resource_state else ""
            notes.append(f"the model keeps state in {info.state}: reset before each sample{how}, so that samples "
                         "are independent; for data that is one long sequence set stateful = \"keep\"")
    if len(info.inputs) > 1:
        each = ", ".join(f"'{io.name}' ({io.tensor.dtype}" + (f", scale {io.tensor.scale[0]:.4g}, zero point "
                                                             f"{io.tensor.zero_point[0]}" if io.tensor.scale else "")
                         + ")" for io in sorted(info.inputs, key=lambda io: io.name))
        notes.append(f"{len(info.inputs)} inputs, each fed from the data's x_<input name> array by name and "
                     f"quantized with its own parameters: {each}")
    if evaluated < FEW_EVALUATION_SAMPLES:
        notes.append(f"only {evaluated} evaluation sample(s): one sample is {100 / evaluated:.3g} points of "
                     "accuracy, too few to judge a drop of a few points (give a few hundred)")
    return notes


def check_fits(info: ModelInfo, data: Dataset, model: str) -> None:
    """The data's samples must have the shape of the model's input (of each input, matched by
    name, for a model with several), and the model must not be Vela's output, whose 'ethos-u'
    operators the interpreter cannot run."""
    if any(op.custom and op.op == "ethos-u" for op in info.operators):
        from qcheck.vela import COMPILED_MODEL_HINT

        raise QcheckError(model, "was compiled by Vela: its 'ethos-u' operators run only on an Ethos-U NPU, "
                          "not in the LiteRT interpreter", COMPILED_MODEL_HINT)
    from qcheck.named_inputs import NamedInputs, by_input

    expected = {io.name: io.tensor.shape[1:] for io in info.inputs}
    try:
        arrays = by_input(data.x, expected)
    except ValueError as exc:
        raise QcheckError(data.path, f"does not fit the model {model}: {exc}") from None
    for name, x in arrays.items():
        if tuple(x.shape[1:]) != expected[name]:
            array = f"array 'x_{name}' has" if isinstance(data.x, NamedInputs) else "samples have"
            raise QcheckError(data.path, f"does not fit the model {model}: {array} shape "
                              f"{tuple(x.shape[1:])}, the model's input '{name}' takes {expected[name]}")


def with_reference_names(result: RunResult | None, reference: Callable[[], FloatReference | None],
                         model: str, notes: list[str] | None = None,
                         info: ModelInfo | None = None) -> RunResult | None:
    """``result`` keyed by the float model's output names when the float model ran.

    When it could not (a reference Keras cannot load), the quantized run stands as it is: the
    checks that compare with the float model ask for it and report why it failed, and the checks
    that need only the quantized model (saturation, layer_error) go on (issue 14).
    """
    if result is None:
        return None
    try:
        outputs = reference()
    except (QcheckError, StepFailed):
        return result
    return align_heads(result, outputs, model, notes, info) if outputs is not None else result


def same_heads(result: RunResult, like: RunResult) -> RunResult:
    """``result`` of the same model keyed as ``like`` (whose single head may carry the float
    model's name), without asking for the float model again."""
    from dataclasses import replace

    if set(result.outputs) != set(like.outputs) and len(result.outputs) == len(like.outputs) == 1:
        return replace(result, outputs={next(iter(like.outputs)): next(iter(result.outputs.values()))})
    return result


def align_heads(result: RunResult, reference: FloatReference, model: str,
                notes: list[str] | None = None, info: ModelInfo | None = None) -> RunResult:
    """Key the quantized outputs by the reference's names; never pair outputs by position,
    except when both sides have a single output.

    A .tflite converted outside qcheck names its outputs by its signature (output_0, output_1)
    where the Keras reference names them by layer (cls, reg). They are paired by the Keras layer
    name found in the names of the tensors the output's operator reads (``functional_1/cls_1/MatMul``)
    when that pairs them one to one; else, when every output's shape is distinct on both sides and
    the shapes match one to one, by shape. ``notes`` says which; otherwise StepFailed lists both
    sides and how to fix it.
    """
    from dataclasses import replace

    names = set(reference.output_names)
    if set(result.outputs) == names:
        return result
    if len(result.outputs) == 1 and len(names) == 1:
        (only,) = result.outputs.values()
        return replace(result, outputs={reference.output_names[0]: only})
    ours = {name: tuple(head.values.shape[1:]) for name, head in result.outputs.items()}
    theirs = {name: tuple(reference.outputs[name].shape[1:]) for name in reference.output_names}
    by_shape = {shape: name for name, shape in theirs.items()}
    pairs = _paired_by_layer_name(info, list(result.outputs), reference.output_names) if info else None
    how = "by the layer names in their tensors' names"
    if pairs is not None and any(ours[name] != theirs[pairs[name]] for name in pairs):
        pairs = None  # a name that leads to an output of another shape is no evidence
    if pairs is None and (len(ours) == len(theirs) and len(set(ours.values())) == len(ours)
                          and len(by_shape) == len(theirs) and set(ours.values()) == set(by_shape)):
        pairs, how = {name: by_shape[shape] for name, shape in ours.items()}, "by shape"
    if pairs is not None:
        note = (f"outputs paired {how}, as their names differ from the float model's: "
                + ", ".join(f"{name} {list(ours[name])} -> {pairs[name]}" for name in sorted(pairs))
                + " (give the outputs the float model's names to pair them by name)")
        if notes is not None and note not in notes:
            notes.append(note)
        return replace(result, outputs={pairs[name]: head for name, head in result.outputs.items()})

    def listing(shapes: dict[str, tuple[int, ...]]) -> str:
        return ", ".join(f"{name} {list(shape)}" for name, shape in sorted(shapes.items()))

    raise StepFailed(
        f"{model}: its outputs ({listing(ours)}) do not match the float model's ({listing(theirs)}) by name, "
        "and their shapes do not tell them apart; qcheck pairs outputs by name, never by position (a converter "
        "may reorder them). Fix: give the Keras model itself as --qcheck-model (qcheck converts it and keeps "
        "the names), or export the .tflite with its signature outputs named as the Keras outputs "
        "(e.g. a tf.function returning a dict keyed by those names)")
