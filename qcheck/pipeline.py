"""One model's pipeline: convert once, evaluate once, compile once, shared by every check.

Each step is computed on first use and remembered, failures included, so that a conversion
that fails is reported by every check that needed it and never retried within a session.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from qcheck.config import Settings
from qcheck.errors import QcheckError, StepFailed
from qcheck.files import atomic_write, write_json

if TYPE_CHECKING:
    from qcheck.data import Dataset, Split
    from qcheck.tflite.census import Census
    from qcheck.tflite.convert import FloatReference, Quantized
    from qcheck.tflite.inspect import ModelInfo
    from qcheck.tflite.run import RunResult
    from qcheck.vela import VelaResult

T = TypeVar("T")


class DataSource:
    """The session's data files, loaded once and shared by every model."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._memo: dict[str, Any] = {}

    def data(self) -> Dataset | None:
        from qcheck.data import load_npz

        path = self._settings.data
        return _memo(self._memo, "data", lambda: load_npz(path) if path else None)

    def calibration(self) -> Dataset | None:
        from qcheck.data import load_npz

        path = self._settings.calibration
        return _memo(self._memo, "calibration", lambda: load_npz(path) if path else None)

    def split(self) -> Split | None:
        from qcheck.data import split

        def make() -> Split | None:
            data = self.data()
            if data is None:
                return None
            return split(data, self._settings.calibration_samples, self.calibration())

        return _memo(self._memo, "split", make)


def _memo(store: dict[str, Any], key: str, make: Callable[[], T]) -> T:
    if key not in store:
        try:
            store[key] = (True, make())
        except (QcheckError, StepFailed) as exc:
            store[key] = (False, exc)
        except Exception as exc:  # an unexpected failure of a native step stays with this model
            store[key] = (False, StepFailed(f"{type(exc).__name__}: {exc}"))
    ok, value = store[key]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class ModelRun:
    """The evidence about one model (implements :class:`qcheck.checks.evidence.Evidence`)."""

    def __init__(self, model: str, stem: str, settings: Settings, data: DataSource) -> None:
        self.model = model
        self.stem = stem
        self._path = Path(model)
        self._settings = settings
        self._data = data
        self._memo: dict[str, Any] = {}
        self.notes: list[str] = []  # facts for the report, e.g. how calibration was done

    @property
    def kind(self) -> str:
        from qcheck.tflite.convert import model_kind

        return _memo(self._memo, "kind", lambda: model_kind(self._path))

    @property
    def out_dir(self) -> Path:
        return self._settings.out_dir.resolve()

    # -- data -------------------------------------------------------------------------------

    def evaluation_data(self) -> Dataset | None:
        split = self._data.split()
        if split is None:
            return None
        if self.kind == "tflite" and self._settings.calibration is None:
            return self._data.data()  # nothing to calibrate: evaluate on everything
        return split.evaluation

    # -- conversion ------------------------------------------------------------------------

    def _quantized(self) -> Quantized:
        def make() -> Quantized:
            from qcheck.data import SYNTHETIC_SAMPLES
            from qcheck.tflite.convert import quantize

            split = self._data.split()
            quantized = quantize(
                self._path,
                split.calibration if split else None,
                split.evaluation.x if split else None,
                io_dtype=self._settings.io_dtype,
                unsafe=self._settings.unsafe_deserialization,
            )
            if split is not None:
                self.notes.append(f"calibration: {split.calibration_source}")
            else:
                self.notes.append(f"calibrated on {SYNTHETIC_SAMPLES} synthetic samples (uniform 0..1) because "
                                  "no --qcheck-data was given: accuracy and saturation are not measured")
            return quantized

        return _memo(self._memo, "quantized", make)

    def tflite(self) -> bytes:
        def make() -> bytes:
            if self.kind == "tflite":
                data = self._path.read_bytes()
                if not data:
                    raise QcheckError(self._path, "model file is empty")
                return data
            data = self._quantized().tflite
            atomic_write(self.out_dir / f"{self.stem}_quant.tflite", data)
            return data

        return _memo(self._memo, "tflite", make)

    def tflite_path(self) -> Path:
        self.tflite()
        return self._path if self.kind == "tflite" else self.out_dir / f"{self.stem}_quant.tflite"

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

        return _memo(self._memo, "info", make)

    def sections(self) -> dict[str, Any]:
        """Model-level facts already computed, for the report (nothing is computed here)."""
        from qcheck.tflite.census import quantization_info

        sections: dict[str, Any] = {}
        if self.notes:
            sections["notes"] = list(self.notes)
        ok, info = self._memo.get("info", (False, None))
        if ok:
            sections["quantization_info"] = quantization_info(info)
        return sections

    def census(self) -> Census:
        from qcheck.tflite.census import take_census

        return _memo(self._memo, "census", lambda: take_census(self.info()))

    # -- float reference and evaluation ------------------------------------------------------

    def no_reference_reason(self) -> str:
        return ("needs the float model to compare with: this is an already quantized .tflite; "
                "pass --qcheck-reference=FLOAT_MODEL")

    def reference(self) -> FloatReference | None:
        def make() -> FloatReference | None:
            if self.evaluation_data() is None:
                return None
            if self.kind != "tflite":
                return self._quantized().reference
            if not self._settings.reference:
                return None
            return _reference_outputs(Path(self._settings.reference), self.evaluation_data(), self._settings)

        return _memo(self._memo, "reference", make)

    def evaluation(self) -> RunResult | None:
        def make() -> RunResult | None:
            from qcheck.tflite.run import run

            data = self.evaluation_data()
            if data is None:
                return None
            self.info()  # a file that is not a model fails here, with its name, not in the runtime
            try:
                result = run(self.tflite(), data.x)
            except ValueError as exc:
                raise QcheckError(data.path, f"does not fit the model {self.model}: {exc}") from None
            reference = self.reference()
            if reference is not None:
                result = _align_heads(result, reference, self.model)
            return result

        return _memo(self._memo, "evaluation", make)

    # -- targets ---------------------------------------------------------------------------

    def vela(self, accelerator: str) -> VelaResult:
        def make() -> VelaResult:
            from qcheck.vela import VelaConfig, run_vela

            try:
                config = VelaConfig.default_for(accelerator)
            except ValueError as exc:
                raise QcheckError(None, str(exc)) from None
            self.info()
            return run_vela(self.tflite_path(), config, self.out_dir / f"{self.stem}_vela" / accelerator)

        return _memo(self._memo, f"vela:{accelerator}", make)


def _reference_outputs(path: Path, data: Dataset | None, settings: Settings) -> FloatReference:
    """Float outputs of a reference model: a float .tflite runs in LiteRT, anything else in Keras."""
    from qcheck.tflite.convert import FloatReference, load_float_model, model_kind, predict
    from qcheck.tflite.run import run

    assert data is not None
    if model_kind(path) == "tflite":
        result = run(path.read_bytes(), data.x)
        return FloatReference({k: v.values for k, v in result.outputs.items()}, tuple(result.outputs))
    return predict(load_float_model(path, unsafe=settings.unsafe_deserialization), data.x)


def _align_heads(result: RunResult, reference: FloatReference, model: str) -> RunResult:
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
