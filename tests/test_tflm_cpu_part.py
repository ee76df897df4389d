"""The CPU part of an Ethos-U system: the operators Vela leaves on the CPU, cut out of its output
and loaded in TensorFlow Lite Micro (``tflm_cpu_ops``).

Real Vela compiles every model; real TFLM loads and runs the cut-out parts. What ran on the CPU
is read from Vela's own per-layer CSV, the boundary tensors from the compiled flatbuffer through
LiteRT's schema, and the expected values are computed here from the tensors' quantization
parameters, never from qcheck's answer.

The models: ``digits_float_io`` (int8 inside, float32 input and output: Vela leaves the float
QUANTIZE and DEQUANTIZE on the CPU), hello_world with an int8 GATHER between its first two
layers (not an Ethos-U55 operator, nor, with its axis, an Ethos-U85 one; TFLM has the kernel),
and hello_world with an int8 TOPK_V2 appended (top-k on the device: LiteRT runs it, Vela leaves
it on the CPU, and TFLM has no kernel for it).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, REAL, run_qcheck
from tflite_edits import edit_model

HELLO = REAL / "tflm" / "hello_world_int8.tflite"
FLOAT_IO = FIXTURES / "model_kinds" / "digits_float_io.tflite"
COMPILED = FIXTURES / "bad" / "hello_world_vela.tflite"  # Vela's output, given as the model
U55 = "ethos-u55-128"


def _code(schema: Any, builtin: str) -> Any:
    code = schema.OperatorCodeT()
    code.builtinCode = getattr(schema.BuiltinOperator, builtin)
    code.deprecatedBuiltinCode = min(code.builtinCode, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = 1
    return code


def _tensor(model: Any, schema: Any, name: bytes, dtype: int, shape: list[int], data: bytes | None = None,
            like: Any = None) -> int:
    """A new tensor of the main subgraph, with its own buffer; its index."""
    graph = model.subgraphs[0]
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(data, np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.type, tensor.buffer = name, dtype, len(model.buffers) - 1
    tensor.shape = np.array(shape, dtype=np.int32)
    tensor.quantization = like.quantization if like is not None else None
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def with_gather_after_first_layer(source: Path, target: Path, reverse: bool = False) -> Path:
    """An int8 GATHER along axis 1 with the indices 0..n-1 (an identity, reading constant indices),
    or n-1..0 with ``reverse``, between the first operator and the rest."""

    def change(model: Any, schema: Any) -> None:
        graph = model.subgraphs[0]
        between = int(graph.operators[0].outputs[0])
        old = graph.tensors[between]
        width = int(old.shape[1])
        gathered = _tensor(model, schema, b"gathered", old.type, list(old.shape), like=old)
        indices = _tensor(model, schema, b"gather_indices", schema.TensorType.INT32, [width],
                          np.arange(width, dtype=np.int32)[:: -1 if reverse else 1].tobytes())
        for later in graph.operators[1:]:
            later.inputs = np.array([gathered if int(t) == between else int(t) for t in later.inputs], dtype=np.int32)
        model.operatorCodes.append(_code(schema, "GATHER"))
        op = schema.OperatorT()
        op.opcodeIndex = len(model.operatorCodes) - 1
        op.inputs, op.outputs = np.array([between, indices], np.int32), np.array([gathered], np.int32)
        op.builtinOptionsType = schema.BuiltinOptions.GatherOptions
        op.builtinOptions = schema.GatherOptionsT()
        op.builtinOptions.axis = 1
        graph.operators.insert(1, op)
        model.signatureDefs = []

    return edit_model(source, target, change)


def with_top_k_appended(source: Path, target: Path) -> Path:
    """TOPK_V2 (k = 1) on the int8 output: its values (int8) and indices (int32) become the outputs."""

    def change(model: Any, schema: Any) -> None:
        graph = model.subgraphs[0]
        output = int(graph.outputs[0])
        old = graph.tensors[output]
        k = _tensor(model, schema, b"top_k_k", schema.TensorType.INT32, [], np.int32(1).tobytes())
        values = _tensor(model, schema, b"top_k_values", old.type, list(old.shape), like=old)
        indices = _tensor(model, schema, b"top_k_indices", schema.TensorType.INT32, list(old.shape))
        model.operatorCodes.append(_code(schema, "TOPK_V2"))
        op = schema.OperatorT()
        op.opcodeIndex = len(model.operatorCodes) - 1
        op.inputs, op.outputs = np.array([output, k], np.int32), np.array([values, indices], np.int32)
        graph.operators.append(op)
        graph.outputs = np.array([values, indices], dtype=np.int32)
        model.signatureDefs = []

    return edit_model(source, target, change)


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("edited")
    gather = with_gather_after_first_layer(HELLO, folder / "hello_gather.tflite")
    return {"gather": gather, "top_k": with_top_k_appended(HELLO, folder / "hello_top_k.tflite"),
            "reversed": with_gather_after_first_layer(HELLO, folder / "hello_reversed.tflite", reverse=True),
            "unnamed": edit_model(gather, folder / "hello_unnamed.tflite", _without_names)}


def _without_names(model: Any, schema: Any) -> None:
    """Every tensor's name blanked, as in TFLite Micro's keyword_scrambled."""
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.name = b""
    model.signatureDefs = []


def _compile(model: Path, out: Path, accelerator: str = U55) -> tuple[bytes, list[tuple[str, str]]]:
    """Vela's output for ``model`` and the (operator, name) of each row its per-layer CSV puts on the CPU."""
    from qcheck.vela import VelaConfig, run_vela

    result = run_vela(model, VelaConfig.default_for(accelerator), out)
    assert result.compiled_model is not None
    return Path(result.compiled_model).read_bytes(), _cpu_rows(out / f"{model.stem}_per-layer.csv")


def _cpu_rows(per_layer: Path) -> list[tuple[str, str]]:
    """The CPU rows of Vela's per-layer CSV as (operator kind, the tensor it writes): Vela names
    the kinds its own way ("Dequantize" for DEQUANTIZE), so kinds are compared by :func:`_kind`."""
    with per_layer.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return list(dict.fromkeys((_kind(r["Original Operator"]), r["Name"]) for r in rows if r["Target"] == "CPU"))


_VELA_NAMES = {"GATHERV2": "GATHER"}  # Vela names GATHER by TensorFlow's op


def _kind(op: str) -> str:
    kind = op.replace("_", "").upper()
    return _VELA_NAMES.get(kind, kind)


class _Graph:
    """A flatbuffer's main subgraph as LiteRT's schema reads it (no qcheck code)."""

    def __init__(self, tflite: bytes) -> None:
        from ai_edge_litert import schema_py_generated as schema

        model = schema.ModelT.InitFromPackedBuf(tflite, 0)
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        graph = model.subgraphs[0]
        self.tensors = graph.tensors
        builtins = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
        self.codes = [(c.customCode or b"").decode() if b == schema.BuiltinOperator.CUSTOM else names[b]
                      for c, b in zip(model.operatorCodes, builtins, strict=True)]
        self.ops = [(self.codes[op.opcodeIndex], [int(t) for t in op.inputs], [int(t) for t in op.outputs])
                    for op in graph.operators]
        self.inputs = [self.name(int(t)) for t in graph.inputs]
        self.outputs = [self.name(int(t)) for t in graph.outputs]

    def name(self, index: int) -> str:
        return bytes(self.tensors[index].name).decode()

    def cpu_ops(self) -> list[tuple[str, str]]:
        return [(_kind(op), self.name(outputs[0])) for op, _, outputs in self.ops if op != "ethos-u"]

    def npu_reads(self) -> list[str]:
        return [self.name(t) for op, inputs, _ in self.ops if op == "ethos-u" for t in inputs]

    def npu_writes(self) -> list[str]:
        return [self.name(t) for op, _, outputs in self.ops if op == "ethos-u" for t in outputs]

    def quantization(self, name: str) -> tuple[float, int]:
        (tensor,) = [t for t in self.tensors if bytes(t.name).decode() == name]
        return float(tensor.quantization.scale[0]), int(tensor.quantization.zeroPoint[0])


def _tflm(tflite: bytes) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(tflite, arena_size=1 << 20)


# --- the cut (qcheck/tflm/cpu_part.py) ------------------------------------------------------


def test_the_cpu_part_of_a_float_io_model_is_its_quantize_and_dequantize(tmp_path: Path) -> None:
    from qcheck.tflm.cpu_part import cut_cpu_part

    compiled, cpu_rows = _compile(FLOAT_IO, tmp_path / "vela")
    whole, part = _Graph(compiled), cut_cpu_part(compiled)
    sub = _Graph(part.tflite)
    assert cpu_rows == [("QUANTIZE", "tfl.quantize"), ("DEQUANTIZE", "StatefulPartitionedCall_1:0")]
    assert sub.cpu_ops() == cpu_rows and part.npu_ops == 1
    # Inputs: the model's input (QUANTIZE reads it) and what the NPU writes (DEQUANTIZE reads it);
    # outputs: what the NPU reads and the model's output.
    assert sub.inputs == [whole.inputs[0], *whole.npu_writes()]
    assert sub.outputs == ["tfl.quantize", whole.outputs[0]] and "tfl.quantize" in whole.npu_reads()
    assert "ethos-u" not in sub.codes and len(part.tflite) < len(compiled) / 4  # no command stream, no weights

    # It runs in TFLM and computes what the two operators compute, with the model's own parameters.
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 1.2, (1, 8, 8, 1)).astype(np.float32)
    q = rng.integers(-128, 128, (1, 10)).astype(np.int8)
    micro = _tflm(part.tflite)
    micro.set_input(x, 0)
    micro.set_input(q, 1)
    micro.invoke()
    scale, zero = whole.quantization("tfl.quantize")
    expected = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    assert np.array_equal(micro.get_output(0), expected)
    scale, zero = whole.quantization(whole.npu_writes()[0])
    assert np.allclose(micro.get_output(1), (q.astype(np.float32) - zero) * scale)


def test_an_operator_between_two_npu_parts_reads_and_writes_the_npu_tensors(edited: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    from qcheck.tflm.cpu_part import cut_cpu_part

    compiled, cpu_rows = _compile(edited["gather"], tmp_path / "vela")
    whole, part = _Graph(compiled), cut_cpu_part(compiled)
    sub = _Graph(part.tflite)
    assert cpu_rows == [("GATHER", "gathered")] and sub.cpu_ops() == cpu_rows
    assert part.npu_ops == 2  # Vela's two NPU parts, before and after it
    first_npu_output = whole.npu_writes()[0]
    assert sub.inputs == [first_npu_output] and sub.outputs == ["gathered"]
    assert "gathered" in whole.npu_reads()
    # The constant indices came along: the gather is the identity it was built as.
    values = np.random.default_rng(1).integers(-128, 128, (1, 16)).astype(np.int8)
    micro = _tflm(part.tflite)
    micro.set_input(values, 0)
    micro.invoke()
    assert np.array_equal(micro.get_output(0), values)


def test_nothing_is_cut_when_vela_puts_everything_on_the_npu(tmp_path: Path) -> None:
    from qcheck.tflm.cpu_part import cut_cpu_part

    compiled, cpu_rows = _compile(HELLO, tmp_path / "vela")
    part = cut_cpu_part(compiled)
    assert cpu_rows == [] and part.empty and (part.tflite, part.npu_ops) == (b"", 1)


def test_a_model_without_npu_operators_is_its_own_cpu_part() -> None:
    """Every operator and every weight kept (buffers renumbered): TFLM gives the same outputs."""
    from qcheck.tflm.cpu_part import cut_cpu_part

    part = cut_cpu_part(HELLO.read_bytes())
    assert part.operators == (0, 1, 2) and part.npu_ops == 0
    x = np.arange(-100, 100, 7, dtype=np.int8).reshape(-1, 1, 1)
    original, cut = _tflm(HELLO.read_bytes()), _tflm(part.tflite)
    for sample in x:
        for micro in (original, cut):
            micro.set_input(sample, 0)
            micro.invoke()
        assert np.array_equal(original.get_output(0), cut.get_output(0))


def test_a_damaged_model_is_refused_with_a_value_error() -> None:
    from qcheck.tflm.cpu_part import cut_cpu_part

    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        cut_cpu_part(b"not a model at all")


# --- the check, as users run it ------------------------------------------------------------


def test_tflm_cpu_ops_in_the_ethos_u_suites(edited: dict[str, Path], tmp_path: Path) -> None:
    models = (FLOAT_IO, edited["gather"], edited["top_k"], HELLO, COMPILED)
    run = run_qcheck(tmp_path / "u55", "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_ops", "--qcheck-html=report.html",
                     *(f"--qcheck-model={m}" for m in models))
    for model in models:  # what TFLM loaded is what Vela's per-layer CSV put on the CPU
        if model != COMPILED:
            (csv_file,) = (run.out_dir / f"{model.stem}_vela" / U55).glob("*_per-layer.csv")
            section = run.model(model.name)["tflm_cpu"][U55]
            loaded = [(_kind(op["op"]), op["label"].split("'")[1]) for op in section["cpu_operators"]]
            assert loaded == _cpu_rows(csv_file), model.name

    check = run.check(FLOAT_IO.name, "tflm_cpu_ops")
    assert (check["passed"], check["value"], check["variant"]) == (True, 0, U55)
    assert "loads the 2 operator(s) Vela leaves on the CPU" in check["message"]
    assert "QUANTIZE 'tfl.quantize', DEQUANTIZE 'StatefulPartitionedCall_1:0'" in check["message"]
    assert "AddDequantize(), AddEthosU(), AddQuantize()" in check["message"]
    section = run.model(FLOAT_IO.name)["tflm_cpu"][U55]
    arena = section["load"]
    assert arena["loaded"] and arena["total"] == arena["head"] + arena["tail"] > 0
    assert f"allocates {_kib(arena['total'])} for the CPU part alone" in check["message"]
    assert "not the device's arena" in check["message"]
    assert section["outputs"] == ["tfl.quantize", "StatefulPartitionedCall_1:0"]

    gather = run.check("hello_gather.tflite", "tflm_cpu_ops")
    assert (gather["passed"], gather["value"]) == (True, 0) and "GATHER 'gathered'" in gather["message"]

    top_k = run.check("hello_top_k.tflite", "tflm_cpu_ops")
    assert (top_k["passed"], top_k["value"]) == (False, 1)
    assert "cannot load the operator(s) Vela leaves on the CPU" in top_k["message"]
    assert "so the model cannot run on the device" in top_k["message"]
    assert "Didn't find op for builtin opcode 'TOPK_V2'" in top_k["message"]  # TFLM's own words
    assert "(TOPK_V2 x1)" in top_k["message"] and "CPU operators: TOPK_V2 'top_k_values'" in top_k["message"]
    assert run.model("hello_top_k.tflite")["tflm_cpu"][U55]["load"]["loaded"] is False

    for name in (HELLO.name, COMPILED.name):
        check = run.check(name, "tflm_cpu_ops")
        assert (check["passed"], check["value"]) == (True, 0)
        assert "nothing runs on TensorFlow Lite Micro's CPU kernels" in check["message"]
    assert "compiled by Vela already" in run.check(COMPILED.name, "tflm_cpu_ops")["message"]
    assert "tflm_cpu_ops[ethos-u55-128]" in run.stdout and run.returncode == 1
    # The HTML report's TFLite Micro table has a row for the CPU part of each accelerator.
    html = (tmp_path / "u55" / "report.html").read_text()
    assert ("CPU part (ethos-u55-128)</td><td>2</td><td>loads QUANTIZE &#39;tfl.quantize&#39;, DEQUANTIZE "
            f"&#39;StatefulPartitionedCall_1:0&#39;; {_kib(arena['total'])} arena for the CPU part alone<") in html
    assert ("CPU part (ethos-u55-128)</td><td>1</td><td>cannot load them: Didn&#39;t find op for builtin opcode "
            "&#39;TOPK_V2&#39;") in html
    assert "CPU part (ethos-u55-128)</td><td>0</td><td>nothing runs on TFLite Micro&#39;s CPU kernels<" in html


def _kib(size: int) -> str:
    from qcheck.units import format_quantity

    return format_quantity(size, "bytes")


@pytest.mark.parametrize(("suite", "accelerator"), [("ethos-u65", "ethos-u65-256"), ("ethos-u85", "ethos-u85-256")])
def test_the_other_ethos_u_suites_check_the_cpu_part_too(edited: dict[str, Path], tmp_path: Path, suite: str,
                                                         accelerator: str) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-suite={suite}", "-k", "tflm_cpu_ops", f"--qcheck-model={edited['top_k']}")
    check = run.check("hello_top_k.tflite", "tflm_cpu_ops")
    assert (check["passed"], check["value"], check["variant"]) == (False, 1, accelerator)


def test_warm_run_takes_the_cpu_part_from_the_cache(tmp_path: Path) -> None:
    """The second run has a TensorFlow and a TFLite Micro that fail on import, here and in children."""
    args = (f"--qcheck-model={FLOAT_IO}", f"--qcheck-data={FIXTURES / 'digits.npz'}", "--qcheck-suite=ethos-u55",
            f"--qcheck-cache-dir={tmp_path / 'cache'}", "-k", "tflm_cpu or vela")
    cold = run_qcheck(tmp_path / "cold", *args)
    assert cold.returncode == 1, cold.stdout  # vela fails: QUANTIZE and DEQUANTIZE stay on the CPU
    assert [c["passed"] for c in cold.model(FLOAT_IO.name)["checks"]] == [True, True, False]
    poison = tmp_path / "poison"
    for name in ("tensorflow", "keras", "tflite_micro"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} imported in a warm run')\n")
    path = os.pathsep.join([str(poison), *filter(None, [os.environ.get("PYTHONPATH")])])
    warm = run_qcheck(tmp_path / "warm", *args, env={"PYTHONPATH": path})
    assert warm.returncode == 1, warm.stdout
    model = FLOAT_IO.name
    assert warm.model(model)["checks"] == cold.model(model)["checks"]
    for section in ("tflm_cpu", "tflm_cpu_parity"):
        assert warm.model(model)[section] == cold.model(model)[section]


# --- parity of the CPU part ------------------------------------------------------------------


def test_cpu_parity_compares_what_tflm_writes_with_litert_on_the_same_inputs(edited: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    """The CPU part of the identity GATHER's compilation, compared with a model whose GATHER
    reverses (same tensor names): TFLM writes the values it was fed, LiteRT their reverse, and
    the difference is the largest between the first layer's outputs and their reverse."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from qcheck.tflm.runtime import cpu_part_parity

    compiled, _ = _compile(edited["gather"], tmp_path / "vela")
    original = edited["reversed"].read_bytes()
    x = np.linspace(-1.0, 7.0, 24, dtype=np.float32).reshape(-1, 1)
    found = cpu_part_parity(compiled, original, x)

    litert = Interpreter(model_content=original, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    litert.allocate_tensors()
    (source,) = [t for t in litert.get_tensor_details() if t["name"] == _Graph(compiled).npu_writes()[0]]
    (given,) = litert.get_input_details()
    scale, zero = given["quantization"]
    expected = 0
    for sample in x:
        litert.set_tensor(given["index"], np.clip(np.round(sample[None] / scale) + zero, -128, 127).astype(np.int8))
        litert.invoke()
        first = litert.get_tensor(source["index"]).astype(int)
        expected = max(expected, int(np.abs(first - first[:, ::-1]).max()))
    assert expected > 0  # the premise: the first layer's 16 outputs are not a palindrome
    assert (found.samples, found.unmatched) == (24, ())
    assert [(o.name, o.steps, o.unit) for o in found.outputs] == [("gathered", expected, "steps")]


def test_tflm_cpu_parity_in_the_suite(edited: dict[str, Path], tmp_path: Path) -> None:
    from qcheck.tflite.inspect import inspect_model

    hello_data = tmp_path / "hello.npz"
    np.savez(hello_data, x=np.linspace(-1.0, 7.0, 40, dtype=np.float32).reshape(-1, 1))
    digits = run_qcheck(tmp_path / "digits", "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_parity",
                        f"--qcheck-model={FLOAT_IO}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
                        "--qcheck-html=report.html")
    check = digits.check(FLOAT_IO.name, "tflm_cpu_parity")
    assert (check["passed"], check["value"], check["threshold"], check["variant"]) == (True, 0, 1, U55)
    assert "on the first 100 evaluation sample(s)" in check["message"]
    assert "'tfl.quantize' up to 0 steps; 'StatefulPartitionedCall_1:0' up to 0 steps" in check["message"]
    section = digits.model(FLOAT_IO.name)["tflm_cpu_parity"][U55]
    assert section["samples"] == 100 and section["unmatched"] == []
    html = (tmp_path / "digits" / "report.html").read_text()
    assert ("CPU part parity (ethos-u55-128) &#39;tfl.quantize&#39;</td><td>0 steps</td><td>largest difference "
            "from LiteRT&#39;s reference kernels on 100 sample(s)<") in html

    others = run_qcheck(tmp_path / "others", "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_parity",
                        f"--qcheck-data={hello_data}", f"--qcheck-model={edited['gather']}",
                        f"--qcheck-model={edited['unnamed']}", f"--qcheck-model={edited['top_k']}",
                        f"--qcheck-model={HELLO}")
    gather = others.check("hello_gather.tflite", "tflm_cpu_parity")
    assert (gather["passed"], gather["value"]) == (True, 0) and "'gathered' up to 0 steps" in gather["message"]
    assert others.model("hello_gather.tflite")["tflm_cpu_parity"][U55]["samples"] == 40
    # With no tensor names, the tensors crossing to the NPU cannot be found in the model: said, not compared.
    assert not any(t.name for t in inspect_model(edited["unnamed"].read_bytes()).tensors)
    unnamed = others.check("hello_unnamed.tflite", "tflm_cpu_parity")
    assert unnamed["passed"] is None and "could not be found by name in the model" in unnamed["message"]
    top_k = others.check("hello_top_k.tflite", "tflm_cpu_parity")
    assert top_k["passed"] is None and "cannot load the CPU part" in top_k["message"]
    hello = others.check(HELLO.name, "tflm_cpu_parity")
    assert hello["passed"] is None and "nothing to compare" in hello["message"]


def test_npu_code_inside_a_subgraph_is_said_not_judged(tmp_path: Path) -> None:
    """Vela 5.2 compiles an int8 tf.while_loop's body to the NPU: an 'ethos-u' operator outside the
    main graph, which the cut does not take apart. The model may well run: both checks say they did
    not judge it (they failed it with an error)."""
    import copy

    def npu_in_a_second_subgraph(model: Any, schema: Any) -> None:
        model.subgraphs.append(copy.deepcopy(model.subgraphs[0]))

    loop = edit_model(COMPILED, tmp_path / "loop_vela.tflite", npu_in_a_second_subgraph)
    run = run_qcheck(tmp_path, f"--qcheck-model={loop}", "--qcheck-suite=ethos-u55", "-k", "tflm_cpu")
    for name in ("tflm_cpu_ops", "tflm_cpu_parity"):
        check = run.check(loop.name, name)
        assert check["status"] == "skipped", check
    ops = run.check(loop.name, "tflm_cpu_ops")
    assert "Vela put NPU code inside a subgraph" in ops["message"], ops
    assert run.returncode == 0, run.stdout
