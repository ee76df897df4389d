"""Models whose state lives in resource variables (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE: a
stateful Keras RNN's state, a tf.Variable the model assigns) are stateful: each sample starts from
the initial state, in LiteRT and in TFLite Micro, as a new interpreter per sample gives it.

Neither runtime's own reset gives that state back (LiteRT's ``reset_all_variables()`` leaves
resource variables, TFLite Micro's ``reset()`` fills them with zero points and the CALL_ONCE
initializer does not run again), so the expected values here come from a new interpreter per
sample, called directly. The model is made as users make it, with Keras 3 and TensorFlow's
converter, in a child process: TensorFlow is never imported in the pytest process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import QcheckRun, run_qcheck

# A Keras 3 layer that keeps a running state in a variable, 0.5 * the previous state + the input,
# whose initial value (1.0) is not the zero TFLite Micro's reset fills in; converted to full int8
# (TFLITE_BUILTINS_INT8, int8 input and output; the converter keeps the variable float32), to full
# int8 with the variable quantized too (int8 state), and to float; and exported as a SavedModel, which
# qcheck converts itself (a custom layer's .keras file needs its class, which qcheck does not import).
# Labels: the float model's own top-1 on each sample alone (a new LiteRT interpreter each), so the
# float model scores 100%.
BUILD = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import keras
from ai_edge_litert.interpreter import Interpreter

out = sys.argv[1]
keras.utils.set_random_seed(7)


class Decay(keras.layers.Layer):
    def build(self, shape):
        self.state = self.add_weight(shape=(1, shape[-1]), initializer=keras.initializers.Constant(1.0),
                                     trainable=False, name="state")

    def call(self, x):
        state = self.state * 0.5 + x
        self.state.assign(state)
        return state


i = keras.Input(batch_shape=(1, 8))
model = keras.Model(i, keras.layers.Dense(3)(Decay()(i)))
x = np.random.default_rng(7).normal(0, 1, (96, 8)).astype(np.float32)
for name, int8, int8_state in (("decay_int8.tflite", True, False), ("decay_float.tflite", False, False),
                               ("decay_int8_state.tflite", True, True)):
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[k : k + 1]] for k in range(len(x)))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = c.inference_output_type = tf.int8
        c._experimental_variable_quantization = int8_state  # what fully_quantized's hint says
    with open(os.path.join(out, name), "wb") as f:
        f.write(c.convert())
model.export(os.path.join(out, "decay_savedmodel"))
labels = []
for sample in x:
    it = Interpreter(model_path=os.path.join(out, "decay_float.tflite"))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], sample[None])
    it.invoke()
    labels.append(int(it.get_tensor(it.get_output_details()[0]["index"]).argmax()))
np.savez(os.path.join(out, "decay.npz"), x=x, y=np.array(labels, np.int64))
'''


@pytest.fixture(scope="module")
def decay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder with ``decay_int8.tflite``, ``decay_int8_state.tflite``, ``decay_float.tflite``,
    ``decay_savedmodel`` and ``decay.npz``."""
    folder = tmp_path_factory.mktemp("resource_variables")
    subprocess.run([sys.executable, "-c", BUILD, str(folder)], check=True, capture_output=True, timeout=600)
    return folder


def _feed(tflite: bytes, sample: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    from qcheck.tflite.quant import QuantParams, quantize

    scale, zero_point = details["quantization"]
    if not scale:
        return sample[None]
    return quantize(sample[None], QuantParams(float(scale), int(zero_point), np.dtype(details["dtype"]).name))[0]


def _litert(tflite: bytes, reference: bool = False) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    interpreter = Interpreter(model_content=tflite, num_threads=1, experimental_op_resolver_type=kind)
    interpreter.allocate_tensors()
    return interpreter


def _fresh_per_sample(tflite: bytes, x: np.ndarray, reference: bool = False) -> np.ndarray:
    """Each sample on a new LiteRT interpreter: what an independent sample gives (raw outputs)."""
    outputs = []
    for sample in x:
        interpreter = _litert(tflite, reference)
        details = interpreter.get_input_details()[0]
        interpreter.set_tensor(details["index"], _feed(tflite, sample, details))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy())
    return np.stack(outputs)


def _micro(tflite: bytes) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(tflite)


def _micro_per_sample(tflite: bytes, x: np.ndarray, between: Callable[[Any], Any] | None = None) -> np.ndarray:
    """TFLite Micro on each sample: a new interpreter each, or one with ``between`` called before each."""
    details = _litert(tflite).get_input_details()[0]
    interpreter = _micro(tflite)
    outputs = []
    for sample in x:
        if between is None:
            interpreter = _micro(tflite)
        else:
            between(interpreter)
        interpreter.set_input(_feed(tflite, sample, details), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    return np.stack(outputs)


def _raw(result: Any) -> np.ndarray:
    (head,) = result.outputs.values()
    return np.asarray(head.raw)


def test_resource_variables_make_a_model_stateful_and_neither_runtime_reset_restores_them(decay: Path) -> None:
    from qcheck.tflite.inspect import inspect_model

    tflite = (decay / "decay_int8.tflite").read_bytes()
    info = inspect_model(tflite)
    counts = info.operator_counts()
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= set(counts), counts
    assert not any(t.variable for t in info.tensors)  # no variable tensor: the old test saw no state
    assert info.stateful and info.resource_state
    # One variable, named by the VAR_HANDLE of the main graph and by that of the initializer.
    assert counts["VAR_HANDLE"] == 2 and len(info.resource_variables) == 1
    assert info.state.startswith("1 resource variable(s)")

    x = np.load(decay / "decay.npz")["x"][:3]
    fresh = _fresh_per_sample(tflite, x)
    # Why qcheck makes a new interpreter per sample: the runtimes' own resets leave the state.
    interpreter = _litert(tflite)
    details = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]["index"]
    for sample in x:
        interpreter.reset_all_variables()
        interpreter.set_tensor(details["index"], _feed(tflite, sample, details))
        interpreter.invoke()
    assert not np.array_equal(interpreter.get_tensor(out)[0], fresh[-1])
    micro_fresh = _micro_per_sample(tflite, x)
    assert not np.array_equal(_micro_per_sample(tflite, x, between=lambda it: it.reset()), micro_fresh)


@pytest.mark.parametrize("analysed", [0, 16])
def test_the_litert_evaluation_equals_a_fresh_interpreter_per_sample(decay: Path, analysed: int) -> None:
    from qcheck.tflite.convert import reference_outputs
    from qcheck.tflite.run import run

    tflite, float_tflite = (decay / "decay_int8.tflite").read_bytes(), (decay / "decay_float.tflite").read_bytes()
    x = np.load(decay / "decay.npz")["x"][:40]
    # With analysis, calibration samples run first on the same interpreter: their state must not leak.
    result = run(tflite, x, float_tflite=float_tflite, calibration=x[::-1][:8] if analysed else None,
                 analysis_samples=analysed)
    assert np.array_equal(_raw(result), _fresh_per_sample(tflite, x))
    (values,) = reference_outputs(decay / "decay_float.tflite", x).outputs.values()
    np.testing.assert_allclose(values, _fresh_per_sample(float_tflite, x), rtol=0, atol=1e-6)


def test_keep_runs_the_data_as_one_sequence_from_the_initial_state(decay: Path) -> None:
    from qcheck.tflite.run import run

    tflite = (decay / "decay_int8.tflite").read_bytes()
    x = np.load(decay / "decay.npz")["x"][:24]
    # Calibration samples first (the analysis pass): the sequence still starts from the initial state.
    kept = _raw(run(tflite, x, stateful="keep", calibration=x[::-1][:8], analysis_samples=4))
    interpreter = _litert(tflite)
    details = interpreter.get_input_details()[0]
    in_order = []
    for sample in x:
        interpreter.set_tensor(details["index"], _feed(tflite, sample, details))
        interpreter.invoke()
        in_order.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy())
    assert np.array_equal(kept, np.stack(in_order))
    assert not np.array_equal(kept, _fresh_per_sample(tflite, x))


def test_tflite_micro_and_its_litert_twin_run_each_sample_from_the_initial_state(decay: Path) -> None:
    from qcheck.tflm.runtime import divergence, run, run_litert

    tflite = (decay / "decay_int8.tflite").read_bytes()
    x = np.load(decay / "decay.npz")["x"][:24]
    assert np.array_equal(_raw(run(tflite, x)), _micro_per_sample(tflite, x))
    assert np.array_equal(_raw(run_litert(tflite, x)), _fresh_per_sample(tflite, x, reference=True))
    kept = _raw(run(tflite, x, stateful="keep"))
    assert np.array_equal(kept, _micro_per_sample(tflite, x, between=lambda it: None))
    # Layer by layer: every operator with values compared (TFLM crashed reading the VAR_HANDLE's
    # resource handle), from the same state in both runtimes.
    found = divergence(tflite, x, steps=1)
    assert found.compared == 6 and not found.note  # of 9 operators: CALL_ONCE, VAR_HANDLE, ASSIGN have none
    assert found.first_over is None


def test_qcheck_scores_the_model_as_each_sample_alone_scores(decay: Path, tmp_path: Path) -> None:
    data = np.load(decay / "decay.npz")
    run = run_qcheck(tmp_path, f"--qcheck-model={decay / 'decay_int8.tflite'}",
                     f"--qcheck-reference={decay / 'decay_float.tflite'}", f"--qcheck-data={decay / 'decay.npz'}",
                     "--qcheck-suite=cortex-m", "--qcheck-set", "robustness.enabled=true",
                     "--qcheck-set", "robustness.examples=10",
                     "-k", "accuracy_drop or tflm_parity or robustness")
    model = run.model("decay_int8.tflite")
    (accuracy,) = model["accuracy"].values()
    assert accuracy["float"] == 1.0 and accuracy["samples"] == len(data["y"])
    alone = _fresh_per_sample((decay / "decay_int8.tflite").read_bytes(), data["x"]).argmax(axis=1)
    assert accuracy["quantized"] == pytest.approx(float(np.mean(alone == data["y"])))
    assert any(n.startswith("the model keeps state in 1 resource variable(s)") and "new interpreter per sample" in n
               for n in model["notes"]), model["notes"]
    parity = run.check("decay_int8.tflite", "tflm_parity")
    assert parity["passed"] is True and "could not be compared" not in parity["message"], parity["message"]
    robustness = run.check("decay_int8.tflite", "robustness")
    assert "could not be measured" not in robustness["message"], robustness["message"]
    # An input, another, the first again: the same output (the state reset), and no crash.
    properties = {v["property"] for v in model["robustness"]["violations"]}
    assert not properties & {"deterministic", "runs"}, robustness["message"]


def test_a_float32_state_is_named_as_the_state_and_an_int8_state_is_fully_quantized(decay: Path) -> None:
    from qcheck.tflite.census import quantization_info, take_census
    from qcheck.tflite.inspect import inspect_model

    info = inspect_model((decay / "decay_int8.tflite").read_bytes())
    census = take_census(info)
    # Every operator that computes (MUL, ADD, FULLY_CONNECTED) is int8; the variable's state is float32,
    # read, quantized, dequantized and assigned each invoke: not fully quantized, and not 'mixed'.
    assert not census.fully_quantized and census.kind == "full-integer"
    assert census.description == "int8 inside, float32 in the state of 1 resource variable(s) ('decay/state_1')"
    (state,) = census.float_state
    assert (state.variable, state.dtype, state.shape) == ("decay/state_1", "float32", (1, 8))
    assert set(state.tensors) == {t.label for t in census.float_tensors}  # every float tensor is the state's
    written = quantization_info(info, census)
    assert written["quantization"] == "full-integer" and written["float_state"] == [state.to_dict()]
    assert "ASSIGN_VARIABLE -> variable 'decay/state_1'" in written["float_operators"]
    assert not any("'?'" in op for op in written["float_operators"]), written["float_operators"]

    # The converter's variable quantization (the hint): the state is int8, nothing float is left.
    info = inspect_model((decay / "decay_int8_state.tflite").read_bytes())
    assert {"READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= set(info.operator_counts())
    census = take_census(info)
    assert census.fully_quantized and not census.float_state and census.kind == "full-integer"


@pytest.fixture(scope="module")
def ethos_u55(decay: Path, tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """Both int8 models (float32 and int8 state) through the Ethos-U55 suite."""
    return run_qcheck(tmp_path_factory.mktemp("ethos_u55"), f"--qcheck-model={decay / 'decay_int8.tflite'}",
                      f"--qcheck-model={decay / 'decay_int8_state.tflite'}",
                      f"--qcheck-reference={decay / 'decay_float.tflite'}", f"--qcheck-data={decay / 'decay.npz'}",
                      "--qcheck-suite=ethos-u55",
                      "-k", "fully_quantized or float32_tensors or accuracy_drop or tflm_cpu_ops or tflm_cpu_parity "
                      "or vela")


def _said(check: dict[str, Any]) -> tuple[str, str]:
    """A check's message and its hint (what follows 'try:')."""
    message, _, hint = str(check["message"]).partition("\n  try: ")
    return message, hint


def test_the_float32_state_fails_fully_quantized_for_what_it_is_and_following_the_hint_passes(
        ethos_u55: QcheckRun) -> None:
    check = ethos_u55.check("decay_int8.tflite", "fully_quantized")
    message, hint = _said(check)
    assert check["passed"] is False
    assert "int8 inside, float32 in the state of 1 resource variable(s) ('decay/state_1')" in message
    assert "mixed" not in message and "'?'" not in message
    assert "_experimental_variable_quantization = True" in hint, hint
    assert "re-convert with optimizations" not in hint  # it was converted so already
    tensors = ethos_u55.check("decay_int8.tflite", "float32_tensors")
    assert "3 of them hold the state of resource variable(s) 'decay/state_1'" in tensors["message"]
    info = ethos_u55.model("decay_int8.tflite")["quantization_info"]
    assert info["quantization"] == "full-integer" and info["float_state"][0]["variable"] == "decay/state_1"
    # The model the hint gives: fully quantized, as accurate.
    for name in ("fully_quantized", "float32_tensors", "accuracy_drop"):
        assert ethos_u55.check("decay_int8_state.tflite", name)["passed"] is True, name


@pytest.mark.parametrize("model", ["decay_int8", "decay_int8_state"])
def test_vela_reading_the_variable_before_its_initializer_fails_cpu_parity_naming_the_order(
        decay: Path, ethos_u55: QcheckRun, model: str) -> None:
    from tflite_micro.python.tflite_micro import runtime

    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflm.cpu_part import call_once_first, cut_cpu_part, early_reads

    # Vela's output, as the device gets it: READ_VARIABLE now runs before CALL_ONCE.
    compiled = (ethos_u55.out_dir / f"{model}_vela" / "ethos-u55-128" / f"{model}_vela.tflite").read_bytes()
    order = [op.op for op in inspect_model(compiled).operators if op.subgraph == 0]
    assert order.index("READ_VARIABLE") < order.index("CALL_ONCE"), order
    assert [variable for _, _, variable in early_reads(inspect_model(compiled))] == ["decay/state_1"]
    assert early_reads(inspect_model(call_once_first(compiled))) == ()
    assert early_reads(inspect_model((decay / f"{model}.tflite").read_bytes())) == ()  # the converter's order
    # TFLite Micro runs it in that order: the first invoke reads the variable unassigned (0), not its
    # initial value 1.0; with CALL_ONCE first it reads 1.0. (The CPU part writes the state read, quantized.)
    firsts = []
    for tflite in (compiled, call_once_first(compiled)):
        part = cut_cpu_part(tflite)
        (written,) = inspect_model(part.tflite).outputs
        micro = runtime.Interpreter.from_bytes(part.tflite)
        for position, io in enumerate(inspect_model(part.tflite).inputs):
            micro.set_input(np.zeros(io.tensor.shape, np.int8), position)
        micro.invoke()
        scale, zero_point = written.tensor.scale[0], written.tensor.zero_point[0]
        firsts.append((np.asarray(micro.get_output(0), np.float64).ravel() - zero_point) * scale)
    assert np.all(firsts[0] == 0.0) and np.allclose(firsts[1], 1.0, atol=0.02), firsts

    # The verdict stays a failure (the device computes another state), and the message says why.
    check = ethos_u55.check(f"{model}.tflite", "tflm_cpu_parity")
    message, hint = _said(check)
    assert check["passed"] is False and check["value"] > 1
    assert "The operator order of Vela's output is the cause, not a TFLite Micro kernel" in message
    assert ("READ_VARIABLE 'functional_1/decay_1/Mul/ReadVariableOp' (operator 1) reads the variable 'decay/state_1' "
            "before the CALL_ONCE that initialises it") in message
    assert "With CALL_ONCE put back first, TFLite Micro agrees with LiteRT exactly" in message
    assert "a kernel of TFLite Micro" not in hint and "move CALL_ONCE back" in hint
    section = ethos_u55.model(f"{model}.tflite")["tflm_cpu_parity"]["ethos-u55-128"]
    assert [e["variable"] for e in section["early_reads"]] == ["decay/state_1"]
    assert [o["max_steps"] for o in section["call_once_first"]] == [0.0]
    # Without data too: tflm_cpu_ops (TFLM loads the CPU part: it passes) says what the order does.
    loads = ethos_u55.check(f"{model}.tflite", "tflm_cpu_ops")
    assert loads["passed"] is True
    assert ("But the order of Vela's output differs from the model's: READ_VARIABLE "
            "'functional_1/decay_1/Mul/ReadVariableOp' (operator 1) reads the variable 'decay/state_1' before the "
            "CALL_ONCE that initialises it") in loads["message"], loads["message"]


@pytest.mark.parametrize(("model", "cpu"), [("decay_int8", 8), ("decay_int8_state", 6)])
def test_vela_counts_the_operators_of_the_model_and_gives_reasons_for_those_without_outputs(
        decay: Path, ethos_u55: QcheckRun, model: str, cpu: int) -> None:
    from qcheck.tflite.inspect import inspect_model

    # Of the model's operators (both subgraphs: the initializer's VAR_HANDLE and ASSIGN_VARIABLE too),
    # MUL, ADD and FULLY_CONNECTED go to the NPU. The output Vela makes up for an operator that writes
    # no tensor ('placeholder-for-1-OFM') is not one more operator (it made 9 of 12 and 7 of 10).
    operators = inspect_model((decay / f"{model}.tflite").read_bytes()).operators
    assert len(operators) == cpu + 3
    section = ethos_u55.model(f"{model}.tflite")["vela"]["ethos-u55-128"]
    assert (section["cpu_ops"], section["npu_ops"]) == (cpu, 3)
    check = ethos_u55.check(f"{model}.tflite", "vela")
    assert check["passed"] is False and check["value"] == cpu
    assert f"{cpu} of {cpu + 3} operator(s) on the CPU" in check["message"]
    # CALL_ONCE and ASSIGN_VARIABLE write no tensor: Vela's reasons come under its placeholder name.
    unnamed = [o for o in section["cpu_operators"] if not o["name"]]
    assert sorted(o["op"] for o in unnamed) == ["ASSIGN_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"]
    assert all(o["reason"] == "Unsupported opType" for o in unnamed), unnamed
    assert not any("placeholder" in o["label"] for o in section["cpu_operators"])
    hint = _said(check)[1]
    assert hint.startswith("ASSIGN_VARIABLE, CALL_ONCE, READ_VARIABLE, VAR_HANDLE hold the model's resource "
                           "variables, which no Ethos-U runs"), hint


def test_an_early_read_is_blamed_only_for_the_difference_it_makes() -> None:
    from qcheck.checks.tflm import _early_reads
    from qcheck.tflm import CpuOutputDifference, CpuParity, EarlyRead

    read = EarlyRead("READ_VARIABLE 'state'", 1, 3, "state")

    def parity(as_compiled: float, call_once_first: float) -> CpuParity:
        return CpuParity(8, (CpuOutputDifference("q", as_compiled, "steps"),), early_reads=(read,),
                         in_order=(CpuOutputDifference("q", call_once_first, "steps"),))

    assert _early_reads(parity(39, 0), 39).startswith("The operator order of Vela's output is the cause")
    assert "agrees with LiteRT exactly" in _early_reads(parity(39, 0), 39)
    assert "still differs from LiteRT ('q' up to 2 steps): that part is TFLite Micro's kernels" in _early_reads(
        parity(39, 2), 39)
    # An initial value equal to TFLM's fill (0): the order changes nothing, and is not called the cause.
    said = _early_reads(parity(2, 2), 2)
    assert "is the cause" not in said and "does not change the largest difference" in said


# -- qcheck's own conversion: the state quantized too -------------------------------------------------

OWN_CHECKS = "fully_quantized or float32_tensors or accuracy_drop or tflm_ops or tflm_parity or vela"


@pytest.fixture(scope="module")
def own(decay: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, QcheckRun]:
    """The SavedModel converted by qcheck, through the Cortex-M and the Ethos-U55 suites."""
    return {suite: run_qcheck(tmp_path_factory.mktemp(f"own_{suite}"), f"--qcheck-model={decay / 'decay_savedmodel'}",
                              "--qcheck-unsafe-deserialization", f"--qcheck-data={decay / 'decay.npz'}",
                              f"--qcheck-calibration={decay / 'decay.npz'}",
                              f"--qcheck-suite={suite}", "-k", OWN_CHECKS)
            for suite in ("cortex-m", "ethos-u55")}


def test_qcheck_own_conversion_quantizes_the_state_and_scores_as_the_float_model(
        decay: Path, own: dict[str, QcheckRun]) -> None:
    from qcheck.tflite.census import take_census
    from qcheck.tflite.inspect import inspect_model

    run = own["cortex-m"]
    for name in ("fully_quantized", "float32_tensors", "accuracy_drop", "tflm_ops", "tflm_parity"):
        check = run.check("decay_savedmodel", name)
        assert check["passed"] is True, (name, check["message"])
    assert run.check("decay_savedmodel", "float32_tensors")["value"] == 0
    tflite = (run.out_dir / "decay_savedmodel_quant.tflite").read_bytes()
    info = inspect_model(tflite)
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= set(info.operator_counts())
    census = take_census(info)
    assert census.fully_quantized and not census.float_state and census.kind == "full-integer"
    assert len(info.resource_variables) == 1
    model = run.model("decay_savedmodel")
    (accuracy,) = model["accuracy"].values()
    # The float reference: the float twin, each sample from the initial state (the labels' own way),
    # so 100%; the int8-state model as accurate as the converter's own int8-state model is.
    data = np.load(decay / "decay.npz")
    assert accuracy["float"] == 1.0 and accuracy["samples"] == len(data["y"])
    alone = _fresh_per_sample(tflite, data["x"]).argmax(axis=1)
    assert accuracy["quantized"] == pytest.approx(float(np.mean(alone == data["y"])))
    theirs = _fresh_per_sample((decay / "decay_int8_state.tflite").read_bytes(), data["x"]).argmax(axis=1)
    assert accuracy["quantized"] == pytest.approx(float(np.mean(theirs == data["y"])))
    assert any(n.startswith("float outputs: the float model of the same conversion, run in LiteRT")
               for n in model["notes"]), model["notes"]
    assert not any("_experimental_variable_quantization" in n for n in model["notes"]), model["notes"]


def test_vela_leaves_only_the_variable_operators_of_qcheck_own_conversion_on_the_cpu(
        own: dict[str, QcheckRun]) -> None:
    run = own["ethos-u55"]
    section = run.model("decay_savedmodel")["vela"]["ethos-u55-128"]
    # With an int8 state no QUANTIZE or DEQUANTIZE around it stays on the CPU (decay_int8.tflite, float
    # state: 8 CPU operators): only the variables' own operators, which Vela has no NPU version of.
    assert (section["cpu_ops"], section["npu_ops"]) == (6, 5)
    assert sorted(o["op"] for o in section["cpu_operators"]) == [
        "ASSIGN_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE", "READ_VARIABLE", "VAR_HANDLE", "VAR_HANDLE"]
    assert all(o["reason"] == "Unsupported opType" for o in section["cpu_operators"]), section["cpu_operators"]
    check = run.check("decay_savedmodel", "vela")
    assert check["passed"] is False and check["value"] == 6
    assert "6 of 11 operator(s) on the CPU" in check["message"]
    hint = _said(check)[1]
    assert hint.startswith("ASSIGN_VARIABLE, CALL_ONCE, READ_VARIABLE, VAR_HANDLE hold the model's resource "
                           "variables, which no Ethos-U runs"), hint
    assert "even with an int8 state" in hint


# qcheck's conversion step on a real converter of the SavedModel, as it is and seen through an object
# that hides the option (as a TensorFlow whose converter lacks it; everything else is the converter's):
# the state's dtype and the note.
WITHOUT_OPTION = r'''
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from pathlib import Path
import numpy as np
import tensorflow as tf
from qcheck.tflite.census import take_census
from qcheck.tflite.convert import _convert_integer
from qcheck.tflite.inspect import inspect_model

OPTION = "_experimental_variable_quantization"


class WithoutOption:
    def __init__(self, converter):
        object.__setattr__(self, "converter", converter)

    def __getattr__(self, name):
        if name == OPTION:
            raise AttributeError(name)
        return getattr(self.converter, name)

    def __setattr__(self, name, value):
        setattr(self.converter, name, value)


saved = Path(sys.argv[1])
x = np.load(saved.parent / "decay.npz")["x"][:16]
said = {}
for case in ("as it is", "without the option"):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    has = hasattr(converter, OPTION)
    given = WithoutOption(converter) if case == "without the option" else converter
    tflite, _, notes = _convert_integer(tf, given, {"x": x}, "int8", "int8", saved)
    census = take_census(inspect_model(tflite))
    said[case] = {"had": has, "notes": list(notes), "fully_quantized": census.fully_quantized,
                  "float_state": [s.dtype for s in census.float_state], "asked": getattr(converter, OPTION)}
print(json.dumps(said))
'''


def test_the_conversion_asks_for_an_int8_state_only_where_the_converter_has_the_option(decay: Path) -> None:
    import json

    done = subprocess.run([sys.executable, "-c", WITHOUT_OPTION, str(decay / "decay_savedmodel")], check=True,
                          capture_output=True, text=True, timeout=600)
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["as it is"] == {"had": True, "notes": [], "fully_quantized": True, "float_state": [], "asked": True}
    without = said["without the option"]
    assert without["asked"] is False  # not set: nothing claims the option was applied
    assert not without["fully_quantized"] and without["float_state"] == ["float32"]
    (note,) = without["notes"]
    assert note.startswith("the state of the model's resource variables is not quantized: the converter of "
                           "TensorFlow ") and "has no _experimental_variable_quantization" in note


def test_the_float_state_hint_of_qcheck_own_conversion_asks_nothing_qcheck_already_does() -> None:
    from qcheck.checks.quantization import _STATE_HINT, _STATE_HINT_OWN_CONVERSION

    # A .tflite the user converted: set the option. qcheck's own conversion sets it where it can, so
    # its float state comes from a converter without it: another TensorFlow, or the state out of the model.
    assert "convert with converter._experimental_variable_quantization = True" in _STATE_HINT
    assert "convert with converter._experimental_variable_quantization" not in _STATE_HINT_OWN_CONVERSION
    assert "qcheck's own conversion asks TensorFlow's converter for an int8 state" in _STATE_HINT_OWN_CONVERSION
    assert "keep the state outside the model" in _STATE_HINT_OWN_CONVERSION
