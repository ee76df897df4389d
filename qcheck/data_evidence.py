"""A model's evidence on other data: the same quantized and float models, samples the user gives.

The assertion helpers measure with it when a test passes data other than the model's own
evaluation set (``qcheck.assert_accuracy_drop(q, hard_cases)``). Everything that does not depend
on the data (the ``.tflite``, its census, Vela) comes from the model's pipeline; the float and
quantized outputs on the new samples are computed in child processes, as the pipeline does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from qcheck.config import RunSpec
from qcheck.inputs import as_given
from qcheck.isolation import call_isolated
from qcheck.pipeline import Memo, check_fits, with_reference_names

if TYPE_CHECKING:
    import numpy as np

    from qcheck.checks.calibration import CalibrationDiagnosis
    from qcheck.data import Dataset
    from qcheck.named_inputs import NamedInputs
    from qcheck.pipeline import ModelRun
    from qcheck.tflite.breakdown import LayerBytes
    from qcheck.tflite.census import Census
    from qcheck.tflite.convert import FloatReference
    from qcheck.tflite.inspect import ModelInfo
    from qcheck.tflite.run import RunResult
    from qcheck.tflm import CpuParity, CpuPartLoad, Divergence, TflmLoad
    from qcheck.vela import VelaConfig, VelaResult


class DataEvidence:
    """:class:`~qcheck.checks.evidence.Evidence` of ``base``'s model measured on ``data``."""

    def __init__(self, base: ModelRun, data: Dataset) -> None:
        self._base = base
        self._data = data
        self._memo = Memo()

    @property
    def spec(self) -> RunSpec:
        return self._base.spec

    @property
    def model(self) -> str:
        return self._base.model

    @property
    def kind(self) -> str:
        return self._base.kind

    @property
    def timeout(self) -> float:
        return self._base.timeout

    def tflite(self) -> bytes:
        return self._base.tflite()

    def info(self) -> ModelInfo:
        return self._base.info()

    def census(self) -> Census:
        return self._base.census()

    def vela(self, config: VelaConfig) -> VelaResult:
        return self._base.vela(config)

    def calibration_data(self) -> np.ndarray | NamedInputs | None:
        return self._base.calibration_data()

    def calibration_diagnosis(self) -> CalibrationDiagnosis | None:
        from qcheck.checks.calibration import calibration_diagnosis

        return self._memo.get("calibration_diagnosis", lambda: calibration_diagnosis(self))  # on this data

    def size_breakdown(self) -> list[LayerBytes]:
        return self._base.size_breakdown()

    def no_reference_reason(self) -> str:
        return self._base.no_reference_reason()

    def application_evaluation(self, scale: float, zero_point: int) -> RunResult | None:
        from qcheck.pipeline import same_heads

        def make() -> RunResult | None:
            params = self.evaluation().input_params
            if params is None:
                return None
            result = cast("RunResult", call_isolated(
                "qcheck.tflite.contract:run_as_application", self.tflite(), self._data.x,
                model_scale=params.scale, model_zero_point=params.zero_point, dtype=params.dtype,
                contract_scale=scale, contract_zero_point=zero_point,
                what=f"running {self.model} on the application's inputs", timeout=self.timeout,
            ))
            return same_heads(result, self.evaluation())

        return self._memo.get(f"contract:{scale!r}:{zero_point}", make)

    def evaluation_data(self) -> Dataset:
        return self._data

    def tflm(self) -> TflmLoad:
        return self._base.tflm()

    def tflm_cpu_part(self, config: VelaConfig | None) -> CpuPartLoad:
        return self._base.tflm_cpu_part(config)

    def tflm_cpu_parity(self, config: VelaConfig) -> CpuParity | None:
        def make() -> CpuParity:
            import numpy

            from qcheck.pipeline import CPU_PARITY_SAMPLES

            check_fits(self.info(), self._data, self.model)
            x = self._data.x[numpy.arange(min(len(self._data), CPU_PARITY_SAMPLES))]
            return cast("CpuParity", call_isolated(
                "qcheck.tflm.runtime:cpu_part_parity", self._base.vela_compiled(config), self.tflite(), x,
                stateful=self.spec.stateful, what=f"running the CPU part of {self.model} in TFLite Micro and LiteRT",
                timeout=self.timeout,
            ))

        return self._memo.get(f"tflm_cpu_parity:{config}", make)

    def tflm_evaluation(self, runtime: str = "tflm") -> RunResult | None:
        def make() -> RunResult:
            check_fits(self.info(), self._data, self.model)
            if runtime == "tflm":
                loaded = self.tflm()
                if not loaded.loaded:
                    from qcheck.errors import QcheckError

                    raise QcheckError(self.model, f"TFLite Micro {loaded.version} cannot load the model: "
                                      f"{loaded.reason}", "see the tflm_ops check")
            return cast("RunResult", call_isolated(
                f"qcheck.tflm.runtime:{'run' if runtime == 'tflm' else 'run_litert'}", self.tflite(), self._data.x,
                stateful=self.spec.stateful, what=f"running {self.model} in {runtime}", timeout=self.timeout,
            ))

        return with_reference_names(self._memo.get(f"tflm_evaluation:{runtime}", make), self.reference, self.model)

    def tflm_divergence(self, samples: np.ndarray, steps: float) -> Divergence:
        def make() -> Divergence:
            return cast("Divergence", call_isolated(
                "qcheck.tflm.runtime:divergence", self.tflite(), self._data.x[samples], steps=steps,
                stateful=self.spec.stateful, what=f"comparing {self.model} layer by layer in TFLite Micro and LiteRT",
                timeout=self.timeout,
            ))

        return self._memo.get(f"tflm_divergence:{samples.tolist()}:{steps!r}", make)

    def reference(self) -> FloatReference | None:
        def make() -> FloatReference | None:
            from qcheck.warm_start import kept_for

            spec = self._base.spec
            path = spec.model if self.kind != "tflite" else spec.reference
            if path is None:
                return None
            return cast("FloatReference", call_isolated(
                "qcheck.tflite.convert:reference_outputs", as_given(path), self._data.x,
                unsafe=spec.unsafe_deserialization, what=f"running the float model {path}", timeout=self.timeout,
                kept=kept_for(as_given(path)),
            ))

        return self._memo.get("reference", make)

    def evaluation(self) -> RunResult:
        def make() -> RunResult:
            check_fits(self.info(), self._data, self.model)
            result = cast("RunResult", call_isolated(
                "qcheck.tflite.run:run", self.tflite(), self._data.x,
                what=f"running {self.model} in the LiteRT interpreter", timeout=self.timeout,
            ))
            return result

        aligned = with_reference_names(self._memo.get("evaluation", make), self.reference, self.model)
        assert aligned is not None
        return aligned
