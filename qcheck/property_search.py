"""Hypothesis searches behind the ``robustness`` and ``consistency`` checks (run in a child process).

Each search draws from :mod:`qcheck.strategies` with a fixed budget, derandomized and without an
example database, so the same model gives the same verdict and the same shrunk counter-example
on every machine. They run in a child process (:mod:`qcheck.isolation`): an input that crashes
the interpreter costs the check, not the session, and the float Keras model's TensorFlow stays
out of the pytest process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.errors import QcheckError
from qcheck.tflite.quant import QuantParams, quantize

if TYPE_CHECKING:
    from qcheck.tflite.inspect import TensorInfo

Outputs = dict[str, np.ndarray]
# Outputs whose op has a fixed range: values at its limits are the function's own, not clipping.
_FIXED_RANGE_OPS = frozenset({"SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "TANH"})
_LISTED = 8


@dataclass(frozen=True)
class Violation:
    """A property that a (shrunk) example breaks, in words."""

    prop: str  # "runs", "outputs in range", "deterministic"
    counter_example: str


@dataclass(frozen=True)
class RobustnessOutcome:
    """What the robustness search tried and the properties its shrunk example breaks."""

    examples: int
    violations: tuple[Violation, ...]


@dataclass(frozen=True)
class ConsistencyOutcome:
    """Top-1 agreement of the float and quantized models on clean and perturbed samples."""

    samples: int
    agree_clean: int
    agree_perturbed: int
    heads: tuple[str, ...]  # the classification heads compared
    steps: float
    examples: int
    counter_example: str | None  # Hypothesis's shrunk perturbation that makes them disagree


def hypothesis_settings(examples: int) -> Any:
    """A fixed budget, the same examples on every run, nothing remembered between runs."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def _find(strategy: Any, condition: Callable[[Any], bool], examples: int) -> Any | None:
    """Hypothesis's simplest example satisfying ``condition``, or None within the budget."""
    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    try:
        return find(strategy, condition, settings=hypothesis_settings(examples))
    except NoSuchExample:
        return None


# -- robustness ------------------------------------------------------------------------------------


def describe_unquantized_input(tensor: TensorInfo) -> str:
    """Why an input has no quantized range: "the model's input is float32", or an integer one
    without a scale and zero point (an int16 input is not float)."""
    if tensor.dtype.startswith(("float", "bfloat")):
        return f"the model's input is {tensor.dtype}"
    return f"the model's input is {tensor.dtype} without quantization parameters (scale and zero point)"


def _loads(tflite: bytes) -> None:
    """A model the interpreter cannot load breaks no property of its inputs: say it cannot load."""
    from qcheck.tflite.run import _make_interpreter

    try:
        _make_interpreter(tflite)
    except Exception as exc:
        raise QcheckError(None, f"the LiteRT interpreter cannot load the model, so no input can be tried: "
                          f"{type(exc).__name__}: {exc}") from None


def search_robustness(tflite: bytes, examples: int) -> RobustnessOutcome:
    """Look for a valid input that fails to run, drives an output out of range, or gives a
    different output when it is run again."""
    from qcheck.strategies import input_params, inputs
    from qcheck.tflite.inspect import inspect_model

    info = inspect_model(tflite)
    params = input_params(info)
    if params is None:
        raise QcheckError(None, f"{describe_unquantized_input(info.inputs[0].tensor)}: robustness draws from "
                          "the quantized input's range")
    _loads(tflite)
    fixed = {io.name for io in info.outputs if info.source_op(io.tensor) in _FIXED_RANGE_OPS}
    other = np.full((1, *info.inputs[0].tensor.shape[1:]), params.float_range[1], np.float32)

    def broken(x: np.ndarray) -> list[Violation]:
        return _robustness_violations(tflite, x, other, params, fixed)

    found = _find(inputs(info), lambda x: bool(broken(x)), examples)
    return RobustnessOutcome(examples, tuple(broken(found)) if found is not None else ())


def _robustness_violations(tflite: bytes, x: np.ndarray, other: np.ndarray, params: QuantParams,
                           fixed: set[str]) -> list[Violation]:
    from qcheck.tflite.run import run

    shown = describe_input(x, params)
    try:
        # x, a different input, x again on one interpreter: state kept between calls shows.
        result = run(tflite, np.concatenate([x, other.astype(x.dtype), x]))
    except Exception as exc:  # the property is "runs": any error is its counter-example
        return [Violation("runs", f"{shown}: the interpreter raised {type(exc).__name__}: {exc}")]
    found = []
    for name, head in result.outputs.items():
        first, again = head.raw[0], head.raw[2]
        if head.params is None:
            bad = int(np.count_nonzero(~np.isfinite(first)))
            if bad:
                found.append(Violation("outputs in range", f"{shown}: output '{name}' has {bad} NaN or Inf value(s)"))
        elif name not in fixed:
            limits = [v for v in (head.params.qmin, head.params.qmax) if v != head.params.zero_point]
            at = np.isin(first, limits)
            if at.any():
                limit = int(first[at].flat[0])
                real = (limit - head.params.zero_point) * head.params.scale
                where = ", ".join(str(list(map(int, i))) for i in np.argwhere(at)[:_LISTED])
                found.append(Violation("outputs in range", (
                    f"{shown}: output '{name}' is clipped at {limit} (real {real:.4g}), the limit of its "
                    f"{head.params.dtype} range, at {where}: the true value lies beyond")))
        if not np.array_equal(first, again):
            found.append(Violation("deterministic", (
                f"{shown}: output '{name}' differs when the same input runs again after another "
                f"({int(np.count_nonzero(first != again))} of {first.size} value(s)): the model keeps state")))
    return found


def describe_input(x: np.ndarray, params: QuantParams) -> str:
    """An input as a person can read it: the common raw value and every value that differs."""
    raw, _ = quantize(x, params)
    values, counts = np.unique(raw, return_counts=True)
    common = int(values[np.argmax(counts)])
    odd = np.argwhere(raw != common)

    def real(q: int) -> str:
        return f"{(q - params.zero_point) * params.scale:.4g}"

    text = f"input {tuple(raw.shape)} {params.dtype} all {common} (real {real(common)})"
    if len(odd):
        listed = ", ".join(f"{list(map(int, i))}={int(raw[tuple(i)])} (real {real(int(raw[tuple(i)]))})"
                           for i in odd[:_LISTED])
        more = f" and {len(odd) - _LISTED} more" if len(odd) > _LISTED else ""
        text += f" except {listed}{more}"
    return text


# -- consistency -----------------------------------------------------------------------------------


def search_consistency(tflite: bytes, float_model: Path, x: np.ndarray, *, steps: float, samples: int,
                       examples: int, unsafe: bool = False) -> ConsistencyOutcome:
    """Perturb evaluation samples by at most ``steps`` input quantization steps: how often do the
    float and quantized models keep the same top-1, and which simplest perturbation splits them?"""
    from hypothesis import strategies as st

    from qcheck.strategies import Perturbation, input_params, perturbation_noise
    from qcheck.tflite.inspect import inspect_model

    info = inspect_model(tflite)
    params = input_params(info)
    if params is None:
        raise QcheckError(None, f"{describe_unquantized_input(info.inputs[0].tensor)}: perturbations are "
                          "measured in quantization steps")
    float_run = _float_runner(float_model, unsafe)

    def quant_run(batch: np.ndarray) -> Outputs:
        from qcheck.tflite.run import run

        return {name: head.values for name, head in run(tflite, batch).outputs.items()}

    x = np.asarray(x[:samples], dtype=np.float32)  # x may be a LazyArray: read only these samples
    clean_f, clean_q = float_run(x), quant_run(x)
    pairs = _classification_pairs(clean_f, clean_q)
    if not pairs:
        return ConsistencyOutcome(len(x), 0, 0, (), steps, examples, None)
    clean = _agree(clean_f, clean_q, pairs)
    moved = np.concatenate([Perturbation(steps, i).apply(x[i : i + 1], params) for i in range(len(x))])
    perturbed = _agree(float_run(moved), quant_run(moved), pairs)

    candidates = [int(i) for i in np.flatnonzero(clean)]
    counter = None
    if candidates:
        def splits(case: tuple[int, Perturbation]) -> bool:
            i, noise = case
            sample = noise.apply(x[i : i + 1], params)
            return not bool(_agree(float_run(sample), quant_run(sample), pairs)[0])

        found = _find(st.tuples(st.sampled_from(candidates), perturbation_noise(steps)), splits, examples)
        if found is not None:
            counter = _describe_split(found, x, params, float_run, quant_run, pairs)
    return ConsistencyOutcome(len(x), int(clean.sum()), int(perturbed.sum()), tuple(f for f, _ in pairs),
                              steps, examples, counter)


def _describe_split(case: tuple[int, Any], x: np.ndarray, params: QuantParams,
                    float_run: Callable[[np.ndarray], Outputs], quant_run: Callable[[np.ndarray], Outputs],
                    pairs: list[tuple[str, str]]) -> str:
    i, noise = case
    sample = noise.apply(x[i : i + 1], params)
    f, q = float_run(sample), quant_run(sample)
    split = [f"'{fh}' float top-1 {int(np.argmax(f[fh][0]))}, quantized {int(np.argmax(q[qh][0]))}"
             for fh, qh in pairs if np.argmax(f[fh][0]) != np.argmax(q[qh][0])]
    return (f"evaluation sample {i} (both models agree on it as it is) moved by {noise.describe()}: "
            + "; ".join(split))


def _classification_pairs(f: Outputs, q: Outputs) -> list[tuple[str, str]]:
    """(float name, quantized name) of every head with two or more classes, paired by name."""
    if set(f) == set(q):
        pairs = [(name, name) for name in f]
    elif len(f) == 1 and len(q) == 1:
        pairs = [(next(iter(f)), next(iter(q)))]
    else:
        raise QcheckError(None, f"outputs {sorted(q)} do not match the float model's {sorted(f)}; "
                                "qcheck pairs outputs by name")
    return [(fh, qh) for fh, qh in pairs if f[fh].reshape(len(f[fh]), -1).shape[1] >= 2]


def _agree(f: Outputs, q: Outputs, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Per sample: the same top-1 on every classification head."""
    agree = np.ones(len(next(iter(f.values()))), dtype=bool)
    for fh, qh in pairs:
        n = len(f[fh])
        agree &= f[fh].reshape(n, -1).argmax(axis=1) == q[qh].reshape(n, -1).argmax(axis=1)
    return agree


def _float_runner(path: Path, unsafe: bool) -> Callable[[np.ndarray], Outputs]:
    """The float model as a function of a batch: Keras called directly (``predict`` costs ~0.3 s
    a call, too slow for a search), or a float ``.tflite`` in LiteRT."""
    from qcheck.tflite.convert import load_float_model, model_kind, output_names

    if model_kind(path) == "tflite":
        from qcheck.tflite.run import run

        from qcheck.inputs import read_regular

        data = read_regular(path, "model file")
        return lambda batch: {name: head.values for name, head in run(data, batch).outputs.items()}
    model = load_float_model(path, unsafe=unsafe)
    names = output_names(model)

    def call(batch: np.ndarray) -> Outputs:
        raw = model(batch, training=False)
        if isinstance(raw, dict):
            return {name: np.asarray(v) for name, v in raw.items()}
        raw = raw if isinstance(raw, (list, tuple)) else [raw]
        return {name: np.asarray(v) for name, v in zip(names, raw, strict=True)}

    return call
