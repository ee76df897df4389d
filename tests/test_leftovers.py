"""Smaller problems reviewers found: a misleading message, or a check that errors where it should measure.

Each test runs the real parts (TensorFlow's converter, LiteRT, TFLite Micro, Vela) and fails on
the code before its fix.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from helpers import FIXTURES, REAL, run_qcheck


def _poisoned(tmp_path: Path, *names: str) -> dict[str, str]:
    """An environment in which importing any of ``names`` fails, here and in child processes."""
    poison = tmp_path / "poison"
    for name in names:
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} imported in a warm run')\n")
    return {"PYTHONPATH": os.pathsep.join([str(poison), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_tflm_parity_of_an_operator_litert_has_no_reference_kernel_for(tmp_path: Path) -> None:
    """float_op's ELU: TFLite Micro runs it, LiteRT's reference kernels have none, and tflm_parity
    errored ("Didn't find op for builtin opcode 'ELU'"). LiteRT's built-in kernels (without
    XNNPACK) stand in, said in the message and the JSON section, also in a warm run (from the
    cache, which stores what the child process sends back: the same codec); the layer-by-layer
    comparison falls back the same way."""
    from qcheck.isolation import call_isolated

    model = FIXTURES / "float_op.keras"
    args = ("--qcheck-suite=cortex-m", "-k", "tflm_parity", f"--qcheck-model={model}",
            f"--qcheck-data={FIXTURES / 'digits.npz'}", f"--qcheck-cache-dir={tmp_path / 'cache'}")
    cold = run_qcheck(tmp_path / "cold", *args)
    warm = run_qcheck(tmp_path / "warm", *args,
                      env=_poisoned(tmp_path, "tensorflow", "keras", "tflite_micro"))
    for run in (cold, warm):
        check = run.check(model.name, "tflm_parity")
        assert check["status"] in ("passed", "failed") and check["value"] is not None, check
        assert "against LiteRT's built-in kernels (without XNNPACK)" in check["message"], check["message"]
        assert "LiteRT's reference kernels have no ELU" in check["message"], check["message"]
        section = run.model(model.name)["tflm_parity"]
        assert "no ELU" in section["note"] and section["parity"], section
    assert warm.report["models"][0]["checks"] == cold.report["models"][0]["checks"]

    tflite = (cold.out_dir / "float_op_quant.tflite").read_bytes()
    x = np.load(FIXTURES / "digits.npz")["x"][:2]
    litert = call_isolated("qcheck.tflm.runtime:run_litert", tflite, x, what="running float_op in LiteRT")
    assert "no ELU" in litert.note and len(next(iter(litert.outputs.values())).raw) == 2
    found = call_isolated("qcheck.tflm.runtime:divergence", tflite, x, steps=1.0, what="comparing float_op")
    assert found.samples == 2 and found.compared > 0, found


def test_the_html_tables_name_the_litert_kernels_a_parity_was_measured_against() -> None:
    """The HTML report's TFLite Micro table said "from LiteRT's reference kernels" for a parity
    measured against LiteRT's built-in kernels (the section's note says when)."""
    from qcheck.report.view.targets import tflm

    note = "LiteRT's reference kernels have no ELU: its built-in kernels (without XNNPACK) computed ..."
    head = {"max_steps": 0.0, "unit": "steps", "changed": 0.0}
    output = {"name": "t", "max_steps": 1.0, "unit": "steps"}
    for said, expected in ((note, "LiteRT's built-in kernels (without XNNPACK)"), ("", "LiteRT's reference kernels")):
        table = tflm(None, parity_section={"parity": {"digit": head}, "note": said},
                     cpu_parity={"ethos-u55-128": {"samples": 100, "outputs": [output], "note": said}})
        assert table is not None
        rows = [row for row in table.rows if "parity" in row[0]]
        assert len(rows) == 2 and all(f"largest difference from {expected}" in row[2] for row in rows), rows


def _input_named_as_output(model: Any, schema: Any) -> None:
    """The graph's input tensor bears the output's name (float32, one value, as the output)."""
    graph = model.subgraphs[0]
    graph.tensors[int(graph.inputs[0])].name = graph.tensors[int(graph.outputs[0])].name
    model.signatureDefs = []


def test_a_boundary_name_borne_by_two_tensors_is_said_ambiguous(tmp_path: Path) -> None:
    """hello_world_float runs wholly on the CPU beside the NPU; its input and output tensors, both
    float32 of one value, bearing one name: the CPU part's boundary tensors cannot be paired with
    the model's by name. tflm_cpu_parity said the name 'could not be found by name in the model',
    which it is, twice."""
    from tflite_edits import edit_model

    from qcheck.tflite.inspect import inspect_model

    model = edit_model(REAL / "tflm" / "hello_world_float.tflite", tmp_path / "hello_twice.tflite",
                       _input_named_as_output)
    info = inspect_model(model.read_bytes())
    name = info.tensor(0, info.outputs[0].tensor.index).name
    assert [t.name for t in info.tensors].count(name) == 2  # the premise
    data = tmp_path / "hello.npz"
    np.savez(data, x=np.linspace(-1.0, 7.0, 12, dtype=np.float32).reshape(-1, 1))
    run = run_qcheck(tmp_path / "run", "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_parity", f"--qcheck-model={model}",
                     f"--qcheck-data={data}")
    check = run.check(model.name, "tflm_cpu_parity")
    assert check["status"] == "skipped", check
    assert f"are ambiguous in the model ('{name}' appears 2 times)" in check["message"], check["message"]
    assert "could not be found by name" not in check["message"], check["message"]
    section = run.model(model.name)["tflm_cpu_parity"]["ethos-u55-128"]
    assert section["ambiguous"] == [{"name": name, "tensors": 2}] and section["unmatched"] == [], section


# -- the baseline: the labels its outcomes are judged against -----------------------------------


def _baseline_run(cwd: Path, data: Path, *args: str) -> Any:
    return run_qcheck(cwd, "--qcheck-model=model.keras", f"--qcheck-data={data}", "--qcheck-calibration=cal.npz",
                      "--qcheck-baseline=bl", "-k", "baseline", *args)


def test_a_label_fix_on_the_same_inputs_is_said_not_judged_a_regression(tmp_path: Path) -> None:
    """The digits CNN's baseline, then the same 540 evaluation inputs with 60 labels changed: the
    outcomes, right or wrong against the labels, paired by McNemar's test, made a label fix a
    regression ("60 sample(s) lost"). The labels are fingerprinted now: said changed, not
    compared, and the user told to update the baseline; after the update the run passes."""
    import json
    import shutil

    shutil.copy(FIXTURES / "digits_cnn.keras", tmp_path / "model.keras")
    given = np.load(FIXTURES / "digits.npz")
    x, y = given["x"], given["y"]
    np.savez(tmp_path / "cal.npz", x=x[:200])
    np.savez(tmp_path / "data.npz", x=x, y=y)
    fixed = y.copy()
    fixed[:60] = (fixed[:60] + 1) % 10
    np.savez(tmp_path / "fixed.npz", x=x, y=fixed)
    assert _baseline_run(tmp_path, tmp_path / "data.npz", "--qcheck-baseline-update").returncode == 0
    document = json.loads((tmp_path / "bl" / "model.json").read_text())
    assert len(document["heads"][0]["labels_sha256"]) == 64

    same = _baseline_run(tmp_path, tmp_path / "data.npz")
    assert same.check("model.keras", "baseline")["status"] == "passed", same.stdout

    run = _baseline_run(tmp_path, tmp_path / "fixed.npz")
    check = run.check("model.keras", "baseline")
    message = check["message"]
    assert check["status"] == "failed" and check["value"] == 1, message
    assert "McNemar" not in message and "lost" not in message, message
    assert "head 'digit': the labels changed since the baseline, on the same 540 evaluation inputs" in message
    assert "--qcheck-baseline-update" in message
    assert "quantized bytes and toolchain unchanged" in message  # not 'the model changed'
    head = run.model("model.keras")["baseline"]["heads"]["digit"]
    assert head["verdict"] == "not compared" and head["labels"] == "changed", head

    update = _baseline_run(tmp_path, tmp_path / "fixed.npz", "--qcheck-baseline-update")
    assert "the labels changed since the baseline" in update.stdout, update.stdout
    assert _baseline_run(tmp_path, tmp_path / "fixed.npz").check("model.keras", "baseline")["status"] == "passed"


def _labelled_record(labels: str | None, correct: np.ndarray) -> Any:
    from qcheck.baseline.record import Head, Record, toolchain_versions

    head = Head("cls", "classification", "correct", correct, np.arange(20, dtype=np.int8).reshape(4, 5), 0.1,
                labels)
    return Record("m.keras", toolchain_versions(), "a" * 64, {}, None, len(correct), "d" * 64,
                  np.array([0, 10, 20, 39]), (head,))


def test_a_baseline_without_label_fingerprints_is_read_and_said_unable_to_tell(tmp_path: Path) -> None:
    """A baseline written before the labels were fingerprinted: read, compared as before (paired),
    and the message says whether the labels changed cannot be told."""
    import json

    from qcheck.baseline.compare import compare
    from qcheck.baseline.store import read, write
    from qcheck.files import InputFiles

    correct = np.arange(40) % 5 != 0
    json_path, _ = write(tmp_path, "m", _labelled_record("b" * 64, correct), InputFiles())
    document = json.loads(json_path.read_text())
    assert document["heads"][0]["labels_sha256"] == "b" * 64
    del document["heads"][0]["labels_sha256"]  # as an older qcheck wrote it
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    old = read(tmp_path, "m")
    assert old is not None and old.heads[0].labels_sha256 is None

    worse = correct.copy()
    worse[1:13] = False  # 10 right answers lost: a drop the paired test sees
    comparison = compare(old, _labelled_record("b" * 64, worse), {})
    assert any("does not record which labels head(s) cls were judged against" in line and "cannot be told" in line
               for line in comparison.lines), comparison.lines
    head = comparison.section["heads"]["cls"]
    assert head["labels"] == "unrecorded" and head["lost"] == 10 and head["verdict"] == "regressed", head
    # Fingerprints on both sides that differ: not paired by McNemar's test, said, and failed with the remedy.
    relabelled = compare(_labelled_record("c" * 64, correct), _labelled_record("b" * 64, worse), {})
    (failure,) = relabelled.failures
    assert "the labels changed since the baseline, on the same 40 evaluation inputs" in failure, failure
    assert "McNemar" not in failure and "lost" not in relabelled.section["heads"]["cls"]
    # Judged against the float model then (no labels), against labels now: a change of truth too.
    (failure,) = compare(_labelled_record("", correct), _labelled_record("b" * 64, correct), {}).failures
    assert "judged against the float model's answers in the baseline, against labels now" in failure


def test_tflm_ops_on_vela_output_points_to_the_suite_that_judges_its_cpu_part(tmp_path: Path) -> None:
    """tflm_ops on a model that is Vela's output said only "give qcheck the model you gave Vela";
    the Ethos-U suites' tflm_cpu_ops judges the CPU part of such a model, and the hint says so.
    Following the hint measures it."""
    compiled = FIXTURES / "bad" / "hello_world_vela.tflite"
    run = run_qcheck(tmp_path / "cortex", "--qcheck-suite=cortex-m", "-k", "tflm_ops", f"--qcheck-model={compiled}")
    check = run.check(compiled.name, "tflm_ops")
    assert check["status"] == "failed", check
    assert "give qcheck the model you gave Vela, not Vela's output" in check["message"]
    assert "run an Ethos-U suite (--qcheck-suite=ethos-u55, ethos-u65 or ethos-u85): its tflm_cpu_ops" \
        in check["message"], check["message"]
    followed = run_qcheck(tmp_path / "ethos", "--qcheck-suite=ethos-u55", "-k", "tflm_cpu_ops",
                          f"--qcheck-model={compiled}")
    judged = followed.check(compiled.name, "tflm_cpu_ops")
    assert judged["status"] == "passed" and judged["value"] == 0, judged
    assert "the model as given, compiled by Vela already" in judged["message"], judged["message"]


# -- the AddXxx() hint list ----------------------------------------------------------------------

# Run in a fresh interpreter process, with nothing of qcheck: for each operator, a model of it
# followed by STABLEHLO_TANH (which TFLite Micro has no kernel for). TFLM looks every operator's
# registration up before it initialises or prepares any, so it stops at the first one it lacks:
# at STABLEHLO_TANH when it has the operator, at the operator itself when not; no kernel runs.
_RESOLVES = textwrap.dedent("""
    import json, os, re, sys, tempfile
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from tflite_micro.python.tflite_micro import runtime

    SENTINEL = "STABLEHLO_TANH"

    def code(name, custom=None):
        c = schema.OperatorCodeT()
        c.builtinCode = getattr(schema.BuiltinOperator, name)
        c.deprecatedBuiltinCode = min(c.builtinCode, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
        c.version = 1
        if custom is not None:
            c.customCode = custom.encode()
        return c

    def model(name, custom=None):
        m, g = schema.ModelT(), schema.SubGraphT()
        m.version, m.buffers, g.tensors, g.operators = 3, [schema.BufferT()], [], []
        for tensor_name in (b"a", b"b", b"c"):
            t = schema.TensorT()
            t.name, t.shape, t.type, t.buffer = tensor_name, np.array([1, 4], np.int32), schema.TensorType.FLOAT32, 0
            g.tensors.append(t)
        m.operatorCodes = [code(name, custom), code(SENTINEL)]
        for i in range(2):
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = i, np.array([i], np.int32), np.array([i + 1], np.int32)
            g.operators.append(op)
        if name == "VAR_HANDLE":  # the Python interpreter reads its shared name before loading
            g.operators[0].builtinOptionsType = schema.BuiltinOptions.VarHandleOptions
            g.operators[0].builtinOptions = schema.VarHandleOptionsT()
            g.operators[0].builtinOptions.sharedName = b"v"
        g.inputs, g.outputs = np.array([0], np.int32), np.array([2], np.int32)
        m.subgraphs = [g]
        builder = flatbuffers.Builder(0)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def stopped_at(data):
        sink, saved = tempfile.TemporaryFile(), os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
            return "nothing"
        except RuntimeError:
            pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
        found = re.search(r"Didn't find op for builtin opcode '(\\w+)'|Failed to get registration from op code (\\w+)",
                          text)
        return (found.group(1) or found.group(2)) if found else text

    builtins = [n for n in dir(schema.BuiltinOperator) if n.isupper() and n not in
                ("CUSTOM", "DELEGATE", "PLACEHOLDER_FOR_GREATER_OP_CODES", SENTINEL)]
    found = {name: stopped_at(model(name)) == SENTINEL for name in builtins}
    custom = {c: stopped_at(model("CUSTOM", c)) == SENTINEL for c in json.loads(sys.argv[1])}
    print(json.dumps({"builtin": found, "custom": custom, "sentinel": stopped_at(model(SENTINEL))}))
""")


def test_every_listed_operator_is_one_tflm_loads_and_every_one_it_loads_is_listed() -> None:
    """The AddXxx() hint list lacked REVERSE_V2, REDUCE_MIN, REDUCE_ALL and DYNAMIC_UPDATE_SLICE,
    which the installed TFLite Micro loads. Asked of TFLM itself, operator by operator: each listed
    one resolves, and each builtin it resolves is listed or named by TFLM's rule (ethos-u needs an NPU
    build: not asked)."""
    import subprocess
    import sys

    from qcheck.tflm_kernels import BUILTIN_KERNELS, CUSTOM_KERNELS, resolver_call
    from qcheck.vela import NPU_CUSTOM_CODE

    customs = sorted(set(CUSTOM_KERNELS) - {NPU_CUSTOM_CODE})
    proc = subprocess.run([sys.executable, "-c", _RESOLVES, json.dumps(customs)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["sentinel"] == "STABLEHLO_TANH"  # the premise: TFLM has no kernel for the sentinel
    resolved = {name for name, ok in found["builtin"].items() if ok}
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= resolved  # the probe sees what TFLM has
    assert sorted(set(BUILTIN_KERNELS) - resolved) == [], "listed, but TFLite Micro has no kernel"
    # The four the list lacked are listed, and TFLM loads them.
    added = {"REVERSE_V2", "REDUCE_MIN", "REDUCE_ALL", "DYNAMIC_UPDATE_SLICE"}
    assert added <= set(BUILTIN_KERNELS) and added <= resolved
    # tflite-micro is a nightly: a kernel added after the list was written is named by TFLM's rule
    # (resolver_call), so a newer build must not turn main red; say which ones to look up.
    unlisted = sorted(resolved - set(BUILTIN_KERNELS))
    if unlisted:
        print("TFLite Micro loads these, named by the rule: " + ", ".join(f"{op} -> {resolver_call(op)}()"
                                                                          for op in unlisted))
    assert all(resolver_call(op).startswith("Add") and len(resolver_call(op)) > 3 for op in unlisted)
    assert [c for c, ok in found["custom"].items() if not ok] == []
    assert BUILTIN_KERNELS["REVERSE_V2"] == "AddReverseV2"
