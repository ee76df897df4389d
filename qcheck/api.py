"""qcheck from Python: quantize a model, and assert any check on it with the suites' own code.

    q = qcheck.quantize("model.keras", "val.npz")          # also outside pytest
    qcheck.assert_fully_quantized(q)
    qcheck.assert_accuracy_drop(q, max="2%")                 # on q's evaluation samples
    qcheck.assert_accuracy_drop(q, "hard_cases.npz", max="5%")

Every helper measures with the check's registered function and judges with
:func:`qcheck.verdict.judge`, exactly as a suite's item does (on the ``qcheck_quantized`` fixture
they share the item's pipeline). A failure raises AssertionError with the check's message,
pointing at the caller's line; a check that cannot be measured (no data, no float model) skips
the test. A threshold not given comes from ``q``'s suite: the test's marker and the run's suite
for the fixture, the ``suite`` of :func:`quantize` otherwise.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pytest

from qcheck.config import DEFAULT_CALIBRATION_SAMPLES, RunSpec
from qcheck.errors import QcheckError, StepFailed
from qcheck.inputs import as_given
from qcheck.isolation import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from qcheck.checks.evidence import Evidence
    from qcheck.data import Dataset
    from qcheck.quantized import QuantizedModel
    from qcheck.results import CheckResult

# Data as the helpers take it: a Dataset (the qcheck_data fixture), an .npz path, inputs alone,
# (inputs, labels), or arrays named as in an .npz ({"x": ..., "y_<head>": ...}).
DataLike = Union["Dataset", str, Path, np.ndarray, tuple[np.ndarray, np.ndarray], Mapping[str, np.ndarray]]
Threshold = Union[str, int, float, None]


def quantize(
    model: str | Path | Any,
    data: DataLike | None = None,
    *,
    calibration: DataLike | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    reference: str | Path | None = None,
    io: str = "uint8",
    unsafe_deserialization: bool = False,
    suite: str = "default",
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> QuantizedModel:
    """Quantize ``model`` to full integer as the pytest plugin does, and return it.

    ``model`` is a ``.keras``/``.h5`` file, a SavedModel folder (only with
    ``unsafe_deserialization=True``: loading one runs functions stored in it), an already
    quantized ``.tflite`` (checked as it is) or an in-memory Keras model. ``data`` is evaluation data (an ``.npz`` path,
    a Dataset, an array of inputs, ``(x, y)`` or named arrays); calibration takes a seeded split
    of it unless ``calibration`` is given. The conversion runs in a child process. Artifacts go
    to ``out`` (a temporary folder, removed with the returned model, when not given).
    """
    from qcheck.cache import Cache
    from qcheck.files import safe_stem
    from qcheck.pipeline import DataSource, ModelRun
    from qcheck.quantized import QuantizedModel
    from qcheck.suites import load_suite

    if io not in ("uint8", "int8"):
        raise QcheckError(None, f"io must be 'uint8' or 'int8', not {io!r}")
    thresholds = load_suite(suite)
    scratch = None if out is not None else tempfile.mkdtemp(prefix="qcheck-")
    out_dir = Path(out if out is not None else str(scratch))
    try:
        model_path = _model_path(model, out_dir)
        data_path = _data_path(data, out_dir, "data")
        calibration_path = _data_path(calibration, out_dir, "calibration")
        spec = RunSpec(model_path, data_path, calibration_path, calibration_samples,
                       str(as_given(reference)) if reference is not None else None, io, unsafe_deserialization,
                       quantization=thresholds.quantization_for())
        source = DataSource(data_path, calibration_path, calibration_samples)
        cache = Cache(Path(cache_dir).resolve() if cache_dir is not None else None)
        run = ModelRun(spec, safe_stem(Path(model_path).stem), out_dir, source, timeout, cache)
        quantized = QuantizedModel(run.tflite_path(), run.tflite(), run.info(), _evidence=run, _suite=thresholds)
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if scratch is not None:
        weakref.finalize(quantized, shutil.rmtree, scratch, True)
    return quantized


def _model_path(model: str | Path | Any, out_dir: Path) -> str:
    if isinstance(model, (str, Path)):
        return str(as_given(model))
    if not hasattr(model, "save"):
        raise QcheckError(None, f"cannot quantize a {type(model).__name__}",
                          "give a path to a .keras, .h5 or .tflite file, a SavedModel folder, or a Keras model")
    path = out_dir / "model.keras"
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return str(path)


def _arrays(data: np.ndarray | tuple[np.ndarray, np.ndarray] | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(data, np.ndarray):
        return {"x": data}
    if isinstance(data, tuple):
        if len(data) != 2:
            raise QcheckError(None, f"data as a tuple must be (inputs, labels), not {len(data)} arrays")
        return {"x": np.asarray(data[0]), "y": np.asarray(data[1])}
    return {str(name): np.asarray(value) for name, value in data.items()}


def _data_path(data: DataLike | None, out_dir: Path, name: str) -> str | None:
    """A path to an .npz holding ``data``; arrays are saved so that they load and validate as files do."""
    from qcheck.data import Dataset

    if data is None:
        return None
    if isinstance(data, (str, Path)):
        return str(Path(data).resolve())
    arrays: dict[str, Any]
    if isinstance(data, Dataset):  # possibly a subset of its file (qcheck_data is): save what it holds
        arrays = {"x": data.x, **{f"y_{k}" if k else "y": v for k, v in data.labels.items()}}
    else:
        arrays = _arrays(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.npz"
    np.savez(path, **arrays)
    return str(path)


def as_dataset(data: DataLike) -> Dataset:
    """``data`` as a validated :class:`~qcheck.data.Dataset` (arrays are checked like an .npz file)."""
    from qcheck.data import Dataset, load_npz

    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return load_npz(data)
    with tempfile.TemporaryDirectory(prefix="qcheck-") as folder:
        path = _data_path(data, Path(folder), "data")
        assert path is not None
        return load_npz(path)


# -- measuring and asserting ---------------------------------------------------------------------


def _evidence(q: QuantizedModel, data: DataLike | None) -> Evidence:
    from qcheck.data_evidence import DataEvidence
    from qcheck.pipeline import ModelRun

    base = q._evidence
    if not isinstance(base, ModelRun):
        raise QcheckError(str(q.path), "has no pipeline to measure from",
                          "make it with qcheck.quantize(...) or take the qcheck_quantized fixture")
    if data is None:
        return base
    dataset = as_dataset(data)
    if dataset is base.evaluation_data():
        return base  # the model's own evaluation set: share the pipeline's outputs
    return DataEvidence(base, dataset)


def run_check(name: str, q: QuantizedModel, data: DataLike | None = None, *, max: Threshold = None,  # noqa: A002
              min: Threshold = None, **options: Any) -> CheckResult:  # noqa: A002
    """Measure check ``name`` on ``q`` and judge it; the result, whatever the verdict.

    ``data``: the samples to measure on (default: ``q``'s evaluation set). ``max``/``min`` and
    ``options`` override ``q``'s suite, with units as in a suite ("2%", "300KB").
    """
    from qcheck.checks import registry
    from qcheck.checks.vela import DEFAULT_ACCELERATOR
    from qcheck.suites import CheckSpec, suggest, load_suite
    from qcheck.verdict import error_result, judge

    checks = registry()
    if name not in checks:
        raise QcheckError(None, f"unknown check '{name}'{suggest(name, checks)}",
                          "known checks: " + ", ".join(sorted(checks)))
    check = checks[name]
    suite = q._suite or load_suite("default")
    table = {key: value for key, value in (("max", max), ("min", min), *options.items()) if value is not None}
    if table:
        suite = suite.with_overrides({name: table}, f"qcheck.assert_{name}()")
    spec = suite.checks.get(name, CheckSpec(name))
    measure_options = dict(spec.options)
    variant = ""
    if check.per_accelerator:
        variant = str(measure_options.get("accelerator", DEFAULT_ACCELERATOR))
        measure_options["accelerator"] = variant
    evidence = _evidence(q, data)  # a wrong model or data file is the caller's error, raised as it is
    try:
        measurement = check.measure(evidence, measure_options)
    except (QcheckError, StepFailed) as exc:
        return error_result(evidence.model, check, spec, exc, variant)
    return judge(evidence.model, check, spec, measurement, variant)


def assert_check(name: str, q: QuantizedModel, data: DataLike | None = None, *, max: Threshold = None,  # noqa: A002
                 min: Threshold = None, **options: Any) -> CheckResult:  # noqa: A002
    """Assert that check ``name`` passes on ``q``: AssertionError with its message when it fails,
    a skip when it cannot be measured. Returns the passing result (its ``value``, ``message``)."""
    __tracebackhide__ = True
    result = run_check(name, q, data, max=max, min=min, **options)
    if result.passed is None:
        pytest.skip(result.message)
    if not result.passed:
        raise AssertionError(result.message)
    return result


def assert_fully_quantized(q: QuantizedModel, *, max: Threshold = None) -> CheckResult:  # noqa: A002
    """Every activation and weight is integer, with no float QUANTIZE/DEQUANTIZE."""
    __tracebackhide__ = True
    return assert_check("fully_quantized", q, max=max)


def assert_float32_tensors(q: QuantizedModel, *, max: Threshold = None) -> CheckResult:  # noqa: A002
    """No more float32 tensors than ``max`` (the suite's, 0 by default)."""
    __tracebackhide__ = True
    return assert_check("float32_tensors", q, max=max)


def assert_accuracy_drop(q: QuantizedModel, data: DataLike | None = None, *,
                         max: Threshold = None, **options: Any) -> CheckResult:  # noqa: A002
    """Accuracy lost by quantization on ``data``, each output head in its task's metric
    (``task="regression"``, ``tasks={"head": "embedding"}``: the suite's options)."""
    __tracebackhide__ = True
    return assert_check("accuracy_drop", q, data, max=max, **options)


def assert_saturation(q: QuantizedModel, data: DataLike | None = None, *, max: Threshold = None,  # noqa: A002
                      **options: Any) -> CheckResult:
    """Share of input and output values clipped at the integer limits on ``data``."""
    __tracebackhide__ = True
    return assert_check("saturation", q, data, max=max, **options)


def assert_size(q: QuantizedModel, *, max: Threshold = None) -> CheckResult:  # noqa: A002
    """The ``.tflite`` file fits its budget ("300KB")."""
    __tracebackhide__ = True
    return assert_check("size", q, max=max)


def assert_vela(q: QuantizedModel, *, max: Threshold = None, **target: Any) -> CheckResult:  # noqa: A002
    """No more than ``max`` operators on the CPU after Vela; ``accelerator=``, ``system_config=``..."""
    __tracebackhide__ = True
    return assert_check("vela", q, max=max, **target)


def assert_sram(q: QuantizedModel, *, max: Threshold = None, **target: Any) -> CheckResult:  # noqa: A002
    """SRAM that Vela allocates for the NPU fits ``max``."""
    __tracebackhide__ = True
    return assert_check("sram", q, max=max, **target)


def assert_flash(q: QuantizedModel, *, max: Threshold = None, **target: Any) -> CheckResult:  # noqa: A002
    """Flash (or DRAM) holding the compiled network fits ``max``."""
    __tracebackhide__ = True
    return assert_check("flash", q, max=max, **target)


def assert_npu_weights(q: QuantizedModel, *, max: Threshold = None, **target: Any) -> CheckResult:  # noqa: A002
    """Weights as Vela encodes them for the NPU fit ``max``."""
    __tracebackhide__ = True
    return assert_check("npu_weights", q, max=max, **target)


def assert_inference_time(q: QuantizedModel, *, max: Threshold = None, **target: Any) -> CheckResult:  # noqa: A002
    """Vela's estimate of the time per inference fits ``max`` ("10ms")."""
    __tracebackhide__ = True
    return assert_check("inference_time", q, max=max, **target)


def assert_tflm_ops(q: QuantizedModel, *, max: Threshold = None) -> CheckResult:  # noqa: A002
    """Every operator has a TensorFlow Lite Micro kernel."""
    __tracebackhide__ = True
    return assert_check("tflm_ops", q, max=max)


def assert_arena(q: QuantizedModel, *, max: Threshold = None) -> CheckResult:  # noqa: A002
    """The activations alive at once (a lower bound of the TFLM arena) fit ``max``."""
    __tracebackhide__ = True
    return assert_check("arena", q, max=max)


def assert_robustness(q: QuantizedModel, *, max: Threshold = None,  # noqa: A002
                      examples: int | None = None) -> CheckResult:
    """No valid input (drawn by Hypothesis) fails to run, leaves its outputs' range or gives two answers."""
    __tracebackhide__ = True
    return assert_check("robustness", q, max=max, examples=examples)


def assert_consistency(q: QuantizedModel, data: DataLike | None = None, *, min: Threshold = None,  # noqa: A002
                       steps: float | None = None, samples: int | None = None,
                       examples: int | None = None) -> CheckResult:
    """Float and quantized top-1 agree on ``data``'s samples perturbed by up to ``steps`` input steps."""
    __tracebackhide__ = True
    return assert_check("consistency", q, data, min=min, steps=steps, samples=samples, examples=examples)


def assert_static_shapes(q: QuantizedModel, *, max: Threshold = None) -> CheckResult:  # noqa: A002
    """No dynamic dimension (shape_signature -1) in the model's inputs and outputs."""
    __tracebackhide__ = True
    return assert_check("static_shapes", q, max=max)


def assert_layer_error(q: QuantizedModel, data: DataLike | None = None, *,
                       max: Threshold = None) -> CheckResult:  # noqa: A002
    """The worst layer's error, in its quantization steps, stays within ``max``."""
    __tracebackhide__ = True
    return assert_check("layer_error", q, data, max=max)


def __getattr__(name: str) -> Any:
    """``assert_<check>`` for a registered check without a helper of its own (a plugin's check)."""
    from qcheck.checks import registry

    check_name = name.removeprefix("assert_")
    if name.startswith("assert_") and check_name in registry():
        def helper(q: QuantizedModel, data: DataLike | None = None, **thresholds: Any) -> CheckResult:
            __tracebackhide__ = True
            return assert_check(check_name, q, data, **thresholds)

        helper.__name__ = helper.__qualname__ = name
        helper.__doc__ = registry()[check_name].title
        return helper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
