"""TensorFlow Lite Micro as qcheck's second runtime: arena, operators and parity as TFLM reports them.

Expected values come from separate calls of the two interpreters (``tflite_micro`` and LiteRT's
reference kernels, in a child script that uses no qcheck code), never from qcheck's own answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, REAL, run_qcheck

KWS = REAL / "mlperf_tiny" / "kws_ref_model.tflite"
VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
AD01 = REAL / "mlperf_tiny" / "ad01_int8.tflite"
TOYCAR = REAL / "mlperf_tiny" / "model_ToyCar_quant.tflite"
MICRO_SPEECH = REAL / "tflm" / "micro_speech_quantized.tflite"
HELLO = REAL / "tflm" / "hello_world_int8.tflite"
HELLO_FLOAT = REAL / "tflm" / "hello_world_float.tflite"
KINDS = FIXTURES / "model_kinds"

# Run in a fresh interpreter process: TFLM itself, with nothing of qcheck.
# Loads the model given first in an arena of any size, TFLM alone.
_LOADER = textwrap.dedent("""
    import json, os, re, sys, tempfile
    from tflite_micro.python.tflite_micro import runtime
    model = open(sys.argv[1], "rb").read()

    def load(size):
        try:
            runtime.Interpreter.from_bytes(model, arena_size=size)
            return True
        except RuntimeError:
            return False
""")
_ALLOCATIONS = _LOADER + textwrap.dedent("""

    it = runtime.Interpreter.from_bytes(model, arena_size=64 << 20)
    sink = tempfile.TemporaryFile()
    saved = os.dup(2); os.dup2(sink.fileno(), 2)
    it.print_allocations()
    os.dup2(saved, 2); sink.seek(0)
    text = sink.read().decode()
    found = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\\d+) bytes", text)}
    found["fits"] = load(found["total"])
    found["fits_16_less"] = load(found["total"] - 16)
    print(json.dumps(found))
""")

_OUTPUTS = textwrap.dedent("""
    import json, sys
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime
    model = open(sys.argv[1], "rb").read()
    x = np.load(sys.argv[2])["x"]
    kernels = OpResolverType.BUILTIN_REF if sys.argv[3:] != ["default"] else OpResolverType.AUTO
    ref = Interpreter(model_content=model, experimental_op_resolver_type=kernels)
    ref.allocate_tensors()
    i, o = ref.get_input_details()[0], ref.get_output_details()[0]
    scale, zero = i["quantization"]
    micro = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    a, b = [], []
    for sample in x:
        q = np.clip(np.round(sample[None] / scale) + zero, -128, 127).astype(np.int8)
        ref.set_tensor(i["index"], q); ref.invoke(); a.append(ref.get_tensor(o["index"])[0].astype(int))
        micro.set_input(q, 0); micro.invoke(); b.append(micro.get_output(0)[0].astype(int))
    a, b = np.array(a), np.array(b)
    print(json.dumps({"max_steps": int(np.abs(a - b).max()), "differing": float(np.mean((a != b).any(axis=1)))}))
""")


def _script(script: str, *args: Path | str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=True)
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("model", [KWS, VWW, MICRO_SPEECH])
def test_tflm_itself_reports_the_arena_it_allocates(model: Path) -> None:
    """The independent measurement qcheck is compared with: TFLM loads the model in exactly that
    arena and not in 16 bytes less (its alignment), so it is the arena the model needs."""
    measured = _script(_ALLOCATIONS, model)
    assert measured["total"] == measured["head"] + measured["tail"]
    assert measured["fits"] and not measured["fits_16_less"]


def test_arena_is_the_one_tflm_allocates_with_its_head_and_tail(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, "--qcheck-suite=cortex-m", "-k", "arena or tflm_ops", f"--qcheck-model={KWS}",
                     f"--qcheck-model={VWW}", f"--qcheck-model={MICRO_SPEECH}")
    for model in (KWS, VWW, MICRO_SPEECH):
        expected = _script(_ALLOCATIONS, model)
        check = run.check(model.name, "arena")
        section = run.model(model.name)["arena"]
        assert (check["passed"], check["value"]) == (True, expected["total"]), model.name
        assert (section["head"], section["tail"], section["total"]) == (expected["head"], expected["tail"],
                                                                       expected["total"])
        assert section["runtime"].startswith("tflite-micro 0.dev")
        assert "Persistent buffer data" in {r["what"] for r in section["tail_records"]}
        assert sum(r["bytes"] for r in section["tail_records"]) <= section["tail"]
        # The lower bound of the activations stays as an explanation of the head.
        assert 0 < section["lower_bound"]["peak_bytes"] <= section["head"]
        assert f"({expected['total']} B) measured by TFLite Micro (tflite-micro 0.dev" in check["message"]
        assert run.check(model.name, "tflm_ops")["passed"] is True
        assert run.model(model.name)["arena"]["total"] == expected["total"]
    assert "AddDepthwiseConv2D(), AddFullyConnected(), AddReshape(), AddSoftmax()" in run.check(
        MICRO_SPEECH.name, "tflm_ops")["message"]


def test_the_arena_budget_is_judged_against_the_measured_arena(tmp_path: Path) -> None:
    expected = _script(_ALLOCATIONS, KWS)["total"]  # 24,272 B with tflite-micro 0.dev20261023182759
    run = run_qcheck(tmp_path, "--qcheck-suite=cortex-m", "-k", "arena", f"--qcheck-model={KWS}",
                     f"--qcheck-max-arena={expected - 1}B")
    check = run.check(KWS.name, "arena")
    assert (check["passed"], check["value"], check["threshold"]) == (False, expected, expected - 1)
    assert run.returncode == 1


def test_an_unsupported_custom_op_and_an_unknown_builtin_fail_with_tflm_own_reason(tmp_path: Path) -> None:
    from tflite_edits import append_after_output, edit_model, with_unknown_last_op

    def custom(model: Any, schema: Any) -> None:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode, code.version = b"MyPostprocess", 1
        append_after_output(model, schema, code, b"post")

    custom_model = edit_model(HELLO, tmp_path / "custom.tflite", custom)
    unknown = with_unknown_last_op(HELLO, tmp_path / "unknown.tflite")
    run = run_qcheck(tmp_path / "run", "--qcheck-suite=cortex-m", "-k", "arena or tflm_ops",
                     f"--qcheck-model={custom_model}", f"--qcheck-model={unknown}")
    ops = run.check("custom.tflite", "tflm_ops")
    assert (ops["passed"], ops["value"]) == (False, 1)
    assert "cannot load the model: Failed to get registration from op code CUSTOM" in ops["message"]
    assert "custom op 'MyPostprocess' x1" in ops["message"]
    assert run.model("custom.tflite")["tflm"]["unsupported"][0]["op"] == "custom op 'MyPostprocess'"
    arena = run.check("custom.tflite", "arena")
    assert arena["passed"] is None and "Failed to get registration from op code CUSTOM" in arena["message"]

    ops = run.check("unknown.tflite", "tflm_ops")
    assert (ops["passed"], ops["value"]) == (False, 1)
    assert "Didn't find op for builtin opcode 'STABLEHLO_TANH'" in ops["message"]
    assert "STABLEHLO_TANH x1" in ops["message"]
    assert run.returncode == 1


def test_a_model_tflm_refuses_names_tflm_reason(tmp_path: Path) -> None:
    """ToyCar is dynamic-range (hybrid): TFLM's FULLY_CONNECTED refuses float input with int8 weights."""
    run = run_qcheck(tmp_path, "--qcheck-suite=cortex-m", "-k", "arena or tflm_ops or tflm_parity",
                     f"--qcheck-model={TOYCAR}")
    ops = run.check(TOYCAR.name, "tflm_ops")
    assert (ops["passed"], ops["value"]) == (False, 10)  # its ten hybrid FULLY_CONNECTED layers
    assert "Input type: FLOAT32 with filter type: INT8 not supported" in ops["message"]
    assert "Node FULLY_CONNECTED (number 0) failed to prepare" in ops["message"]
    assert "convert to full integer" in ops["message"]
    assert run.check(TOYCAR.name, "arena")["passed"] is None


def _samples(model: Path, path: Path, n: int, seed: int) -> Path:
    """Random inputs across the model's int8 input range (no clipping), as floats."""
    from qcheck.tflite.inspect import inspect_model

    tensor = inspect_model(model.read_bytes()).inputs[0].tensor
    low = (-128 - tensor.zero_point[0]) * tensor.scale[0]
    high = (127 - tensor.zero_point[0]) * tensor.scale[0]
    x = np.random.default_rng(seed).uniform(low, high, (n, *tensor.shape[1:])).astype(np.float32)
    np.savez(path, x=x)
    return path


def test_parity_is_the_largest_output_difference_from_tflite_reference_kernels(tmp_path: Path) -> None:
    """Hand-checked: ad01's int8 FULLY_CONNECTED layers round differently in TFLM and in TFLite's
    reference kernels (1 step at the first layer, found by bisecting layers by hand with both
    interpreters, 2 at the output); kws agrees exactly."""
    ad01_data = _samples(AD01, tmp_path / "ad01.npz", 48, seed=1)
    kws_data = _samples(KWS, tmp_path / "kws.npz", 24, seed=2)
    ad01_expected = _script(_OUTPUTS, AD01, ad01_data)
    kws_expected = _script(_OUTPUTS, KWS, kws_data)
    assert ad01_expected["max_steps"] >= 2 and kws_expected["max_steps"] == 0  # the premise of the test

    ad01 = run_qcheck(tmp_path / "ad01", "--qcheck-suite=cortex-m", "-k", "tflm_parity", f"--qcheck-model={AD01}",
                      f"--qcheck-data={ad01_data}")
    check = ad01.check(AD01.name, "tflm_parity")
    assert (check["passed"], check["value"], check["threshold"]) == (False, ad01_expected["max_steps"], 1)
    parity = ad01.model(AD01.name)["tflm_parity"]["parity"]
    (head,) = parity.values()
    assert head["samples_differing"] == pytest.approx(ad01_expected["differing"])
    assert head["changed"] is None and head["task"] == "reconstruction"  # 640 values of its input's shape
    divergence = ad01.model(AD01.name)["tflm_parity"]["divergence"]
    assert divergence["first_difference"]["operator"] == 0
    assert divergence["first_difference"]["label"] == "FULLY_CONNECTED 'functional_1/activation/Relu'"
    assert "first operator whose output differs on sample(s)" in check["message"]
    assert "FULLY_CONNECTED 'functional_1/activation/Relu'" in check["message"]

    kws = run_qcheck(tmp_path / "kws", "--qcheck-suite=cortex-m", "-k", "tflm_parity or arena", f"--qcheck-model={KWS}",
                     f"--qcheck-data={kws_data}", "--qcheck-html=report.html")
    check = kws.check(KWS.name, "tflm_parity")
    assert (check["passed"], check["value"]) == (True, 0)
    (head,) = kws.model(KWS.name)["tflm_parity"]["parity"].values()
    assert (head["task"], head["changed"]) == ("classification", 0.0)  # top-1 of its 12 classes
    assert "divergence" not in kws.model(KWS.name)["tflm_parity"]
    # The HTML report's TFLite Micro table: the arena's parts and the parity per head.
    html = (tmp_path / "kws" / "report.html").read_text()
    from qcheck.units import format_quantity

    arena = _script(_ALLOCATIONS, KWS)
    for part in ("head", "tail", "total"):
        assert f"arena {part}</td><td>{format_quantity(arena[part], 'bytes')}<" in html
    assert "parity &#39;Identity&#39;</td><td>0 steps" in html and "decision changed on 0.0%" in html


def test_accuracy_on_tflm_kernels_on_request(tmp_path: Path) -> None:
    x = np.linspace(0, 6.0, 120, dtype=np.float32).reshape(-1, 1)
    np.savez(tmp_path / "sine.npz", x=x)
    common = (f"--qcheck-model={HELLO}", f"--qcheck-reference={HELLO_FLOAT}", f"--qcheck-data={tmp_path / 'sine.npz'}",
              "-k", "accuracy_drop")
    on_tflm = run_qcheck(tmp_path / "tflm", *common, "--qcheck-set", "accuracy_drop.runtime=tflm")
    on_litert = run_qcheck(tmp_path / "litert", *common)
    tflm_check, litert_check = on_tflm.check(HELLO.name, "accuracy_drop"), on_litert.check(HELLO.name, "accuracy_drop")
    assert "on TensorFlow Lite Micro's kernels (tflite-micro 0.dev" in tflm_check["message"]
    assert "TensorFlow Lite Micro" not in litert_check["message"]
    # On these samples TFLM's outputs differ from those of LiteRT as it runs by default (XNNPACK),
    # so the two verdicts differ when, and only when, the TFLM outputs are the ones judged.
    assert _script(_OUTPUTS, HELLO, tmp_path / "sine.npz", "default")["max_steps"] > 0
    assert tflm_check["value"] != pytest.approx(litert_check["value"])
    # The cortex-m suite judges what the device computes without being asked.
    suite = run_qcheck(tmp_path / "cortex-m", *common, "--qcheck-suite=cortex-m").check(HELLO.name, "accuracy_drop")
    assert "on TensorFlow Lite Micro's kernels" in suite["message"]
    assert suite["value"] == pytest.approx(tflm_check["value"])

    wrong = run_qcheck(tmp_path / "wrong", *common, "--qcheck-set", "accuracy_drop.runtime=tflite-micro")
    assert wrong.returncode != 0
    assert "must be one of 'litert', 'tflm'" in wrong.stdout


def test_running_a_model_tflm_refuses_fails_with_tflm_reason() -> None:
    from qcheck.isolation import call_isolated

    x = np.random.default_rng(0).uniform(-1, 1, (8, *_input_shape(TOYCAR))).astype(np.float32)
    with pytest.raises(Exception, match="TFLite Micro refused the model: Input type: FLOAT32 with filter type"):
        call_isolated("qcheck.tflm.runtime:run", TOYCAR.read_bytes(), x, what="running ToyCar in TFLite Micro")


def _input_shape(model: Path) -> tuple[int, ...]:
    from qcheck.tflite.inspect import inspect_model

    return inspect_model(model.read_bytes()).inputs[0].tensor.shape[1:]


def test_a_tflm_crash_is_a_named_failure_of_that_model() -> None:
    """TFLM crashes (SIGSEGV) on a tensor index past the end of the tensor table."""
    from qcheck.errors import StepFailed
    from qcheck.isolation import call_isolated

    broken = (FIXTURES / "bad" / "tensor_index_out_of_range.tflite").read_bytes()
    with pytest.raises(StepFailed, match=r"loading broken.tflite in TFLite Micro crashed with SIGSEGV"):
        call_isolated("qcheck.tflm.runtime:load", broken, what="loading broken.tflite in TFLite Micro")
    # This process goes on, and the next model loads.
    loaded = call_isolated("qcheck.tflm.runtime:load", HELLO.read_bytes(), what="loading hello")
    assert loaded.loaded and loaded.total > 0


def test_a_stateful_model_is_reset_between_samples_in_tflm() -> None:
    """The int8 LSTM: with reset, every sample gives what it gives alone; kept, the state carries over."""
    from qcheck.tflm.runtime import run, run_litert

    tflite = (KINDS / "lstm_int8.tflite").read_bytes()
    x = np.load(KINDS / "lstm.npz")["x"][:12]
    reset = next(iter(run(tflite, x).outputs.values())).raw
    alone = np.concatenate([next(iter(run(tflite, x[i : i + 1]).outputs.values())).raw for i in range(len(x))])
    kept = next(iter(run(tflite, x, stateful="keep").outputs.values())).raw
    assert np.array_equal(reset, alone)
    assert np.array_equal(kept[0], reset[0]) and not np.array_equal(kept, reset)
    reference = next(iter(run_litert(tflite, x).outputs.values())).raw
    assert np.abs(reference.astype(int) - reset.astype(int)).max() <= 1


def test_warm_run_takes_tflm_results_from_the_cache(tmp_path: Path) -> None:
    """The second run has a TensorFlow and a TFLite Micro that fail on import, here and in children."""
    data = _samples(KWS, tmp_path / "kws.npz", 16, seed=3)
    args = (f"--qcheck-model={KWS}", f"--qcheck-data={data}", "--qcheck-suite=cortex-m",
            f"--qcheck-cache-dir={tmp_path / 'cache'}", "-k", "tflm_ops or arena or tflm_parity")
    cold = run_qcheck(tmp_path / "cold", *args)
    assert cold.returncode == 0, cold.stdout
    poison = tmp_path / "poison"
    for name in ("tensorflow", "keras", "tflite_micro"):  # importing any of them fails, here and in children
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} imported in a warm run')\n")
    path = os.pathsep.join([str(poison), *filter(None, [os.environ.get("PYTHONPATH")])])
    warm = run_qcheck(tmp_path / "warm", *args, env={"PYTHONPATH": path})
    assert warm.returncode == 0, warm.stdout
    assert warm.report["models"][0]["checks"] == cold.report["models"][0]["checks"]
    assert warm.model(KWS.name)["arena"] == cold.model(KWS.name)["arena"]


_SMALLEST = _LOADER + textwrap.dedent("""
    print(json.dumps({"fits": load(int(sys.argv[2])), "fits_16_less": load(int(sys.argv[2]) - 16)}))
""")


def test_the_arena_is_the_smallest_tflm_allocates_the_model_in(tmp_path: Path) -> None:
    """hello_world and ad01 (FULLY_CONNECTED only): TFLM's recording allocator totals 1,504 B and
    3,984 B, but an arena of that size fails ("Failed to allocate temp memory": the kernels'
    temporary tensors while they prepare); the arena check reported the total, which a board
    sized by it could not allocate. Found by bisecting the arena size with TFLM directly."""
    run = run_qcheck(tmp_path, "--qcheck-suite=cortex-m", "-k", "arena", f"--qcheck-model={HELLO}",
                     f"--qcheck-model={AD01}")
    for model in (HELLO, AD01):
        check = run.check(model.name, "arena")
        section = run.model(model.name)["arena"]
        recorded = _script(_ALLOCATIONS, model)
        assert not recorded["fits"], model.name  # the recorded total is not enough here
        assert check["value"] == section["needed"] > section["total"] == recorded["total"]
        assert _script(_SMALLEST, model, str(int(check["value"]))) == {"fits": True, "fits_16_less": False}
        assert "allocating it needs an arena of" in check["message"] and "while they prepare" in check["message"]
