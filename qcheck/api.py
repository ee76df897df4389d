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

import functools
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np
import pytest

from qcheck.checks import registry
from qcheck.config import DEFAULT_CALIBRATION_SAMPLES, Settings
from qcheck.errors import QcheckError, suggest
from qcheck.inputs import as_given
from qcheck.config import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from qcheck.checks.evidence import Evidence
    from qcheck.data import Dataset
    from qcheck.pipeline import ModelRun
    from qcheck.quantized import QuantizedModel
    from qcheck.results import CheckResult

# Data as the helpers take it: a Dataset (the qcheck_data fixture), an .npz path, inputs alone,
# (inputs, labels), or arrays named as in an .npz ({"x": ..., "y_<head>": ...}); a multi-input
# model's inputs as a dict keyed by input name ({"image": ..., "level": ..., "y": ...}), or
# x_<input name> as in an .npz.
DataLike = Union["Dataset", str, Path, np.ndarray, tuple[Any, np.ndarray], Mapping[str, np.ndarray]]
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
    quantization: Mapping[str, Any] | None = None,
) -> QuantizedModel:
    """Quantize ``model`` to full integer as the pytest plugin does, and return it.

    ``model`` is a ``.keras``/``.h5`` file, a SavedModel folder (only with
    ``unsafe_deserialization=True``: loading one runs functions stored in it), an already
    quantized ``.tflite`` (checked as it is) or an in-memory Keras model. ``data`` is evaluation data (an ``.npz`` path,
    a Dataset, an array of inputs, ``(x, y)`` or named arrays; for a multi-input model the inputs as a
    dict keyed by input name, alone, in ``(inputs, y)`` or beside ``y``); calibration takes a seeded split
    of it unless ``calibration`` is given. The conversion runs in a child process. Artifacts go
    to ``out`` (a temporary folder, removed with the returned model, when not given).
    ``quantization`` is the recipe as a suite's ``[quantization]`` table takes it (e.g.
    ``{"activations": "int16"}`` or ``{"keep_float": ["conv1"]}``), over the suite's own.
    """
    from qcheck.cache import Cache
    from qcheck.quantized import QuantizedModel
    from qcheck.resolver import run_spec
    from qcheck.runner import Runner
    from qcheck.suites import load_suite, recipe_table

    if io not in ("uint8", "int8"):
        raise QcheckError(None, f"io must be 'uint8' or 'int8', not {io!r}")
    thresholds = load_suite(suite)
    recipe = thresholds.quantization_for(recipe=recipe_table(dict(quantization or {}), "quantize(quantization=...)"))
    calibration_samples = recipe.calibration_samples or calibration_samples
    scratch = None if out is not None else tempfile.mkdtemp(prefix="qcheck-")
    out_dir = Path(out if out is not None else str(scratch))
    try:
        model_path = _model_path(model, out_dir)
        data_path = _data_path(data, out_dir, "data")
        calibration_path = _data_path(calibration, out_dir, "calibration")
        settings = Settings(calibration_samples=calibration_samples, io_dtype=io,
                            unsafe_deserialization=unsafe_deserialization, quantization=recipe)
        spec = run_spec(settings, model_path, data=data_path, calibration=calibration_path,
                        reference=str(as_given(reference)) if reference is not None else None)
        cache = Cache(Path(cache_dir).resolve() if cache_dir is not None else None)
        run = Runner(out_dir, cache, timeout).model_run(spec)
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


def _arrays(data: np.ndarray | tuple[Any, np.ndarray] | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(data, np.ndarray):
        return {"x": data}
    if isinstance(data, tuple):
        if len(data) != 2:
            raise QcheckError(None, f"data as a tuple must be (inputs, labels), not {len(data)} arrays")
        return {**_inputs(data[0]), "y": np.asarray(data[1])}
    arrays = {str(name): np.asarray(value) for name, value in data.items()}
    if any(name == "x" or name.startswith("x_") for name in arrays):
        return arrays  # named as in an .npz
    # Inputs keyed by input name (a multi-input model), labels as in an .npz.
    labels = {name: a for name, a in arrays.items() if name == "y" or name.startswith("y_")}
    return {**_inputs({name: a for name, a in arrays.items() if name not in labels}), **labels}


def _inputs(x: Any) -> dict[str, np.ndarray]:
    """A model's inputs as an .npz names them: ``x``, or ``x_<input name>`` for a dict keyed by input name."""
    if isinstance(x, Mapping):
        return {f"x_{name}": np.asarray(value) for name, value in x.items()}
    return {"x": np.asarray(x)}


def _data_path(data: DataLike | None, out_dir: Path, name: str) -> str | None:
    """A path to an .npz holding ``data``; arrays are saved so that they load and validate as files do."""
    from qcheck.data import Dataset

    if data is None:
        return None
    if isinstance(data, (str, Path)):
        return str(Path(data).resolve())
    arrays: dict[str, Any]
    if isinstance(data, Dataset):  # possibly a subset of its file (qcheck_data is): save what it holds
        arrays = data.arrays()
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


def _evidence(q: QuantizedModel, data: DataLike | None) -> tuple[Evidence, ModelRun]:
    """What to measure on (``q``'s pipeline, or it on other data), and ``q``'s pipeline."""
    from qcheck.data_evidence import DataEvidence
    from qcheck.pipeline import ModelRun

    base = q._evidence
    if not isinstance(base, ModelRun):
        raise QcheckError(str(q.path), "has no pipeline to measure from",
                          "make it with qcheck.quantize(...) or take the qcheck_quantized fixture")
    if data is None:
        return base, base
    dataset = as_dataset(data)
    if dataset is base.evaluation_data():
        return base, base  # the model's own evaluation set: share the pipeline's outputs
    return DataEvidence(base, dataset), base


def run_check(name: str, q: QuantizedModel, data: DataLike | None = None, *, max: Threshold = None,  # noqa: A002
              min: Threshold = None, **options: Any) -> CheckResult:  # noqa: A002
    """Measure check ``name`` on ``q`` and judge it; the result, whatever the verdict.

    ``data``: the samples to measure on (default: ``q``'s evaluation set). ``max``/``min`` and
    ``options`` override ``q``'s suite, with units as in a suite ("2%", "300KB").
    """
    from qcheck.resolver import accelerators
    from qcheck.runner import measure_and_judge, planned_check
    from qcheck.suites import CheckSpec, load_suite

    checks = registry()
    if name not in checks:
        raise QcheckError(None, f"unknown check '{name}'{suggest(name, checks)}",
                          "known checks: " + ", ".join(sorted(checks)))
    suite = q._suite or load_suite("default")
    table = {key: value for key, value in (("max", max), ("min", min), *options.items()) if value is not None}
    if table:
        suite = suite.with_overrides({name: table}, f"qcheck.assert_{name}()")
    spec = suite.checks.get(name, CheckSpec(name))
    evidence, pipeline = _evidence(q, data)  # a wrong model or data file is the caller's error, raised as it is
    # The suite's accelerator (the check's table, else the vela table's); there is no command line here.
    variant = accelerators(spec, suite)[0] if checks[name].per_accelerator else ""
    return measure_and_judge(evidence, planned_check(pipeline.spec, spec, suite, variant), model=evidence.model)


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


class AssertCheck(Protocol):
    """The type of every ``qcheck.assert_<check>``: made from the check registry, so that a new
    check (built-in or a plugin's) has its helper without another line anywhere."""

    def __call__(self, q: QuantizedModel, data: DataLike | None = None, *, max: Threshold = None,  # noqa: A002
                 min: Threshold = None, **options: Any) -> CheckResult:  # noqa: A002
        ...


@functools.cache
def _assert_helper(check_name: str) -> AssertCheck:
    def helper(q: QuantizedModel, data: DataLike | None = None, *, max: Threshold = None,  # noqa: A002
               min: Threshold = None, **options: Any) -> CheckResult:  # noqa: A002
        __tracebackhide__ = True
        return assert_check(check_name, q, data, max=max, min=min, **options)

    check = registry()[check_name]
    helper.__name__ = helper.__qualname__ = f"assert_{check_name}"
    options = ", ".join(f"{key}=" for key in check.options)
    helper.__doc__ = (f"{check.title}\n\nAssert that check ``{check_name}`` passes on ``q`` (see :func:`assert_check`)"
                      + (f"; its options: {options}" if options else "") + ".")
    return helper


def __getattr__(name: str) -> AssertCheck:
    """``assert_<check>`` for every registered check: built-in, or registered by a plugin."""
    check_name = name.removeprefix("assert_")
    if name.startswith("assert_") and check_name in registry():
        return _assert_helper(check_name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *(f"assert_{name}" for name in registry())})
