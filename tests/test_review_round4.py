"""Fourth review round: the CPU part of an Ethos-U system (``tflm_cpu_ops``, ``tflm_cpu_parity``).

Each test reproduces a bug found in review with real parts (real Vela, real TFLite Micro, real
LiteRT, the fixtures' models) and fails on the code before its fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from helpers import FIXTURES, REAL, run_qcheck
from tflite_edits import edit_model

U55 = "ethos-u55-128"
HELLO = REAL / "tflm" / "hello_world_int8.tflite"
HELLO_FLOAT = REAL / "tflm" / "hello_world_float.tflite"


def test_cpu_parity_of_an_operator_litert_has_no_reference_kernel_for(tmp_path: Path) -> None:
    """float_op's ELU stays on the CPU (float, beside the NPU) and TFLite Micro runs it; LiteRT's
    reference kernels have no ELU, and the check failed to measure ("Didn't find op for builtin
    opcode 'ELU'"), an error for a model the device runs. LiteRT's built-in kernels stand in, said."""
    model = FIXTURES / "float_op.keras"
    run = run_qcheck(tmp_path, "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_parity", f"--qcheck-model={model}",
                     f"--qcheck-data={FIXTURES / 'digits.npz'}")
    check = run.check(model.name, "tflm_cpu_parity")
    assert (check["passed"], check["variant"]) == (True, U55), check["message"]
    assert "ELU 'functional_1/float_op_1/conv1_elu_1/Elu'" in check["message"]
    assert "LiteRT's reference kernels have no ELU" in check["message"]
    section = run.model(model.name)["tflm_cpu_parity"][U55]
    assert section["samples"] == 100 and section["outputs"] and "no ELU" in section["note"]


def _with_two_channels_and(kind: str) -> Callable[[Any, Any], None]:
    """hello_world int8 with channels 0 and 8 of its first layer gathered ([1, 2]: channel 0 is
    always at the bottom of its range after the ReLU, channel 8 above it) and ``kind`` (ARG_MIN,
    which Vela leaves on the CPU, or ARG_MAX) of the two as a second output 'which' (int32)."""
    from test_tflm_cpu_part import _code, _tensor

    def change(model: Any, schema: Any) -> None:
        graph = model.subgraphs[0]
        first = int(graph.operators[0].outputs[0])
        like = graph.tensors[first]
        two = _tensor(model, schema, b"first_two", like.type, [1, 2], like=like)
        channels = _tensor(model, schema, b"channels", schema.TensorType.INT32, [2],
                           np.array([0, 8], np.int32).tobytes())
        axis = _tensor(model, schema, b"axis", schema.TensorType.INT32, [1], np.array([1], np.int32).tobytes())
        which = _tensor(model, schema, b"which", schema.TensorType.INT32, [1])
        model.operatorCodes += [_code(schema, "GATHER"), _code(schema, kind)]
        gather, arg = schema.OperatorT(), schema.OperatorT()
        gather.opcodeIndex, arg.opcodeIndex = len(model.operatorCodes) - 2, len(model.operatorCodes) - 1
        gather.inputs, gather.outputs = np.array([first, channels], np.int32), np.array([two], np.int32)
        gather.builtinOptionsType = schema.BuiltinOptions.GatherOptions
        gather.builtinOptions = schema.GatherOptionsT()
        gather.builtinOptions.axis = 1
        arg.inputs, arg.outputs = np.array([two, axis], np.int32), np.array([which], np.int32)
        options = "ArgMinOptions" if kind == "ARG_MIN" else "ArgMaxOptions"
        arg.builtinOptionsType = getattr(schema.BuiltinOptions, options)
        arg.builtinOptions = schema.ArgMinOptionsT() if kind == "ARG_MIN" else schema.ArgMaxOptionsT()
        arg.builtinOptions.outputType = schema.TensorType.INT32
        graph.operators[1:1] = [gather, arg]
        graph.outputs = np.array([*(int(o) for o in graph.outputs), which], np.int32)
        model.signatureDefs = []

    return change


def test_an_index_the_cpu_part_computes_otherwise_fails_cpu_parity(tmp_path: Path) -> None:
    """An integer output without quantization (ARG_MIN's index) is compared in values, not steps:
    TFLM's CPU part computing ARG_MIN where the model computes ARG_MAX (same tensor names, as the
    CPU parity test of test_tflm_cpu_part simulates a kernel that disagrees) flips the index on
    every sample, 1 apart; that passed as 'up to 1 steps' under max 1."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from test_tflm_cpu_part import _compile

    from qcheck.checks.tflm import changed_values
    from qcheck.tflm.runtime import cpu_part_parity

    argmin = edit_model(HELLO, tmp_path / "hello_argmin.tflite", _with_two_channels_and("ARG_MIN"))
    argmax = edit_model(HELLO, tmp_path / "hello_argmax.tflite", _with_two_channels_and("ARG_MAX"))
    compiled, cpu_rows = _compile(argmin, tmp_path / "vela")
    assert cpu_rows == [("GATHER", "first_two"), ("ARGMIN", "which")]
    x = np.linspace(-1.0, 7.0, 40, dtype=np.float32).reshape(-1, 1)

    # The premise, from LiteRT alone: the two indices differ on every sample.
    indices = {}
    for name, model in (("min", argmin), ("max", argmax)):
        litert = Interpreter(model_path=str(model), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        litert.allocate_tensors()
        (given,) = litert.get_input_details()
        (out,) = [o for o in litert.get_output_details() if o["name"] == "which"]
        scale, zero = given["quantization"]
        found = []
        for sample in x:
            litert.set_tensor(given["index"], np.clip(np.round(sample[None] / scale) + zero, -128, 127).astype(np.int8))
            litert.invoke()
            found.append(int(litert.get_tensor(out["index"]).reshape(-1)[0]))
        indices[name] = np.array(found)
    assert np.all(indices["min"] != indices["max"])

    parity = cpu_part_parity(compiled, argmax.read_bytes(), x)
    assert [(o.name, o.steps, o.unit) for o in parity.outputs] == [("which", 1.0, "values")]
    (failure,) = changed_values(parity)
    assert "'which' (integers without quantization" in failure and "differs by up to 1" in failure
    # The same CPU part against its own model: nothing differs, nothing fails.
    assert changed_values(cpu_part_parity(compiled, argmin.read_bytes(), x)) == ()


def test_a_float_output_of_the_cpu_part_is_compared_in_steps_of_its_range(tmp_path: Path) -> None:
    """hello_world_float runs on the CPU whole (Vela places no float operator on the NPU); its
    output (a sine, in [-1, 1]) has no quantized source. Its difference was in plain output units
    under 'max 1 step': TFLM computing it 0.9 off (simulated, as above, by a model whose last bias
    is 0.9 higher) passed as 'up to 0.9 float'. In steps of an int8 grid over its range it fails."""
    from test_tflm_cpu_part import _compile

    from qcheck.tflm.runtime import cpu_part_parity

    off = edit_model(HELLO_FLOAT, tmp_path / "hello_float_off.tflite", _biased_by_0_9)
    compiled, cpu_rows = _compile(HELLO_FLOAT, tmp_path / "vela")
    assert [kind for kind, _ in cpu_rows] == ["FULLYCONNECTED"] * 3
    x = np.linspace(0.0, 6.0, 50, dtype=np.float32).reshape(-1, 1)

    outputs = {"model": _reference_outputs(HELLO_FLOAT, x)[:, 0], "off": _reference_outputs(off, x)[:, 0]}
    difference = np.abs(outputs["off"] - outputs["model"]).max()
    assert abs(difference - 0.9) < 1e-5  # the premise: 0.9 off on every sample
    expected = difference / ((outputs["off"].max() - outputs["off"].min()) / 255)

    (found,) = cpu_part_parity(compiled, off.read_bytes(), x).outputs
    assert found.unit == "steps of its range/255" and abs(found.steps - expected) < 1e-3 * expected
    assert found.steps > 100
    (same,) = cpu_part_parity(compiled, HELLO_FLOAT.read_bytes(), x).outputs
    assert (same.steps, same.unit) == (0.0, "steps of its range/255")

    # Every sample the same: LiteRT's output has no range to grid over, and the difference was
    # left in plain units ('up to 0.9 float', a pass under max 1 step). A grid over [-|v|, |v|].
    one = np.full((20, 1), 1.0, np.float32)
    value = float(_reference_outputs(off, one[:1])[0, 0])  # LiteRT runs the model given, TFLM the compiled one
    difference = float(np.abs(_reference_outputs(HELLO_FLOAT, one) - value).max())
    assert abs(difference - 0.9) < 1e-5
    (found,) = cpu_part_parity(compiled, off.read_bytes(), one).outputs
    span = 2 * abs(value)
    assert found.unit == f"steps of {span:g}/255 (constant on the samples)"
    assert abs(found.steps - difference / (span / 255)) < 1e-3 * found.steps and found.steps > 50
    assert cpu_part_parity(compiled, HELLO_FLOAT.read_bytes(), one).outputs[0].steps == 0.0


def test_tflm_parity_of_a_float_model_is_in_steps_of_its_range(tmp_path: Path) -> None:
    """The whole-model check's comparison of one head: a float model's output (no scale, no int8
    source) was compared in 'output units', so 0.9 off passed the cortex-m suite's max 1 step."""
    from qcheck.checks.tflm import _head_parity
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflite.run import HeadOutput

    off = edit_model(HELLO_FLOAT, tmp_path / "hello_float_off.tflite", _biased_by_0_9)
    x = np.linspace(0.0, 6.0, 50, dtype=np.float32).reshape(-1, 1)
    litert, micro = _reference_outputs(HELLO_FLOAT, x), _reference_outputs(off, x)
    info = inspect_model(HELLO_FLOAT.read_bytes())
    (head,) = [io.name for io in info.outputs]
    result, per_sample = _head_parity(info, head, HeadOutput(litert, litert, None), HeadOutput(micro, micro, None),
                                      None)
    expected = float(np.abs(micro - litert).max()) / ((float(litert.max()) - float(litert.min())) / 255)
    assert result["unit"] == "steps of its range/255"
    assert abs(result["max_steps"] - expected) < 1e-3 * expected and result["max_steps"] > 100
    assert per_sample.max() == result["max_steps"]
    same, _ = _head_parity(info, head, HeadOutput(litert, litert, None), HeadOutput(litert, litert, None), None)
    assert same["max_steps"] == 0.0


def _biased_by_0_9(model: Any, schema: Any) -> None:
    """hello_world_float with its last bias 0.9 higher: every output 0.9 off."""
    graph = model.subgraphs[0]
    buffer = model.buffers[graph.tensors[int(graph.operators[-1].inputs[2])].buffer]
    bias = np.frombuffer(bytes(buffer.data), np.float32) + np.float32(0.9)
    buffer.data = np.frombuffer(bias.tobytes(), np.uint8)


def _reference_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    """A one-input, one-output float model's outputs on LiteRT's reference kernels, a row a sample."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    litert = Interpreter(model_path=str(model), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    litert.allocate_tensors()
    (given,), (out,) = litert.get_input_details(), litert.get_output_details()
    values = []
    for sample in x:
        litert.set_tensor(given["index"], sample[None])
        litert.invoke()
        values.append(litert.get_tensor(out["index"]).reshape(-1).copy())
    return np.array(values, np.float32)


def test_cpu_parity_says_how_many_cpu_operators_it_did_not_list(tmp_path: Path) -> None:
    """vww_96_float runs its 31 operators on the CPU; the parity message listed 8 of them with
    nothing to say the others ran and were compared too."""
    model = REAL / "mlperf_tiny" / "vww_96_float.tflite"
    data = tmp_path / "vww.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.uniform(0.0, 1.0, (3, 96, 96, 3)).astype(np.float32), y=np.array([0, 1, 0]))
    run = run_qcheck(tmp_path, "--qcheck-suite=ethos-u55", "-k", "tflm_cpu", f"--qcheck-model={model}",
                     f"--qcheck-data={data}")
    operators = run.model(model.name)["tflm_cpu"][U55]["cpu_operators"]
    assert len(operators) == 31
    check = run.check(model.name, "tflm_cpu_parity")
    assert check["passed"] is True and f"{operators[7]['label']} and 23 more)" in check["message"]


def _gather_reading_a_missing_buffer(model: Any, schema: Any) -> None:
    """Vela's output for hello_world with a GATHER on the CPU after it, whose constant indices
    name buffer 99999 (the file holds a handful)."""
    from test_tflm_cpu_part import _code, _tensor

    graph = model.subgraphs[0]
    output = int(graph.outputs[0])
    like = graph.tensors[output]
    indices = _tensor(model, schema, b"indices", schema.TensorType.INT32, [1], np.zeros(1, np.int32).tobytes())
    graph.tensors[indices].buffer = 99999
    gathered = _tensor(model, schema, b"gathered", like.type, [1, 1], like=like)
    model.operatorCodes.append(_code(schema, "GATHER"))
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs, op.outputs = np.array([output, indices], np.int32), np.array([gathered], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.GatherOptions
    op.builtinOptions = schema.GatherOptionsT()
    op.builtinOptions.axis = 1
    graph.operators.append(op)
    graph.outputs = np.array([gathered], np.int32)
    model.signatureDefs = []


def test_a_compiled_model_naming_a_missing_buffer_is_named_with_the_buffer(tmp_path: Path) -> None:
    """The cut said 'damaged (IndexError: list index out of range)'; it names the tensor and the
    buffer now, and the session goes on to the next model."""
    damaged = edit_model(FIXTURES / "bad" / "hello_world_vela.tflite", tmp_path / "damaged_vela.tflite",
                         _gather_reading_a_missing_buffer)
    run = run_qcheck(tmp_path, "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_ops", f"--qcheck-model={damaged}",
                     f"--qcheck-model={HELLO}")
    check = run.check(damaged.name, "tflm_cpu_ops")
    assert check["passed"] is False and str(damaged) in check["message"]
    assert "tensor 'indices' refers to buffer 99999, but the compiled model has" in check["message"]
    assert run.check(HELLO.name, "tflm_cpu_ops")["passed"] is True


_SPY = """import atexit, os, sys
def _log():
    with open(os.environ["QCHECK_TEST_SPY_LOG"], "a") as log:
        log.write(" ".join(sys.argv) + "\\n")
atexit.register(_log)
"""


def test_a_model_wholly_on_the_npu_starts_no_child_for_tflm_cpu_ops(tmp_path: Path) -> None:
    """When Vela puts every operator on the NPU there is nothing to cut out or load: the check
    started a child process for it all the same (about a second cold, per model and accelerator).
    Every Python process of the run writes its command line to a log (a sitecustomize on the path)."""
    import os

    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_SPY)
    log = tmp_path / "processes.log"
    path = os.pathsep.join([str(spy), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = run_qcheck(tmp_path / "run", "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_ops", f"--qcheck-model={HELLO}",
                     "--qcheck-no-cache", env={"PYTHONPATH": path, "QCHECK_TEST_SPY_LOG": str(log)})
    check = run.check(HELLO.name, "tflm_cpu_ops")
    assert (check["passed"], check["value"]) == (True, 0)
    assert "Vela puts every operator on the NPU (1 'ethos-u' operator(s))" in check["message"]
    assert run.model(HELLO.name)["tflm_cpu"][U55]["load"] is None
    processes = log.read_text().splitlines()
    assert any("ethosu" in p for p in processes) and any("pytest" in p for p in processes)  # the spy saw them
    assert not [p for p in processes if "worker.py" in p], processes
